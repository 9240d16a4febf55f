"""Errors of the warehouse edge that the CLI turns into exit code 2 with one clear line."""


class WarehouseError(Exception):
    """The warehouse cannot be read as configured (unreachable, missing schema or table)."""
