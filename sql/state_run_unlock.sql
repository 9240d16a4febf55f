-- Give back the run lock taken by `state_run_lock` on this session.
SELECT pg_advisory_unlock(:key)
