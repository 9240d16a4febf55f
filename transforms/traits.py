"""Latest traits per user and device tokens, from all of the user's identify rows."""

from __future__ import annotations

import pandas as pd

ORDER = ["timestamp", "received_at", "id"]


def latest_traits(identifies: pd.DataFrame, user_column: str = "canonical_id") -> pd.DataFrame:
    """One row per user: per column, the latest non-null value (null = not sent in that call).

    Rows are ordered by `timestamp`, ties by `received_at`, then `id`.
    """
    if identifies.empty:
        return identifies.iloc[0:0].set_index(user_column)
    ordered = identifies.sort_values([user_column, *ORDER], kind="stable")
    return ordered.groupby(user_column, sort=False).last()


def device_platforms(identifies: pd.DataFrame) -> pd.Series:
    """`apns`, `fcm` or null per row: device type compared case-insensitively; when the type
    is null, inferred from the library name (`analytics-ios`, `analytics-android`)."""
    index = identifies.index
    device_type = _lower(identifies, "context_device_type", index)
    library = _lower(identifies, "context_library_name", index)
    inferred = pd.Series(pd.NA, index=index, dtype="string")
    inferred = inferred.mask(library.str.contains("android", na=False), "android")
    inferred = inferred.mask(library.str.contains("ios", na=False), "ios")
    kind = device_type.fillna(inferred)
    platform = pd.Series(pd.NA, index=index, dtype="string")
    platform = platform.mask(kind == "ios", "apns").mask(kind == "android", "fcm")
    return platform


def device_tokens(identifies: pd.DataFrame, user_column: str = "canonical_id") -> pd.DataFrame:
    """Per user, `apns` and `fcm`: every distinct token, newest first."""
    if "context_device_token" not in identifies.columns or identifies.empty:
        return pd.DataFrame(columns=["apns", "fcm"], index=pd.Index([], name=user_column))
    token = identifies["context_device_token"].astype("string").str.strip()
    frame = pd.DataFrame(
        {
            user_column: identifies[user_column],
            "platform": device_platforms(identifies),
            "token": token,
            **{c: identifies[c] for c in ORDER if c in identifies.columns},
        }
    )
    frame = frame[frame["platform"].notna() & frame["token"].notna() & (frame["token"] != "")]
    order = [c for c in ORDER if c in frame.columns]
    frame = frame.sort_values(order, ascending=False, kind="stable")
    frame = frame.drop_duplicates([user_column, "platform", "token"])
    lists = frame.groupby([user_column, "platform"], sort=False)["token"].agg(list)
    wide = lists.unstack("platform")
    for column in ("apns", "fcm"):
        if column not in wide.columns:
            wide[column] = None
    return wide[["apns", "fcm"]]


def _lower(frame: pd.DataFrame, column: str, index: pd.Index) -> pd.Series:
    if column not in frame.columns:
        return pd.Series(pd.NA, index=index, dtype="string")
    return frame[column].astype("string").str.strip().str.lower()
