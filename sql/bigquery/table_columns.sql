-- BigQuery: each dataset (schema) has its own INFORMATION_SCHEMA; the schema filter is redundant there.
SELECT table_name, column_name
FROM {schema}.INFORMATION_SCHEMA.COLUMNS
WHERE lower(table_schema) = lower(:schema)
ORDER BY table_name, ordinal_position
