-- Which of the staged message ids of one kind were delivered already.
SELECT d.message_id
FROM {schema}.{delivered} AS d
JOIN {staging} AS s ON s.staged_key = d.message_id
WHERE d.source_schema = :source_schema AND d.kind = :kind
