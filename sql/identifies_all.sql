-- Every identify call; the users stream merges each user over all of their rows.
SELECT * FROM {schema}.{identifies}
