-- Every column of one call table (pages or screens) for the rows in the window
-- [since, until) whose event time lies in one time slice (as in tracks_in_slice.sql).
SELECT {columns}
FROM {schema}.{table}
WHERE {window} >= :since AND {window} < :until
  AND ((({timestamp} >= :lo OR :from_start) AND ({timestamp} < :hi OR :to_end))
       OR ({timestamp} IS NULL AND :from_start))
