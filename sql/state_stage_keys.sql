-- PostgreSQL staging for a key lookup: filled by COPY, dropped at commit.
CREATE TEMPORARY TABLE {staging} (staged_key TEXT NOT NULL) ON COMMIT DROP
