"""Change detection: a stable fingerprint of each payload."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from typing import Any

import orjson


def fingerprint(payload: dict[str, Any]) -> str:
    """A digest of the payload that ignores key order."""
    body = orjson.dumps(payload, option=orjson.OPT_SORT_KEYS)
    return hashlib.blake2b(body, digest_size=16).hexdigest()


def fingerprints(payloads: Iterable[dict[str, Any]]) -> list[str]:
    return [fingerprint(p) for p in payloads]
