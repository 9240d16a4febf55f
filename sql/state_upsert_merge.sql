-- Insert rows into a state table; a row whose key is there already is left alone, or its
-- `update` columns are set (warehouses without ON CONFLICT: Snowflake, BigQuery).
-- Filled in by warehouse/upsert.py: {rows} is a UNION ALL of bound, typed parameters.
MERGE INTO {target} AS t
USING ({rows}) AS s
ON {match}
{when_matched}
WHEN NOT MATCHED THEN INSERT ({columns}) VALUES ({values})
