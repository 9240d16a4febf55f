-- Reads no row and no column: fails when the table is missing or not readable by this role.
SELECT 1 AS readable FROM {schema}.{table} WHERE 1 = 0
