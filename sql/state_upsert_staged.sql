-- Insert rows into a state table from a staged temp table (Redshift: no ON CONFLICT, and its
-- MERGE takes only a table as its source). Filled in by warehouse/upsert.py; the statements
-- are separated by `;` lines and run in one transaction.
CREATE TEMPORARY TABLE {staging} (LIKE {target})
;
INSERT INTO {staging} ({columns}) VALUES ({params})
;
UPDATE {target} SET {assign_from_s} FROM {staging} AS s WHERE {match_target}
;
INSERT INTO {target} ({columns})
SELECT {source_columns} FROM {staging} AS s
WHERE NOT EXISTS (SELECT 1 FROM {target} AS t WHERE {match})
;
DROP TABLE {staging}
