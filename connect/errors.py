"""Delivery errors the CLI turns into exit codes."""


class AuthenticationError(Exception):
    """Connect answered 401: the API key is wrong or missing. Never retried."""


class DeliveryFailed(Exception):
    """Some batches could not be delivered after every retry (the run fails, exit 1)."""
