-- The columns of every table of one schema (Segment adds a column when a value first arrives).
-- Names are compared case-insensitively: Snowflake stores unquoted names in upper case.
SELECT table_name, column_name
FROM information_schema.columns
WHERE lower(table_schema) = lower(:schema)
ORDER BY table_name, ordinal_position
