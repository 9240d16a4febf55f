-- Every identify call of the given ids, in the columns read. DuckDB takes the ids as one
-- list parameter (id_list), joined as a set: thousands of IN markers cost it ~1 s to
-- parse per statement. Two filtered scans rather than one OR, as in the generic version.
SELECT {columns} FROM {schema}.{identifies}
WHERE user_id IN (SELECT unnest(CAST(:id_list AS VARCHAR[])))
UNION ALL
SELECT {columns} FROM {schema}.{identifies}
WHERE user_id IS NULL AND anonymous_id IN (SELECT unnest(CAST(:id_list AS VARCHAR[])))
