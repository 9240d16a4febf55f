-- After a 429: no worker starts a request before Retry-After has passed.
UPDATE {schema}.{rate_limits}
SET next_at = GREATEST(
    next_at, CAST(EXTRACT(EPOCH FROM clock_timestamp()) AS DOUBLE PRECISION) + :seconds
)
WHERE name = :name
