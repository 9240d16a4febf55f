-- Track calls in the window [since, until) of the window column, oldest event first.
SELECT id, anonymous_id, user_id, event, event_text, {timestamp}, received_at, uuid_ts
FROM {schema}.{tracks}
WHERE {window} >= :since AND {window} < :until
ORDER BY {timestamp}, received_at, id
