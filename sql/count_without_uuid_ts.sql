-- Rows of a table the loader never stamped (`uuid_ts` NULL): no window reads them, so the
-- first full read of a stream counts them for the report.
SELECT count(*) AS rows_without_uuid_ts FROM {schema}.{table} WHERE uuid_ts IS NULL
