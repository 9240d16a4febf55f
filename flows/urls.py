"""The database URLs of the settings, checked before any work (one line, exit 2)."""

from __future__ import annotations

from connect_sync.flows.options import ConfigurationError
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from connect_sync.secrets import mask_url
from connect_sync.settings import Settings

#: Each database URL setting and the variable that sets it.
URL_SETTINGS = {
    "warehouse_url": "CONNECT_SYNC_WAREHOUSE_URL",
    "state_url": "CONNECT_SYNC_STATE_URL",
}


def check_urls(settings: Settings) -> None:
    """Raise ConfigurationError naming the variable when a database URL cannot be parsed
    (a non-numeric port, no scheme); its password is never shown."""
    for field, variable in URL_SETTINGS.items():
        url = getattr(settings, field)
        if url is None:
            continue
        try:
            make_url(url)
        except (ArgumentError, ValueError) as exc:
            raise ConfigurationError(
                f"{variable} is not a database URL ({mask_url(url)}): {exc}"
            ) from None
