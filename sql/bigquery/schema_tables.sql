-- BigQuery: the tables of one dataset (`dataset` or `project.dataset`) from its own
-- INFORMATION_SCHEMA; a missing dataset fails with "Not found". `:schema` is unused here.
SELECT table_schema AS schema_name, table_name
FROM {schema}.INFORMATION_SCHEMA.TABLES
