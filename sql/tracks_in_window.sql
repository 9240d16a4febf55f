-- Track calls in the window [since, until) of the window column, in storage order (the
-- pipeline orders them itself: a warehouse sort held every row twice more).
SELECT id, anonymous_id, user_id, event, event_text, {timestamp}, received_at, uuid_ts
FROM {schema}.{tracks}
WHERE {window} >= :since AND {window} < :until
