-- Take the run lock of one (state schema, source schema) on this session, without waiting:
-- true when taken. Held until `state_run_unlock` or the session ends (a dead run's lock
-- goes with its connection).
SELECT pg_try_advisory_lock(:key)
