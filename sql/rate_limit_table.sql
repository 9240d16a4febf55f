-- The shared request schedule of partitioned runs: one row per Connect key (hashed), the
-- database-clock time (epoch seconds) before which no further request may start.
CREATE TABLE IF NOT EXISTS {schema}.{rate_limits} (
    name VARCHAR(64) PRIMARY KEY,
    next_at DOUBLE PRECISION NOT NULL
)
