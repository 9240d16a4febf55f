-- PostgreSQL staging for delivered user fingerprints: filled by COPY, dropped at commit.
CREATE TEMPORARY TABLE {staging} (user_id TEXT NOT NULL, fingerprint TEXT NOT NULL, run_id TEXT)
ON COMMIT DROP
