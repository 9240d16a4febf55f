"""Which warehouse columns are Segment's own and which carry traits or properties."""

from __future__ import annotations

from collections.abc import Iterable

#: Columns Segment writes on every table (never traits or properties, mapping.md).
SEGMENT_COLUMNS = frozenset(
    {
        "id",
        "anonymous_id",
        "user_id",
        "previous_id",
        "received_at",
        "sent_at",
        "timestamp",
        "original_timestamp",
        "uuid",
        "uuid_ts",
        "loaded_at",
        "event",
        "event_text",
    }
)

#: The reserved column the flows put each row's canonical user id in: no Segment column
#: can be named so (`transforms.identity_columns`), so it never hides a trait.
CANONICAL = "__canonical_id"

#: Traits that become top-level identify fields rather than attributes.
IDENTIFY_FIELD_TRAITS = frozenset({"first_name", "last_name", "email", "phone", "user_id", "id"})

#: Context columns the identify payload reads from each user's latest row.
LATEST_CONTEXT_COLUMNS = ("context_timezone",)

#: The order identify rows (and events) are taken in: `timestamp`, ties `received_at`, `id`.
ORDER_COLUMNS = ("timestamp", "received_at", "id")


def is_custom_column(name: str) -> bool:
    """A trait or property column: not one of Segment's own, not a `context_*` column, not
    the canonical id the flows added."""
    return name not in SEGMENT_COLUMNS and name != CANONICAL and not name.startswith("context_")


def custom_columns(columns: Iterable[str]) -> list[str]:
    """The trait or property columns among `columns`, in their order."""
    return [c for c in columns if is_custom_column(c)]


def attribute_columns(columns: Iterable[str], *, timezone_from_context: bool = False) -> list[str]:
    """Trait columns sent as `attributes` (the `timezone` trait is handled per user)."""
    drop = IDENTIFY_FIELD_TRAITS | ({"timezone"} if timezone_from_context else set())
    return [c for c in columns if is_custom_column(c) and c not in drop]


#: Segment's own identify columns the users stream reads; every trait column comes too.
IDENTIFY_COLUMNS = ("id", "anonymous_id", "user_id", "timestamp", "received_at", "uuid_ts")
#: The context columns the identify payload reads (timezone, device tokens and platform).
IDENTIFY_CONTEXT_COLUMNS = (
    "context_timezone",
    "context_device_type",
    "context_device_token",
    "context_library_name",
)


def identify_read_columns(columns: Iterable[str]) -> list[str]:
    """Of an `identifies` table's columns, those the users stream reads: ids, order,
    context, every trait (in the table's order)."""
    wanted = set(IDENTIFY_COLUMNS) | set(IDENTIFY_CONTEXT_COLUMNS)
    return [c for c in columns if c in wanted or is_custom_column(c)]
