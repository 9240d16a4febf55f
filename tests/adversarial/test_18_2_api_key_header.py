"""#18.2 (part): `CONNECT_API_KEY=" mykey "` gave 81 lines ending in `Illegal header value`.
ClientConfig strips surrounding whitespace, and refuses a key that cannot be a header value
with InvalidApiKeyError (an AuthenticationError: exit 2), naming no part of the key."""

from __future__ import annotations

import asyncio

import pytest
from connect_sync.connect.client import ClientConfig, ConnectClient
from connect_sync.connect.errors import (
    AuthenticationError,
    ConnectConfigurationError,
    InvalidApiKeyError,
)


def test_surrounding_whitespace_is_stripped_and_the_key_works(sandbox) -> None:
    config = ClientConfig(sandbox.api_url, f" {sandbox.api_key}\n")

    stats = asyncio.run(
        ConnectClient(config).deliver("track", [("m", {"user_id": "u", "event": "E"})])
    )

    assert config.api_key == sandbox.api_key
    assert stats.sent == 1


@pytest.mark.parametrize("key", ["my\nkey", "my\x00key", "clé-secrète", "key\u200b"])
def test_a_key_that_cannot_be_a_header_value_is_a_configuration_error(key: str) -> None:
    with pytest.raises(InvalidApiKeyError) as caught:
        ClientConfig("http://127.0.0.1:1/v2", key)

    message = str(caught.value)
    assert isinstance(caught.value, AuthenticationError)
    assert isinstance(caught.value, ConnectConfigurationError)
    assert "CONNECT_API_KEY" in message and "\n" not in message
    assert "key" not in message.replace("CONNECT_API_KEY", "").replace("the key", "")
