"""Keeping secrets out of messages: a URL's userinfo password, the API key.

Pure and dependency-free (standard library only), so any module may reuse it.
"""

from __future__ import annotations

import urllib.parse

MASK = "***"
#: Shorter secrets are not searched for in free text (it would garble every message).
MIN_SECRET_LEN = 3


def mask_url(url: str) -> str:
    """`url` with the password of its userinfo replaced by `***` (the user name is kept).

    Anything that does not parse as a URL is returned unchanged, except that a
    `user:password@` before the host is still masked."""
    try:
        parts = urllib.parse.urlsplit(url)
    except ValueError:
        parts = None
    if parts is not None and parts.netloc:
        userinfo, at, host = parts.netloc.rpartition("@")
        if not at or ":" not in userinfo:
            return url
        user = userinfo.split(":", 1)[0]
        return urllib.parse.urlunsplit(parts._replace(netloc=f"{user}:{MASK}@{host}"))
    head, sep, tail = url.partition("://")
    userinfo, at, rest = (tail if sep else head).rpartition("@")
    if not at or ":" not in userinfo:
        return url
    masked = f"{userinfo.split(':', 1)[0]}:{MASK}@{rest}"
    return f"{head}{sep}{masked}" if sep else masked


def url_password(url: str) -> str | None:
    """The password of the URL's userinfo (as written), if it has one."""
    try:
        netloc = urllib.parse.urlsplit(url).netloc
    except ValueError:
        return None
    userinfo, at, _ = netloc.rpartition("@")
    if not at or ":" not in userinfo:
        return None
    return userinfo.split(":", 1)[1] or None


def redact(text: str, *secrets: str | None) -> str:
    """`text` with every occurrence of each secret (and its percent-decoded form) masked."""
    for secret in secrets:
        if not secret:
            continue
        for form in {secret, urllib.parse.unquote(secret)}:
            if len(form) >= MIN_SECRET_LEN and form in text:
                text = text.replace(form, MASK)
    return text
