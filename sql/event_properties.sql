-- One event's own table for the rows in the window [since, until) of the window column:
-- the message id and the property columns only (the common columns are read from tracks).
SELECT {columns}
FROM {schema}.{table}
WHERE {window} >= :since AND {window} < :until
