"""Identify payloads from each user's latest traits (mapping.md, Users).

Every field is computed column-wise on Arrow arrays; the payloads are then written as JSON
bytes for all users at once (`transforms.json_objects`), never as a dict per user.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
from connect_sync.transforms.columns import attribute_columns
from connect_sync.transforms.contact import (
    WHITESPACE_CLASS,
    normalize_phones,
    trimmed,
    valid_emails,
    valid_timezones,
)
from connect_sync.transforms.json_objects import json_records, json_texts
from connect_sync.transforms.threads import in_parallel
from connect_sync.transforms.traits import TOKEN_LISTS, TOKEN_PLATFORMS
from connect_sync.transforms.values import (
    Field,
    as_arrow,
    as_series,
    as_text,
    json_column,
    missing_mask,
    null_where,
    object_array,
    positions_in,
    python_values,
    records,
)

#: A trimmed name: the first word, then (after the first run of whitespace) the rest.
NAME_SPLIT = rf"(?s)^(?P<first>[^{WHITESPACE_CLASS}]+)(?:[{WHITESPACE_CLASS}]+(?P<rest>.*))?$"

#: The top-level identify fields, in payload order (then `attributes`).
FIELDS = ("first_name", "last_name", "email", "phone_number", "timezone", *TOKEN_PLATFORMS)


@dataclass
class IdentifyPayloads:
    """Payloads in user order, with the data-quality counts by reason."""

    user_ids: list[str]
    payloads: list[bytes]  # one JSON object per user, keys sorted
    quality: Counter[str] = field(default_factory=Counter)


@dataclass
class _Fields:
    """Top-level fields as Arrow arrays (null: not sent), plus what the attributes need."""

    user_ids: pa.Array
    columns: dict[str, pa.Array]
    tokens: dict[str, pa.Array]  # lists of text, null where none
    timezone_taken: np.ndarray
    quality: Counter[str]
    attributes: pa.Array | None = None  # JSON text, when asked for


def _text(latest: pd.DataFrame, name: str) -> pa.Array:
    if name not in latest.columns:
        return pa.nulls(len(latest), pa.string())
    array = as_arrow(latest[name])
    if array is None:
        array = pa.array(latest[name].astype("string"))
    return trimmed(array)


def split_names(latest: pd.DataFrame) -> pd.DataFrame:
    """`first_name`/`last_name`: explicit traits win (trimmed); otherwise the trimmed `name`
    split at the first whitespace (first word, trimmed rest; one word: no last name)."""
    first, last = _names(latest)
    return pd.DataFrame(
        {"first_name": _series(first, latest.index), "last_name": _series(last, latest.index)}
    )


def _names(latest: pd.DataFrame) -> tuple[pa.Array, pa.Array]:
    name = _text(latest, "name")
    parts = pc.extract_regex(name, NAME_SPLIT)
    first_word = trimmed(pc.struct_field(parts, "first"))
    rest = trimmed(pc.struct_field(parts, "rest"))
    first = pc.coalesce(_text(latest, "first_name"), first_word)
    last = pc.coalesce(_text(latest, "last_name"), rest)
    return first, last


def _count(quality: Counter[str], reason: str, where: np.ndarray) -> None:
    if (count := int(np.count_nonzero(where))) > 0:
        quality[reason] += count


def _series(array: pa.Array, index: pd.Index) -> pd.Series:
    return pd.Series(pd.arrays.ArrowExtensionArray(array), index=index)


class _Zones(NamedTuple):
    """The `timezone` field, where a valid zone was found, and where one is invalid."""

    timezone: pa.Array
    taken: np.ndarray
    invalid: np.ndarray


def _timezones(latest: pd.DataFrame) -> _Zones:
    context_tz = _text(latest, "context_timezone")
    trait_tz = _text(latest, "timezone")
    context_ok = valid_timezones(context_tz)
    trait_ok = valid_timezones(trait_tz)
    context_bad = ~missing_mask(context_tz) & ~context_ok
    trait_bad = ~missing_mask(trait_tz) & ~trait_ok & ~context_ok
    timezone = pc.coalesce(null_where(context_tz, ~context_ok), null_where(trait_tz, ~trait_ok))
    return _Zones(timezone, context_ok | trait_ok, context_bad | trait_bad)


def _emails(latest: pd.DataFrame, user_ids: pa.Array) -> tuple[pa.Array, np.ndarray]:
    """The `email` field (the user id when it is an address), and where it is invalid."""
    email = _text(latest, "email")
    fallback = null_where(user_ids, ~valid_emails(user_ids))
    email = pc.coalesce(email, fallback)
    bad_email = ~missing_mask(email) & ~valid_emails(email)
    return null_where(email, bad_email), bad_email


def _fields(
    latest: pd.DataFrame,
    tokens: pd.DataFrame,
    phone_region: str | None,
    *,
    attributes: bool = False,
) -> _Fields:
    """The top-level fields (and, if asked, the attributes as JSON text), each worked out
    on its own thread, longest first."""
    zones = _timezones(latest)
    user_ids = pa.array(latest.index.astype(str), pa.string())
    steps = [
        lambda: normalize_phones(_text(latest, "phone"), phone_region),
        lambda: _token_lists(tokens, user_ids),
        lambda: _names(latest),
        lambda: _emails(latest, user_ids),
    ]
    quality: Counter[str] = Counter()
    if attributes:
        steps.insert(
            0, lambda: json_texts(attribute_fields(latest, zones.taken, quality), len(latest))
        )
    results = in_parallel(*steps)
    objects = results.pop(0) if attributes else None
    (phone, unparsed), token_columns, (first, last), (email, bad_email) = results
    _count(quality, "invalid_email", bad_email)
    _count(quality, "unparsed_phone", unparsed)
    _count(quality, "invalid_timezone", zones.invalid)
    columns = {
        "first_name": first,
        "last_name": last,
        "email": email,
        "phone_number": phone,
        "timezone": zones.timezone,
    }
    return _Fields(user_ids, columns, token_columns, zones.taken, quality, objects)


def identify_fields(
    latest: pd.DataFrame, tokens: pd.DataFrame, phone_region: str | None = None
) -> tuple[pd.DataFrame, Counter[str]]:
    """The top-level identify fields per user (index: canonical id), and quality counts."""
    built = _fields(latest, tokens, phone_region)
    frame = pd.DataFrame(
        {"user_id": _series(built.user_ids, latest.index)}
        | {k: _series(v, latest.index) for k, v in built.columns.items()}
        | {
            k: pd.Series(object_array(values.to_pylist()), index=latest.index)
            for k, values in built.tokens.items()
        }
    )
    return frame, built.quality


def attribute_fields(
    latest: pd.DataFrame, timezone_taken: np.ndarray, quality: Counter[str] | None = None
) -> list[Field]:
    """Every other trait column as a typed field; the `timezone` trait is left out where it
    became the `timezone` field (whether from the context or itself). A value that cannot
    be sent (an infinite timestamp, ...) is left out and counted in `quality` by reason; so
    is a column whose type has no JSON form (`values.json_column`)."""
    fields = []
    for key in attribute_columns(latest.columns):
        array = as_arrow(latest[key])
        if array is None:  # mixed Python objects: kept as they are, nulls and "" left out
            values = python_values(latest[key])
            missing = np.array([v is None for v in values], dtype=bool)
            fields.append(Field(key, values, missing))
            continue
        ready, dropped = json_column(key, array)
        if quality is not None:
            quality.update(dropped)
        if ready is None:
            continue
        if key == "timezone":
            ready = null_where(ready, timezone_taken)
        fields.append(Field(key, ready))
    return fields


def attributes_of(latest: pd.DataFrame, timezone_used: pd.Series | np.ndarray) -> list[dict]:
    """Every other trait column, typed, without null or empty values (one dict per user)."""
    taken = np.asarray(timezone_used, dtype=bool)
    return records(attribute_fields(latest, taken), len(latest))


def tokens_of(tokens: pd.DataFrame, user_ids: pd.Index) -> pd.DataFrame:
    """The `device_tokens` of each of `user_ids`, in that order (null lists where none):
    aligned once, so that chunks of users take their tokens by position."""
    lists = _looked_up(tokens, as_text(user_ids))
    return pd.DataFrame({p: as_series(v) for p, v in lists.items()}).set_axis(user_ids)


def _token_lists(tokens: pd.DataFrame, user_ids: pa.Array) -> dict[str, pa.Array]:
    """Per platform, each user's tokens (`device_tokens`, or `tokens_of` these users) as
    an Arrow list column, null where none."""
    owners = as_text(tokens.index)
    aligned = (
        len(owners) == len(user_ids)
        and set(TOKEN_PLATFORMS) <= set(tokens.columns)
        and pc.all(pc.equal(owners, user_ids), skip_nulls=False).as_py()
    )
    if not aligned:
        return _looked_up(tokens, user_ids)
    return {p: as_arrow(tokens[p]).cast(TOKEN_LISTS.pyarrow_dtype) for p in TOKEN_PLATFORMS}


def _looked_up(tokens: pd.DataFrame, user_ids: pa.Array) -> dict[str, pa.Array]:
    """Per platform, the token lists of each of `user_ids`, found among the tokens'
    owners (null where a user has none)."""
    at = positions_in(user_ids, as_text(tokens.index))
    taken = pa.array(at, mask=at < 0)
    kind = TOKEN_LISTS.pyarrow_dtype
    return {
        p: as_arrow(tokens[p]).cast(kind).take(taken)
        if p in tokens.columns
        else pa.nulls(len(user_ids), kind)
        for p in TOKEN_PLATFORMS
    }


def identify_payloads(
    latest: pd.DataFrame, tokens: pd.DataFrame, phone_region: str | None = None
) -> IdentifyPayloads:
    """One identify payload (JSON bytes, keys sorted) per row of `latest` (index: canonical
    id)."""
    n = len(latest)
    built = _fields(latest, tokens, phone_region, attributes=True)
    top = [Field("user_id", built.user_ids)]
    top += [Field(k, v) for k, v in built.columns.items()]
    top += [Field(k, v) for k, v in built.tokens.items()]
    top.append(Field("attributes", built.attributes, encoded=True))
    payloads = json_records(top, n)
    return IdentifyPayloads(built.user_ids.to_pylist(), payloads, built.quality)
