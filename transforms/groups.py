"""Group identifies from `groups` rows (mapping.md, Pages, screens and groups).

One payload per (user, group): `{"group_attributes": {...}, "group_id": ..., "user_id":
...}`, the attributes being, per trait column, the latest non-null value over all rows of
that user and group (as identify attributes are over a user's identifies). Column-wise:
`traits.latest_traits` keyed by user and group, then all payloads at once as JSON bytes.

A Connect user has one current group: the one named by the last identify that carried a
`group_id`. As Segment's destination forwarded group calls in time order, a user's payloads
are ordered by the time of each group's latest call, so the group called last is sent last
(`with_current_group` re-sends it after any other group of the user that changed).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from itertools import pairwise

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
from connect_sync.transforms.changes import fingerprints
from connect_sync.transforms.columns import custom_columns
from connect_sync.transforms.events import REJECTED_COLUMNS
from connect_sync.transforms.identity_columns import CANONICAL, LEGACY_CANONICAL, canonical_column
from connect_sync.transforms.json_objects import json_records, json_texts
from connect_sync.transforms.traits import chronological_rank, latest_traits, user_codes
from connect_sync.transforms.values import (
    Field,
    as_arrow,
    as_text,
    json_ready,
    missing_mask,
    python_values,
)

#: Between the user id and the group id in a payload's key (never in either, in practice).
GROUP_KEY_SEPARATOR = "\x1f"

#: Columns of a groups row that are never group attributes (with Segment's own and the
#: context columns): the group itself, and the user the caller resolved.
NOT_TRAITS = frozenset({"group_id", "id", CANONICAL, LEGACY_CANONICAL})

_KEY = "\x1fkey"  # a name no warehouse column has


@dataclass
class GroupPayloads:
    """Payloads, one per (user, group), ordered by user, then by the time of the group's
    latest call (the user's current group last); rejected rows with their reasons."""

    keys: list[str]  # `user_id` GROUP_KEY_SEPARATOR `group_id`: the change-detection key
    payloads: list[bytes]  # one JSON object per (user, group), keys sorted
    rejected: pd.DataFrame
    quality: Counter[str] = field(default_factory=Counter)


def group_key(user_ids: pa.Array, group_ids: pa.Array) -> pa.Array:
    """The key of each (user id, group id) pair; null where either is null."""
    return pc.binary_join_element_wise(user_ids, group_ids, GROUP_KEY_SEPARATOR)


def trait_columns(columns: list[str]) -> list[str]:
    """The columns sent as `group_attributes`: the row's own, never `id` or `group_id`."""
    return [c for c in custom_columns(columns) if c not in NOT_TRAITS]


def _blank_as_null(column: pd.Series | None, n: int) -> pa.Array:
    """A column as text, null where missing, empty or whitespace only."""
    if column is None:
        return pa.nulls(n, pa.string())
    text = as_text(column)
    blank = pc.fill_null(pc.equal(pc.utf8_length(pc.utf8_trim_whitespace(text)), 0), False)
    return pc.if_else(blank, pa.scalar(None, pa.string()), text)


def _attribute_fields(latest: pd.DataFrame, columns: list[str]) -> list[Field]:
    """Each trait column as a typed field (null and empty values left out)."""
    fields = []
    for key in columns:
        array = as_arrow(latest[key])
        if array is None:  # mixed Python objects: kept as they are, nulls and "" left out
            values = python_values(latest[key])
            fields.append(Field(key, values, np.array([v is None for v in values], dtype=bool)))
        else:
            fields.append(Field(key, json_ready(array)))
    return fields


def group_payloads(rows: pd.DataFrame) -> GroupPayloads:
    """One group identify per (user, group) of `rows` (a `groups` table's rows carrying
    `canonical_id`, the user to send), ordered by user, then by the time of each group's
    latest call, so that a user's current group comes last.

    Per trait column the latest non-null value wins, rows taken by `timestamp` (ties
    `received_at`, then `id`); values keep their type, null and empty ones are left out,
    and `group_attributes` is left out when none is left. A row without a group id is
    rejected (`missing_group_id`), one without a user (`missing_user_id`, which wins); the
    caller removes rows it does not want considered (duplicates, out of scope) first.
    """
    n = len(rows)
    user_ids = _blank_as_null(rows.get(canonical_column(rows)), n)
    group_ids = _blank_as_null(rows.get("group_id"), n)
    reasons = np.full(n, None, dtype=object)
    reasons[missing_mask(group_ids)] = "missing_group_id"
    reasons[missing_mask(user_ids)] = "missing_user_id"
    bad = np.flatnonzero(pd.notna(reasons))
    rejected = pd.DataFrame(
        {
            "message_id": rows["id"].astype(str).to_numpy(dtype=object)[bad],
            "user_id": user_ids.take(pa.array(bad, pa.int64())).to_pylist(),
            "reason": reasons[bad],
        },
        columns=REJECTED_COLUMNS,
    )
    quality = Counter(rejected["reason"].tolist())

    traits = trait_columns(list(rows.columns))
    order = [c for c in ("timestamp", "received_at", "id") if c in rows.columns]
    keyed = pd.DataFrame(
        {c: rows[c] for c in order + traits}
        | {
            _KEY: pd.arrays.ArrowExtensionArray(group_key(user_ids, group_ids)),
            "user_id": pd.arrays.ArrowExtensionArray(user_ids),
            "group_id": pd.arrays.ArrowExtensionArray(group_ids),
        },
        index=rows.index,
        copy=False,
    )
    # every row of a key has its user and group id: "latest non-null" takes them as well
    _, rank = chronological_rank(keyed)
    latest = latest_traits(
        keyed, user_column=_KEY, columns=["user_id", "group_id", *traits], rank=rank
    )
    latest = latest.iloc[_send_order(keyed[_KEY], rank, latest["user_id"])]
    fields = [Field(key, as_arrow(latest[key])) for key in ("user_id", "group_id")]
    attributes = json_texts(_attribute_fields(latest, traits), len(latest))
    fields.append(Field("group_attributes", attributes, encoded=True))
    payloads = json_records(fields, len(latest))
    return GroupPayloads(latest.index.astype(str).tolist(), payloads, rejected, quality)


def _send_order(keys: pd.Series, rank: np.ndarray, users: pd.Series) -> np.ndarray:
    """Positions of the (key-sorted) latest rows in send order: by user, then by the rank
    of the key's latest call."""
    codes, distinct = user_codes(keys)
    newest = np.full(len(distinct), -1, dtype=np.int64)
    known = codes >= 0
    np.maximum.at(newest, codes[known], rank[known])
    user_order, _ = user_codes(users)
    return np.lexsort((newest, user_order))


#: Appended to the payload of a user's current group before fingerprinting it: a group
#: that becomes (or stops being) the current one counts as changed, and is sent.
CURRENT_GROUP_MARK = b"\x1fcurrent"


def _last_of_user(keys: list[str]) -> np.ndarray:
    """True at each user's last key (keys in send order: a user's keys together)."""
    users = _users_of(keys)
    return np.append(users[1:] != users[:-1], True)


def _first_of_user(last: np.ndarray) -> np.ndarray:
    """Where each user's keys start, from where they end (`_last_of_user`)."""
    return np.flatnonzero(np.insert(last[:-1], 0, True))


def current_groups(keys: list[str]) -> list[bool]:
    """True at each user's current group among `keys` (in send order, a user's keys
    together, as `with_current_group` leaves them): the user's last key."""
    return _last_of_user(keys).tolist() if keys else []


def group_fingerprints(keys: list[str], payloads: list[bytes]) -> list[str]:
    """Each payload's fingerprint, the user's current group (their last key) marked."""
    if not keys:
        return []
    current = _last_of_user(keys).tolist()
    return fingerprints(
        p + CURRENT_GROUP_MARK if last else p for p, last in zip(payloads, current, strict=True)
    )


def with_current_group(keys: list[str], send: list[bool]) -> list[bool]:
    """`send` (per key, in send order) plus, for every user with a key to send, that user's
    last key: their current group, sent after the others so it stays current."""
    if not keys:
        return send
    last = _last_of_user(keys)
    starts = _first_of_user(last)
    chosen = np.asarray(send, dtype=bool)
    any_sent = np.maximum.reduceat(chosen, starts)
    widened = chosen.copy()
    widened[last] |= any_sent
    return widened.tolist()


def _users_of(keys: list[str]) -> np.ndarray:
    """The user part of each key."""
    users = pc.list_element(pc.split_pattern(pa.array(keys), GROUP_KEY_SEPARATOR, max_splits=1), 0)
    return users.to_numpy(zero_copy_only=False)


def user_aligned_chunks(keys: list[str], size: int) -> list[tuple[int, int]]:
    """(start, end) of chunks of about `size` keys, never splitting one user's keys (so
    `with_current_group` sees all of a user's groups at once)."""
    if not keys:
        return [(0, 0)]
    starts = _first_of_user(_last_of_user(keys))
    cuts = [0]
    while cuts[-1] < len(keys):
        at = int(np.searchsorted(starts, cuts[-1] + size))
        cuts.append(int(starts[at]) if at < len(starts) else len(keys))
    return list(pairwise(cuts))
