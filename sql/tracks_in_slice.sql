-- Track calls in the window [since, until) whose event time lies in one time slice
-- [lo, hi) (`from_start`: no lower bound, rows without a time included; `to_end`: no
-- upper bound), in storage order: the slices of a window hold each of its rows once.
SELECT id, anonymous_id, user_id, event, event_text, {timestamp}, received_at, uuid_ts
FROM {schema}.{tracks}
WHERE {window} >= :since AND {window} < :until
  AND ((({timestamp} >= :lo OR :from_start) AND ({timestamp} < :hi OR :to_end))
       OR ({timestamp} IS NULL AND :from_start))
