"""Identify payloads from each user's latest traits (mapping.md, Users)."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from transforms.columns import attribute_columns
from transforms.contact import clean_text, normalize_phones, valid_email, valid_timezone
from transforms.values import python_values

NAME_SPLIT = r"^(?P<first>\S+)(?:\s+(?P<rest>.*))?$"


@dataclass
class IdentifyPayloads:
    """Payloads in user order, with the data-quality counts by reason."""

    user_ids: list[str]
    payloads: list[dict[str, Any]]
    quality: Counter[str] = field(default_factory=Counter)


def _column(frame: pd.DataFrame, name: str) -> pd.Series:
    if name in frame.columns:
        return clean_text(frame[name])
    return pd.Series(pd.NA, index=frame.index, dtype="string")


def split_names(latest: pd.DataFrame) -> pd.DataFrame:
    """`first_name`/`last_name`: explicit traits win; otherwise `name` split at the first
    whitespace (first word, trimmed rest)."""
    name = _column(latest, "name").astype(pd.StringDtype("python"))
    parts = name.str.extract(NAME_SPLIT)
    rest = parts["rest"].astype("string").str.strip()
    first = _column(latest, "first_name").fillna(parts["first"].astype("string"))
    last = _column(latest, "last_name").fillna(rest.mask(rest == ""))
    return pd.DataFrame({"first_name": first, "last_name": last}, index=latest.index)


def identify_fields(
    latest: pd.DataFrame, tokens: pd.DataFrame, phone_region: str | None = None
) -> tuple[pd.DataFrame, Counter[str]]:
    """The top-level identify fields per user (index: canonical id), and quality counts."""
    quality: Counter[str] = Counter()
    user_id = pd.Series(latest.index.astype(str), index=latest.index)
    fields = split_names(latest)

    email = _column(latest, "email")
    fallback = user_id.where(valid_email(user_id.astype("string")))
    email = email.fillna(fallback.astype("string"))
    bad_email = email.notna() & ~valid_email(email)
    quality["invalid_email"] += int(bad_email.sum())
    fields["email"] = email.mask(bad_email)

    phone, unparsed = normalize_phones(_column(latest, "phone"), phone_region)
    quality["unparsed_phone"] += int(unparsed.sum())
    fields["phone_number"] = phone

    context_tz = _column(latest, "context_timezone")
    trait_tz = _column(latest, "timezone")
    context_ok = valid_timezone(context_tz)
    trait_ok = valid_timezone(trait_tz)
    invalid = (context_tz.notna() & ~context_ok) | (trait_tz.notna() & ~trait_ok & ~context_ok)
    quality["invalid_timezone"] += int(invalid.sum())
    fields["timezone"] = context_tz.where(context_ok).fillna(trait_tz.where(trait_ok))
    fields["_timezone_from_trait_or_context"] = context_ok | trait_ok

    for platform in ("apns", "fcm"):
        fields[platform] = tokens[platform].reindex(latest.index) if len(tokens) else None
    fields.insert(0, "user_id", user_id)
    return fields, quality


def identify_payloads(
    latest: pd.DataFrame, tokens: pd.DataFrame, phone_region: str | None = None
) -> IdentifyPayloads:
    """One identify payload per row of `latest` (index: canonical id)."""
    fields, quality = identify_fields(latest, tokens, phone_region)
    attributes = attributes_of(latest, timezone_used=fields.pop("_timezone_from_trait_or_context"))
    names = ["first_name", "last_name", "email", "phone_number", "timezone"]
    columns = {name: python_values(fields[name]) for name in names}
    token_columns = {p: fields[p].tolist() for p in ("apns", "fcm")}
    user_ids = fields["user_id"].tolist()
    payloads: list[dict[str, Any]] = []
    for i, user in enumerate(user_ids):
        payload: dict[str, Any] = {"user_id": user}
        for name in names:
            value = columns[name][i]
            if value is not None:
                payload[name] = value
        for platform, values in token_columns.items():
            tokens_of_user = values[i]
            if isinstance(tokens_of_user, list) and tokens_of_user:
                payload[platform] = tokens_of_user
        if attributes[i]:
            payload["attributes"] = attributes[i]
        payloads.append(payload)
    return IdentifyPayloads(user_ids, payloads, quality)


def attributes_of(latest: pd.DataFrame, timezone_used: pd.Series) -> list[dict[str, Any]]:
    """Every other trait column, typed, without null or empty values."""
    keys = attribute_columns(list(latest.columns))
    if not keys:
        return [{} for _ in range(len(latest))]
    values = {}
    for key in keys:
        column = latest[key]
        if key == "timezone":  # sent as the timezone field: not again as an attribute
            column = column.mask(timezone_used.to_numpy(dtype=bool))
        values[key] = python_values(column)
    return [
        {k: v for k, v in zip(keys, row, strict=True) if v is not None}
        for row in zip(*values.values(), strict=True)
    ]
