"""tests/mutation holds a script, not tests: keep pytest from importing it."""

collect_ignore = ["run.py"]
