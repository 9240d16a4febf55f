-- Every identify call of the given ids (an expanding bound list), in the columns read.
SELECT {columns} FROM {schema}.{identifies}
WHERE user_id IN :ids OR (user_id IS NULL AND anonymous_id IN :ids)
