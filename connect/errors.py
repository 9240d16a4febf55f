"""Delivery errors the CLI turns into exit codes."""


class ConnectConfigurationError(Exception):
    """Connect refuses every request for a reason only the operator can fix (exit 2)."""


class AuthenticationError(ConnectConfigurationError):
    """Connect answered 401 (or 403): the API key is wrong or missing. Never retried."""


class EndpointError(ConnectConfigurationError):
    """Connect answered e.g. 404 or 405: CONNECT_API_URL does not point at the Connect API."""


class DeliveryFailed(Exception):
    """Some batches could not be delivered after every retry (the run fails, exit 1)."""
