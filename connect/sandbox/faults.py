"""Fault injection: the sandbox as hard to please as a flaky network.

`Faults` is what `POST /_sandbox/faults` (and the CLI options) set; `FaultInjector.decide`
picks, per API request, whether it is dropped, rate limited, answered with a 5xx, or served.
"""

from __future__ import annotations

import math
import random
import time
from dataclasses import asdict, dataclass
from typing import Any

from connect_sync.connect.sandbox.validation import ValidationError

FAULT_FIELDS = (
    "error_rate",
    "rate_limit_per_s",
    "latency_ms",
    "drop_rate",
    "seed",
    "drop_after_rate",
    "max_body_bytes",
    "throttle_first",
    "retry_after_s",
    "slow_answer_ms",
)


@dataclass(frozen=True)
class Faults:
    """What to inject; all off by default."""

    error_rate: float = 0.0  # share of requests answered 500 or 503
    rate_limit_per_s: float | None = None  # above it: 429 with Retry-After
    latency_ms: float = 0.0  # added to every API request
    drop_rate: float = 0.0  # share of connections closed without a response
    seed: int | None = None  # for a reproducible sequence of faults
    drop_after_rate: float = 0.0  # share stored, then closed without a response
    max_body_bytes: int | None = None  # larger request bodies: 413
    throttle_first: int = 0  # the next N API requests: 429
    retry_after_s: int | None = None  # the Retry-After of every 429 (else computed)
    slow_answer_ms: float = 0.0  # stored at once, answered this much later

    @property
    def active(self) -> bool:
        return bool(
            self.error_rate
            or self.rate_limit_per_s
            or self.latency_ms
            or self.drop_rate
            or self.drop_after_rate
            or self.max_body_bytes
            or self.throttle_first
            or self.slow_answer_ms
        )

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Any) -> Faults:
        """Parse a faults body; unknown keys or out-of-range values are a ValidationError."""
        if not isinstance(data, dict):
            raise ValidationError("faults must be a JSON object", "invalid_faults")
        unknown = sorted(set(data) - set(FAULT_FIELDS))
        if unknown:
            raise ValidationError(
                f"unknown fault {unknown[0]!r}; known: {', '.join(FAULT_FIELDS)}", "invalid_faults"
            )
        values: dict[str, Any] = {}
        for name in ("error_rate", "drop_rate", "drop_after_rate"):
            value = _number(data.get(name), name, 0.0)
            if not 0.0 <= value <= 1.0:
                raise ValidationError(f"{name} must be between 0 and 1", "invalid_faults")
            values[name] = value
        for name in ("latency_ms", "slow_answer_ms"):
            latency = _number(data.get(name), name, 0.0)
            if latency < 0:
                raise ValidationError(f"{name} must not be negative", "invalid_faults")
            values[name] = latency
        limit = data.get("rate_limit_per_s")
        if limit is not None:
            limit = _number(limit, "rate_limit_per_s", 0.0)
            if limit < 0:
                raise ValidationError("rate_limit_per_s must not be negative", "invalid_faults")
        values["rate_limit_per_s"] = limit or None
        for name in ("seed", "max_body_bytes", "throttle_first", "retry_after_s"):
            value = data.get(name)
            if value is not None and (type(value) is not int):
                raise ValidationError(f"{name} must be an integer", "invalid_faults")
            if value is not None and name != "seed" and value < 0:
                raise ValidationError(f"{name} must not be negative", "invalid_faults")
            values[name] = value
        values["throttle_first"] = values["throttle_first"] or 0
        return cls(**values)


def _number(value: Any, name: str, default: float) -> float:
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ValidationError(f"{name} must be a number", "invalid_faults")
    return float(value)


class FaultInjector:
    """Per-request decisions, before the request is processed: ('drop', None),
    ('rate_limited', retry_after_s), ('error', status), ('too_large', limit) or None;
    and after it was stored: `drop_after()`."""

    def __init__(self, faults: Faults | None = None) -> None:
        self.set(faults or Faults())

    def set(self, faults: Faults) -> None:
        self.faults = faults
        self.random = random.Random(faults.seed)
        self.tokens = faults.rate_limit_per_s or 0.0
        self.refilled_at = time.monotonic()
        self.throttled = 0  # of `throttle_first`

    def _take_token(self) -> float:
        """0 when the request is within the limit, else seconds until it would be."""
        rate = self.faults.rate_limit_per_s
        if not rate:
            return 0.0
        now = time.monotonic()
        capacity = max(1.0, rate)  # a second's worth of burst
        self.tokens = min(capacity, self.tokens + (now - self.refilled_at) * rate)
        self.refilled_at = now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return 0.0
        return (1.0 - self.tokens) / rate

    def decide(self, body_size: int = 0) -> tuple[str, Any] | None:
        faults = self.faults
        if faults.drop_rate and self.random.random() < faults.drop_rate:
            return ("drop", None)
        if faults.max_body_bytes is not None and body_size > faults.max_body_bytes:
            return ("too_large", faults.max_body_bytes)
        if self.throttled < faults.throttle_first:
            self.throttled += 1
            return ("rate_limited", 1 if faults.retry_after_s is None else faults.retry_after_s)
        wait = self._take_token()
        if wait:
            after = faults.retry_after_s
            return ("rate_limited", max(1, math.ceil(wait)) if after is None else after)
        if faults.error_rate and self.random.random() < faults.error_rate:
            return ("error", self.random.choice((500, 503)))
        return None

    def drop_after(self) -> bool:
        """Whether to close the connection of a request just stored, without answering."""
        rate = self.faults.drop_after_rate
        return bool(rate) and self.random.random() < rate
