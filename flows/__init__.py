"""Orchestration: the sync pipeline and the Prefect flows that run it."""
