-- The links of one link source (mapping.md, Identity): calls of its table that name two ids
-- of one person. One row per distinct pair, with its latest event time (ts) and its latest
-- load time (loaded: which links a run sees anew). The reader runs it for each link source
-- that exists and tags the rows with the source's kind.
SELECT {from_column} AS from_id, {to_column} AS to_id, max({timestamp}) AS ts,
       max(uuid_ts) AS loaded
FROM {schema}.{table}
WHERE {from_column} IS NOT NULL AND {to_column} IS NOT NULL
GROUP BY {from_column}, {to_column}
