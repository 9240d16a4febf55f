-- Which of the staged ids Connect holds a profile for from an earlier run: a delivered
-- identify (a fingerprint) or an anonymous-profile mark.
SELECT f.user_id
FROM {schema}.{fingerprints} AS f
JOIN {staging} AS s ON s.staged_key = f.user_id
WHERE f.source_schema = :source_schema
UNION
SELECT a.user_id
FROM {schema}.{anonymous_profiles} AS a
JOIN {staging} AS s ON s.staged_key = a.user_id
WHERE a.source_schema = :source_schema
