"""Track payloads from `tracks` rows and the events' own property tables (mapping.md, Events)."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from transforms.columns import is_custom_column
from transforms.contact import clean_text
from transforms.values import python_values, unix_seconds

MAX_EVENT_NAME = 200


@dataclass
class TrackPayloads:
    """Payloads in send order with their message ids; rejected rows with their reasons."""

    message_ids: list[str]
    payloads: list[dict[str, Any]]
    rejected: pd.DataFrame
    quality: Counter[str] = field(default_factory=Counter)


def property_dicts(event_table: pd.DataFrame) -> pd.Series:
    """One properties dict per message id of an event table (typed, no nulls)."""
    event_table = event_table.drop_duplicates("id", keep="last")
    keys = [c for c in event_table.columns if is_custom_column(c)]
    values = [python_values(event_table[k]) for k in keys]
    dicts = (
        [
            {k: v for k, v in zip(keys, row, strict=True) if v is not None}
            for row in zip(*values, strict=True)
        ]
        if keys
        else [{} for _ in range(len(event_table))]
    )
    return pd.Series(dicts, index=event_table["id"].astype(str).to_numpy(), dtype=object)


def dedupe_messages(rows: pd.DataFrame) -> tuple[pd.DataFrame, int]:
    """First row per message id, and how many duplicates were dropped."""
    deduped = rows.drop_duplicates("id", keep="first")
    return deduped, len(rows) - len(deduped)


def track_payloads(tracks: pd.DataFrame, properties: pd.Series | None = None) -> TrackPayloads:
    """One track payload per row of `tracks` (already deduplicated and ordered).

    `tracks` carries `canonical_id`: the user id, else the canonical id of the anonymous id.
    """
    user_id = tracks["canonical_id"].astype("string")
    event_text = clean_text(tracks["event_text"]) if "event_text" in tracks else None
    name = (
        event_text.fillna(clean_text(tracks["event"]))
        if event_text is not None
        else clean_text(tracks["event"])
    )
    reasons = pd.Series(pd.NA, index=tracks.index, dtype="string")
    reasons = reasons.mask(name.isna(), "missing_event_name")
    reasons = reasons.mask(name.str.len() > MAX_EVENT_NAME, "event_name_too_long")
    reasons = reasons.mask(user_id.isna(), "missing_user_id")
    bad = reasons.notna()
    rejected = pd.DataFrame(
        {
            "message_id": tracks.loc[bad, "id"].astype(str),
            "user_id": user_id[bad],
            "reason": reasons[bad],
        }
    ).reset_index(drop=True)
    quality = Counter(rejected["reason"].value_counts().to_dict())

    good = tracks[~bad]
    message_ids = good["id"].astype(str).tolist()
    users = user_id[~bad].tolist()
    names = name[~bad].tolist()
    stamps = python_values(unix_seconds(good["timestamp"]))
    props = (
        properties.reindex(message_ids).tolist()
        if properties is not None and len(properties)
        else [None] * len(message_ids)
    )
    payloads = []
    for user, event, stamp, prop in zip(users, names, stamps, props, strict=True):
        payload: dict[str, Any] = {"user_id": user, "event": event}
        if isinstance(prop, dict) and prop:
            payload["properties"] = prop
        if stamp is not None:
            payload["timestamp"] = stamp
        payloads.append(payload)
    return TrackPayloads(message_ids, payloads, rejected, quality)
