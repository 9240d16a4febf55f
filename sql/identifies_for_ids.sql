-- Every identify call of the given ids (an expanding bound list), in the columns read.
-- Two filtered scans rather than one OR: each IN filter is pushed down to its column's scan
-- (DuckDB reads the other columns only for matching rows: 3-4x faster at 2M rows).
SELECT {columns} FROM {schema}.{identifies}
WHERE user_id IN :ids
UNION ALL
SELECT {columns} FROM {schema}.{identifies}
WHERE user_id IS NULL AND anonymous_id IN :ids
