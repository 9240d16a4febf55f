-- Book `:span` seconds of the shared schedule (a lease of consecutive request slots) and
-- return how many seconds from now the lease starts. The row lock serializes every worker
-- of every partition, on every machine; the database clock is the only clock used.
INSERT INTO {schema}.{rate_limits} AS r (name, next_at)
VALUES (:name, CAST(EXTRACT(EPOCH FROM clock_timestamp()) AS DOUBLE PRECISION) + :span)
ON CONFLICT (name) DO UPDATE
SET next_at = GREATEST(
    r.next_at, CAST(EXTRACT(EPOCH FROM clock_timestamp()) AS DOUBLE PRECISION)
) + :span
RETURNING r.next_at - :span - CAST(EXTRACT(EPOCH FROM clock_timestamp()) AS DOUBLE PRECISION)
