-- The tables of one schema, and whether the schema exists (a row with a NULL table name
-- when it has no tables): for dialects whose SQLAlchemy inspector reads catalog columns
-- the server may not have (sqlalchemy-redshift's `reldiststyle`).
SELECT s.schema_name, t.table_name
FROM information_schema.schemata AS s
LEFT JOIN information_schema.tables AS t
  ON t.table_schema = s.schema_name AND t.table_type IN ('BASE TABLE', 'VIEW')
WHERE lower(s.schema_name) = lower(:schema)
