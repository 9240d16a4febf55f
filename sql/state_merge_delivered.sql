-- Record acknowledged messages from a staged set (one row per kind and message id);
-- a message recorded before keeps its first record.
INSERT INTO {schema}.{delivered} (source_schema, kind, message_id, run_id, delivered_at)
SELECT CAST(:source_schema AS VARCHAR), s.kind, s.message_id, s.run_id,
       CAST(:delivered_at AS TIMESTAMP WITH TIME ZONE)
FROM {staging} AS s
ON CONFLICT (source_schema, kind, message_id) DO NOTHING
