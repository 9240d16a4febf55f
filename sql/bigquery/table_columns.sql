-- BigQuery: each dataset (schema) has its own INFORMATION_SCHEMA, so no schema filter
-- (which would also miss a project-qualified `project.dataset`, whose table_schema is
-- the dataset alone). `:schema` is bound by the caller and unused here.
SELECT table_name, column_name
FROM {schema}.INFORMATION_SCHEMA.COLUMNS
ORDER BY table_name, ordinal_position
