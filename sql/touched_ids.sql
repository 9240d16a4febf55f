-- Ids with identify calls in the window [since, until) of the window column: the users an incremental run re-evaluates.
SELECT DISTINCT coalesce(user_id, anonymous_id) AS id
FROM {schema}.{identifies}
WHERE {window} >= :since AND {window} < :until AND coalesce(user_id, anonymous_id) IS NOT NULL
