-- Alias calls in the window [since, until) of the window column (the cursor minus the lookback window).
SELECT id, previous_id, user_id, anonymous_id, {timestamp}, received_at, uuid_ts
FROM {schema}.{aliases}
WHERE {window} >= :since AND {window} < :until
ORDER BY {timestamp}, received_at, id
