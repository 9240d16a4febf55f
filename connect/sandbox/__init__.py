"""A faithful local Connect API: the reference server for demos and tests."""
