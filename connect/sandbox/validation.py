"""Request validation as strict as Connect's (connect-api.md)."""

from __future__ import annotations

from functools import cache
from typing import Any
from zoneinfo import available_timezones

MAX_BATCH = 100
MAX_EVENT_NAME = 200
IDENTIFY_STRINGS = ("previous_id", "first_name", "last_name", "email", "phone_number", "group_id")
TOKEN_FIELDS = ("apns", "gcm", "fcm")


class ValidationError(Exception):
    """A 400: the request is missing or has an invalid field; nothing of it is stored."""

    def __init__(self, message: str, code: str = "invalid_request") -> None:
        super().__init__(message)
        self.message = message
        self.code = code


@cache
def _timezones() -> frozenset[str]:
    return frozenset(available_timezones())


def _user_id(item: dict[str, Any]) -> str:
    user_id = item.get("user_id")
    if user_id is None or user_id == "":
        raise ValidationError("user_id is required", "missing_user_id")
    if isinstance(user_id, bool) or not isinstance(user_id, str | int | float):
        raise ValidationError("user_id must be a string or a number", "invalid_user_id")
    if isinstance(user_id, float):
        return str(int(user_id)) if user_id.is_integer() else str(user_id)
    return str(user_id)


def validate_identify(item: Any) -> dict[str, Any]:
    """The item with `user_id` as a string, or ValidationError."""
    if not isinstance(item, dict):
        raise ValidationError("an identify must be a JSON object")
    clean = dict(item)
    clean["user_id"] = _user_id(item)
    for name in IDENTIFY_STRINGS:
        if name in item and item[name] is not None and not isinstance(item[name], str):
            raise ValidationError(f"{name} must be a string", f"invalid_{name}")
    timezone = item.get("timezone")
    if timezone is not None and (not isinstance(timezone, str) or timezone not in _timezones()):
        raise ValidationError(
            f"timezone {timezone!r} is not an IANA time zone name", "invalid_timezone"
        )
    for name in TOKEN_FIELDS:
        tokens = item.get(name)
        if tokens is not None and (
            not isinstance(tokens, list) or not all(isinstance(t, str) for t in tokens)
        ):
            raise ValidationError(f"{name} must be an array of strings", f"invalid_{name}")
    for name in ("attributes", "group_attributes"):
        if name in item and item[name] is not None and not isinstance(item[name], dict):
            raise ValidationError(f"{name} must be an object", f"invalid_{name}")
    return clean


def validate_track(item: Any) -> dict[str, Any]:
    if not isinstance(item, dict):
        raise ValidationError("a track must be a JSON object")
    clean = dict(item)
    clean["user_id"] = _user_id(item)
    event = item.get("event")
    if not isinstance(event, str) or not event:
        raise ValidationError("event is required and must be a string", "missing_event")
    if len(event) > MAX_EVENT_NAME:
        raise ValidationError(f"event is longer than {MAX_EVENT_NAME} characters", "event_too_long")
    properties = item.get("properties")
    if properties is not None and not isinstance(properties, dict):
        raise ValidationError("properties must be an object", "invalid_properties")
    timestamp = item.get("timestamp")
    if timestamp is not None and (
        isinstance(timestamp, bool) or not isinstance(timestamp, int | float)
    ):
        raise ValidationError("timestamp must be a number of seconds", "invalid_timestamp")
    return clean


def validate_batch(body: Any, validate_item: Any) -> list[dict[str, Any]]:
    if not isinstance(body, list):
        raise ValidationError("a batch body must be a JSON array")
    if len(body) > MAX_BATCH:
        raise ValidationError(
            f"a batch holds at most {MAX_BATCH} items, got {len(body)}", "batch_too_large"
        )
    clean = []
    for index, item in enumerate(body):
        try:
            clean.append(validate_item(item))
        except ValidationError as exc:
            raise ValidationError(f"item {index}: {exc.message}", exc.code) from exc
    return clean
