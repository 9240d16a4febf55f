"""Change detection: a stable fingerprint of each payload."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from typing import Any

import orjson


def fingerprint(payload: bytes | dict[str, Any]) -> str:
    """A digest of the payload that ignores key order.

    A bytes payload is JSON with its keys sorted already (as the transforms write it) and
    is hashed as it is; a dict is written with sorted keys first, so both forms of one
    payload have one fingerprint.
    """
    body = (
        payload
        if isinstance(payload, bytes)
        else orjson.dumps(payload, option=orjson.OPT_SORT_KEYS)
    )
    return hashlib.blake2b(body, digest_size=16).hexdigest()


def fingerprints(payloads: Iterable[bytes | dict[str, Any]]) -> list[str]:
    return [fingerprint(p) for p in payloads]
