-- Each id with calls in the table (its user id, else its anonymous id; null for rows of
-- neither), its number of rows and their newest load time: the users of a first run, cut
-- into buckets before any of their rows is read.
SELECT coalesce(user_id, anonymous_id) AS id, count(*) AS n_rows, max(uuid_ts) AS loaded
FROM {schema}.{identifies}
GROUP BY coalesce(user_id, anonymous_id)
