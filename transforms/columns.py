"""Which warehouse columns are Segment's own and which carry traits or properties."""

from __future__ import annotations

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

#: Traits that become top-level identify fields rather than attributes.
IDENTIFY_FIELD_TRAITS = frozenset({"first_name", "last_name", "email", "phone", "user_id", "id"})


def is_custom_column(name: str) -> bool:
    """A trait or property column: not one of Segment's own, not a `context_*` column."""
    return name not in SEGMENT_COLUMNS and not name.startswith("context_")


def attribute_columns(columns: list[str], *, timezone_from_context: bool = False) -> list[str]:
    drop = IDENTIFY_FIELD_TRAITS | ({"timezone"} if timezone_from_context else set())
    return [c for c in columns if is_custom_column(c) and c not in drop]
