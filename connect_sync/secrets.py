"""Hide secrets in what is stored or printed: URL passwords, `password=`/`key=` query values.

A small neutral helper (no I/O) for the flows, the state store's reports and the CLI.
"""

from __future__ import annotations

import re
from typing import Any

MASK = "***"

#: `scheme://user:PASSWORD@host`: the password (anything up to the last `@` before the host).
_USERINFO = re.compile(r"(?P<head>\b[a-zA-Z][\w+.-]*://[^:/?#@\s]*:)[^\s/?#]*(?=@)")
#: `?password=VALUE`, `&api_key=VALUE`, ... in a URL's query or a DSN.
_QUERY = re.compile(
    r"(?P<head>\b(?:password|passwd|pwd|secret|token|api_key|apikey|private_key|credentials\w*)=)[^&\s'\"]+",
    re.IGNORECASE,
)


def mask_text(text: str) -> str:
    """`text` with every URL password and secret query value replaced by `***`."""
    text = _USERINFO.sub(lambda m: m.group("head") + MASK, text)
    return _QUERY.sub(lambda m: m.group("head") + MASK, text)


def mask_url(url: str | None) -> str | None:
    """A URL with its password (and secret query values) hidden."""
    return None if url is None else mask_text(url)


def mask_secrets(value: Any) -> Any:
    """`value` (JSON-like: dicts, lists, strings) with every string masked."""
    if isinstance(value, str):
        return mask_text(value)
    if isinstance(value, dict):
        return {k: mask_secrets(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [mask_secrets(v) for v in value]
    return value
