-- The last delivered fingerprint of each staged user id.
SELECT f.user_id, f.fingerprint
FROM {schema}.{fingerprints} AS f
JOIN {staging} AS s ON s.staged_key = f.user_id
WHERE f.source_schema = :source_schema
