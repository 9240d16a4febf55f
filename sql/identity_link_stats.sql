-- What a cached identity graph is checked against, for one link source (Segment's tables
-- are append-only): link rows loaded up to the cached cut-off, link rows with a load time,
-- all link rows, and the newest load time.
SELECT count(CASE WHEN uuid_ts <= :until THEN 1 END) AS rows_until,
       count(uuid_ts) AS rows_loaded, count(*) AS rows_all, max(uuid_ts) AS loaded_max
FROM {schema}.{table}
WHERE {from_column} IS NOT NULL AND {to_column} IS NOT NULL
