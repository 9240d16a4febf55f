"""Request validation as strict as Connect's (connect-api.md).

Validators return the item ready to store (ids as strings) or raise ValidationError, which
the app answers with a 400 and the `{"error": {"Message", "Code"}}` body. They run on the
whole request before anything is stored, so a rejected request stores nothing.
"""

from __future__ import annotations

from functools import cache
from typing import Any
from zoneinfo import available_timezones

MAX_BATCH = 100
MAX_EVENT_NAME = 200
IDENTIFY_STRINGS = ("first_name", "last_name", "email", "phone_number", "group_id")
TOKEN_FIELDS = ("apns", "gcm", "fcm")
PLATFORMS = TOKEN_FIELDS


class ValidationError(Exception):
    """A 400: the request is missing or has an invalid field; nothing of it is stored."""

    def __init__(self, message: str, code: str = "invalid_request") -> None:
        super().__init__(message)
        self.message = message
        self.code = code


@cache
def _timezones() -> frozenset[str]:
    return frozenset(available_timezones())


def is_timezone(name: object) -> bool:
    """True for an IANA (Olson) time zone name such as `Europe/Berlin`."""
    return isinstance(name, str) and name in _timezones()


def _id(value: Any, name: str) -> str:
    """A user id as Connect keys it: a non-empty string, or a number written as a string."""
    kind = type(value)
    if kind is str:
        if value:
            return value
    elif kind is int:
        return str(value)
    elif kind is float:
        if value != value or value in (float("inf"), float("-inf")):
            raise ValidationError(f"{name} must be a string or a number", f"invalid_{name}")
        return str(int(value)) if value.is_integer() else repr(value)
    if value is None or value == "":
        raise ValidationError(f"{name} is required", f"missing_{name}")
    raise ValidationError(f"{name} must be a string or a number", f"invalid_{name}")


def _object(item: Any, what: str) -> dict[str, Any]:
    if type(item) is not dict:
        raise ValidationError(f"{what} must be a JSON object", "invalid_body")
    return item


def validate_identify(item: Any) -> dict[str, Any]:
    """The identify with `user_id` (and `previous_id`) as strings, or ValidationError."""
    item = _object(item, "an identify")
    item["user_id"] = _id(item.get("user_id"), "user_id")
    previous_id = item.get("previous_id")
    if previous_id is not None:
        item["previous_id"] = _id(previous_id, "previous_id")
    for name in IDENTIFY_STRINGS:
        value = item.get(name)
        if value is not None and type(value) is not str:
            raise ValidationError(f"{name} must be a string", f"invalid_{name}")
    timezone = item.get("timezone")
    if timezone is not None and not is_timezone(timezone):
        raise ValidationError(
            f"timezone {timezone!r} is not an IANA time zone name", "invalid_timezone"
        )
    for name in TOKEN_FIELDS:
        tokens = item.get(name)
        if tokens is not None and (
            type(tokens) is not list or not all(type(t) is str and t for t in tokens)
        ):
            raise ValidationError(f"{name} must be an array of token strings", f"invalid_{name}")
    for name in ("attributes", "group_attributes"):
        value = item.get(name)
        if value is not None and type(value) is not dict:
            raise ValidationError(f"{name} must be an object", f"invalid_{name}")
    return item


def validate_track(item: Any) -> dict[str, Any]:
    """The track with `user_id` as a string, or ValidationError."""
    if type(item) is not dict:
        raise ValidationError("a track must be a JSON object", "invalid_body")
    item["user_id"] = _id(item.get("user_id"), "user_id")
    event = item.get("event")
    if type(event) is not str or not event:
        if event is None or event == "":
            raise ValidationError("event is required", "missing_event")
        raise ValidationError("event must be a string", "invalid_event")
    if len(event) > MAX_EVENT_NAME:
        raise ValidationError(f"event is longer than {MAX_EVENT_NAME} characters", "event_too_long")
    properties = item.get("properties")
    if properties is not None and type(properties) is not dict:
        raise ValidationError("properties must be an object", "invalid_properties")
    timestamp = item.get("timestamp")
    if timestamp is not None and type(timestamp) is not float and type(timestamp) is not int:
        raise ValidationError("timestamp must be a number of seconds", "invalid_timestamp")
    return item


def validate_batch(body: Any, validate_item: Any) -> list[dict[str, Any]]:
    """Every item of a batch body (a bare array of at most 100), or ValidationError."""
    if type(body) is not list:
        raise ValidationError("a batch body must be a JSON array", "invalid_body")
    if len(body) > MAX_BATCH:
        raise ValidationError(
            f"a batch holds at most {MAX_BATCH} items, got {len(body)}", "batch_too_large"
        )
    if not body:
        raise ValidationError("a batch must hold at least one item", "empty_batch")
    try:
        return [validate_item(item) for item in body]
    except ValidationError:
        pass
    for index, item in enumerate(body):  # the slow path only to say which item is bad
        try:
            validate_item(item)
        except ValidationError as exc:
            raise ValidationError(f"item {index}: {exc.message}", exc.code) from None
    raise AssertionError("unreachable")  # pragma: no cover


def validate_token(item: Any) -> dict[str, Any]:
    """`{user_id, token}` for `/{platform}/register` and `/disable`."""
    item = _object(item, "the body")
    item["user_id"] = _id(item.get("user_id"), "user_id")
    token = item.get("token")
    if token is None or token == "":
        raise ValidationError("token is required", "missing_token")
    if type(token) is not str:
        raise ValidationError("token must be a string", "invalid_token")
    return item


def validate_disable(item: Any) -> dict[str, Any]:
    """`{user_id, token}` or `{user_id, all: true}` for `/{platform}/disable`."""
    item = _object(item, "the body")
    everything = item.get("all")
    if everything is not None and type(everything) is not bool:
        raise ValidationError("all must be true or false", "invalid_all")
    if everything:
        item["user_id"] = _id(item.get("user_id"), "user_id")
        if item.get("token") is not None and type(item["token"]) is not str:
            raise ValidationError("token must be a string", "invalid_token")
        return item
    return validate_token(item)


def validate_user(item: Any) -> dict[str, Any]:
    """`{user_id}` for `/(un)subscribe/all`."""
    item = _object(item, "the body")
    item["user_id"] = _id(item.get("user_id"), "user_id")
    return item


def validate_campaigns(item: Any) -> dict[str, Any]:
    """`{user_id, campaign_ids}` for `/(un)subscribe/campaigns`: at least one campaign id."""
    item = validate_user(item)
    ids = item.get("campaign_ids")
    if ids is None:
        raise ValidationError("campaign_ids is required", "missing_campaign_ids")
    if type(ids) is not list or not ids:
        raise ValidationError("campaign_ids must be a non-empty array", "invalid_campaign_ids")
    clean: list[int | str] = []
    for value in ids:
        if type(value) is int or (type(value) is str and value):
            clean.append(value)
        else:
            raise ValidationError(
                "campaign_ids must hold campaign ids (integers)", "invalid_campaign_ids"
            )
    item["campaign_ids"] = clean
    return item
