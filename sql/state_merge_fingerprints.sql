-- Record the fingerprints of delivered user payloads from a staged set (one row per user).
INSERT INTO {schema}.{fingerprints} (source_schema, user_id, fingerprint, run_id, updated_at)
SELECT CAST(:source_schema AS VARCHAR), s.user_id, s.fingerprint, s.run_id,
       CAST(:updated_at AS TIMESTAMP WITH TIME ZONE)
FROM {staging} AS s
ON CONFLICT (source_schema, user_id) DO UPDATE
SET fingerprint = excluded.fingerprint, run_id = excluded.run_id, updated_at = excluded.updated_at
