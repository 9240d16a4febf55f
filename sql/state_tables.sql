-- The tables of the state schema, for dialects whose SQLAlchemy `has_table` reads
-- catalog columns the server may not have (sqlalchemy-redshift on SQLAlchemy 2.0).
SELECT table_name
FROM information_schema.tables
WHERE lower(table_schema) = lower(:schema)
