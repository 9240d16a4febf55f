-- Every identify call, in the columns the users stream reads (ids, order, traits, context).
SELECT {columns} FROM {schema}.{identifies}
