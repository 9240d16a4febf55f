"""Delivery errors the CLI turns into exit codes.

Failure contract: every `ConnectConfigurationError` means "only the operator can fix this"
(the CLI prints its message, one line, and exits 2; a flow must not retry it). Messages never
hold the API key, and any password in CONNECT_API_URL is masked (`connect.masking.mask_url`).
`DeliveryFailed` is a run that may succeed when retried later (exit 1).
"""


class ConnectConfigurationError(Exception):
    """Connect refuses every request for a reason only the operator can fix (exit 2)."""


class AuthenticationError(ConnectConfigurationError):
    """Connect answered 401 (or 403): the API key is wrong or missing. Never retried."""


class InvalidApiKeyError(AuthenticationError):
    """The API key cannot even be sent: it is not a legal HTTP header value (raised by
    `ClientConfig`, before any request)."""


class EndpointError(ConnectConfigurationError):
    """Connect answered e.g. 404 or 405: CONNECT_API_URL does not point at the Connect API."""


class ConnectUnreachable(ConnectConfigurationError):
    """The preflight check got no HTTP answer: connection refused, DNS, TLS or timeout."""


class DeliveryFailed(Exception):
    """Some batches could not be delivered after every retry (the run fails, exit 1)."""
