-- The rows of a call table (tracks, pages, screens) in the window [since, until) per hour
-- of their event time (`timestamp`; a NULL hour: rows without one): where a stream that
-- reads a large window in time slices cuts it, before any of its rows is read.
SELECT date_trunc('hour', {timestamp}) AS hour, count(*) AS n_rows
FROM {schema}.{table}
WHERE {window} >= :since AND {window} < :until
GROUP BY date_trunc('hour', {timestamp})
