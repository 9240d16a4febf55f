-- PostgreSQL staging for acknowledged messages: filled by COPY, dropped at commit.
CREATE TEMPORARY TABLE {staging} (kind TEXT NOT NULL, message_id TEXT NOT NULL, run_id TEXT)
ON COMMIT DROP
