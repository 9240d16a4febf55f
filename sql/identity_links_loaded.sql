-- The links (as in identity_links.sql) of one link source's rows loaded in (since, until]:
-- what is new since a cached identity graph was resolved.
SELECT {from_column} AS from_id, {to_column} AS to_id, max({timestamp}) AS ts,
       max(uuid_ts) AS loaded
FROM {schema}.{table}
WHERE {from_column} IS NOT NULL AND {to_column} IS NOT NULL
  AND uuid_ts > :since AND uuid_ts <= :until
GROUP BY {from_column}, {to_column}
