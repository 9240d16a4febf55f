-- One event's own table, for the rows in the window [:since, :until) of the window column (its properties by message id).
SELECT * FROM {schema}.{table}
WHERE {window} >= :since AND {window} < :until
