-- Per link source, what a cached identity graph is checked against (Segment's tables are
-- append-only): link rows loaded up to the cached cut-off, link rows with a
-- load time, all link rows, and the newest load time.
SELECT 'alias' AS kind,
       count(CASE WHEN uuid_ts <= :alias_until THEN 1 END) AS rows_until,
       count(uuid_ts) AS rows_loaded, count(*) AS rows_all, max(uuid_ts) AS loaded_max
FROM {schema}.{aliases}
WHERE previous_id IS NOT NULL AND user_id IS NOT NULL
UNION ALL
SELECT 'identify',
       count(CASE WHEN uuid_ts <= :identify_until THEN 1 END),
       count(uuid_ts), count(*), max(uuid_ts)
FROM {schema}.{identifies}
WHERE anonymous_id IS NOT NULL AND user_id IS NOT NULL
UNION ALL
SELECT 'track',
       count(CASE WHEN uuid_ts <= :track_until THEN 1 END),
       count(uuid_ts), count(*), max(uuid_ts)
FROM {schema}.{tracks}
WHERE anonymous_id IS NOT NULL AND user_id IS NOT NULL
