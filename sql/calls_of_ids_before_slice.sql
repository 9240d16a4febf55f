-- The rows of the given message ids (an expanding bound list) in the window [since, until)
-- whose event time lies before the time slice starting at lo (or is missing): whether a
-- message read again in a later slice was already read in an earlier one.
SELECT {columns}
FROM {schema}.{table}
WHERE {window} >= :since AND {window} < :until
  AND id IN :ids
  AND ({timestamp} < :lo OR {timestamp} IS NULL)
