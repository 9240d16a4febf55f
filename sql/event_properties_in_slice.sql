-- One event's own table for the rows in the window [since, until) whose track call lies
-- in one time slice (as in tracks_in_slice.sql): the message id and the property columns.
-- Joined by message id, so a property row is found whatever time it carries itself.
SELECT {columns}
FROM {schema}.{table}
WHERE {window} >= :since AND {window} < :until
  AND id IN (
    SELECT id FROM {schema}.{tracks}
    WHERE {window} >= :since AND {window} < :until
      AND ((({timestamp} >= :lo OR :from_start) AND ({timestamp} < :hi OR :to_end))
           OR ({timestamp} IS NULL AND :from_start))
  )
