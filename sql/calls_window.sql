-- Every column of one call table (pages, screens or groups) for the rows in the window
-- [since, until) of the window column, in storage order.
SELECT {columns}
FROM {schema}.{table}
WHERE {window} >= :since AND {window} < :until
