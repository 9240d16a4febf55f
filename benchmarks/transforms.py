"""Users transform speed: identify rows -> identify payloads, and payloads -> request bodies.

Builds a synthetic `identifies` table shaped like a Segment source (1,000,000 rows, 30
trait columns of every warehouse type, plus Segment's own and context columns; each call
sends only some traits; names with unicode and emoji, emails with a few invalid ones,
phones in E.164, international, national and junk forms, valid and invalid time zones,
iOS/Android device tokens with mixed-case or missing device types), with Arrow dtypes as
the warehouse reader returns them. Then, on the same rows in the same process:

- the users transform: `chronological_rank` + `device_tokens` + `latest_traits` +
  `identify_payloads` (every identify field, the attributes and the payloads as JSON
  bytes): the same calls as `flows.pipeline.SyncJob.sync_users`. Reading the warehouse,
  identity resolution and change detection are not included. "rows/s" counts identify
  rows in; the payloads out (one per user) are counted too. Best of --repeat runs.
- a straightforward per-row Python implementation of the same rules (sort the rows, merge
  each user's latest non-null values in a dict, then build each payload field by field,
  each distinct phone parsed once, as the transform does), timed from the rows as Python
  dicts (`pyarrow.Table.to_pylist()`, not timed). Its payloads must equal the transform's
  (decoded), and its sorted-key orjson bytes must equal the transform's bytes (the
  change-detection fingerprint).
- serialization: the finished payloads to request bodies as the client sends them
  (`connect.client.batch_json`: the payloads' bytes joined into batches of 100),
  payloads/s. Best of --repeat runs.

Prints figures; asserts nothing but the equality of the two implementations' payloads.

    python benchmarks/transforms.py [--rows 1000000] [--users 200000] [--repeat 3]
"""

from __future__ import annotations

import argparse
import gc
import math
import os
import re
import sys
import time
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

# This script is named like the package it measures: import the package, not the script,
# and the package of this checkout (not whichever one is installed).
_HERE = Path(__file__).resolve().parent
sys.path[:] = [str(_HERE.parent)] + [p for p in sys.path if Path(p or ".").resolve() != _HERE]
sys.modules.pop("transforms", None)

from connect_sync.connect.client import batch_json  # noqa: E402
from connect_sync.transforms.columns import IDENTIFY_FIELD_TRAITS, is_custom_column  # noqa: E402
from connect_sync.transforms.contact import EMAIL_PATTERN, e164_number, iana_timezones  # noqa: E402
from connect_sync.transforms.traits import chronological_rank, device_tokens, latest_traits  # noqa: E402
from connect_sync.transforms.users import identify_payloads  # noqa: E402

T0 = 1_767_225_600_000_000  # 2026-01-01 in microseconds
REGION = "US"

STRING_TRAITS = {
    "plan": ["free", "starter", "pro", "business", "enterprise"],
    "country": ["United States", "Germany", "France", "Brazil", "Japan", "India", "Kenya"],
    "city": ["Detroit", "Berlin", "Paris", "São Paulo", "東京", "Mumbai", "Nairobi", "Lyon"],
    "company": None,
    "title": ["Engineer", "Manager", "Designer", "Founder", "Analyst", "Nurse", "Teacher"],
    "industry": ["Software", "Retail", "Health", "Finance", "Education", "Media"],
    "referrer": ["google", "newsletter", "friend", "ad", "podcast"],
    "app_version": None,
    "language": ["en", "de", "fr", "pt-BR", "ja", "hi", "sw"],
    "gender": ["female", "male", "non-binary", ""],
    "user_name": None,
}
INT_TRAITS = ["age", "logins", "credits", "employees"]
FLOAT_TRAITS = ["score", "lifetime_value", "rating"]
BOOL_TRAITS = ["vip", "newsletter", "beta"]
TIME_TRAITS = ["created_at", "last_seen_at", "birthday"]
FIRST = ["Ashley", "John", "Mary Ann", "José", "Zoë", "Łukasz", "Ngozi", "明", "🎉", "Émilie"]
LAST = ["Boshweizen", "Doe", "Smith", "García", "Müller", "Nowak", "Okafor", "山田", "Ünal"]
ZONES = ["America/Detroit", "Europe/Berlin", "Asia/Tokyo", "America/Sao_Paulo", "EST5", ""]
DEVICE_TYPES = ["ios", "iOS", "android", "Android", None, None]
LIBRARIES = ["analytics-ios", "analytics-android", "analytics.js", "analytics-ios"]


# -- the rows -----------------------------------------------------------------------------


def _strings(prefix: str, numbers: np.ndarray, suffix: str = "") -> pa.Array:
    return pc.binary_join_element_wise(prefix, pc.cast(pa.array(numbers), pa.string()), suffix, "")


def _choice(rng: np.random.Generator, options: list[Any], n: int) -> pa.Array:
    return pa.array(options).take(pa.array(rng.integers(0, len(options), n)))


def _sometimes(rng: np.random.Generator, array: pa.Array, p: float) -> pa.Array:
    """The array with each value sent (non-null) with probability p."""
    absent = pa.array(rng.random(len(array)) >= p)
    return pc.if_else(absent, pa.scalar(None, array.type), array)


def identify_rows(n_rows: int, n_users: int, seed: int = 7) -> pd.DataFrame:
    """Synthetic identify rows with a `canonical_id` column, Arrow dtypes."""
    rng = np.random.default_rng(seed)
    user = rng.integers(0, n_users, n_rows)
    known = (user % 5) != 0  # a fifth of the users were only ever anonymous
    user_id = pc.if_else(pa.array(known), _strings("user-", user), pa.scalar(None, pa.string()))
    anonymous = _strings("anon-", user * 7 + 3)
    stamp = T0 + rng.integers(0, 90 * 86_400_000_000, n_rows)
    ts_type = pa.timestamp("us", tz="UTC")
    cols: dict[str, pa.Array] = {
        "id": _strings("msg-", np.arange(n_rows)),
        "anonymous_id": anonymous,
        "user_id": user_id,
        "received_at": pa.array(stamp + 150_000, ts_type),
        "sent_at": pa.array(stamp + 20_000, ts_type),
        "original_timestamp": pa.array(stamp, ts_type),
        "timestamp": pa.array(stamp, ts_type),
        "uuid_ts": pa.array(stamp + 3_600_000_000, ts_type),
        "context_ip": _strings("10.0.", user % 250, ".7"),
        "context_locale": _choice(rng, ["en-US", "de-DE", "ja-JP"], n_rows),
        "context_library_name": _choice(rng, LIBRARIES, n_rows),
        "context_device_type": _sometimes(rng, _choice(rng, DEVICE_TYPES, n_rows), 0.4),
        "context_device_token": _sometimes(rng, _strings("tok-", user * 3 + (stamp % 2)), 0.4),
        "context_timezone": _sometimes(rng, _choice(rng, ZONES[:4], n_rows), 0.5),
    }
    p = 0.35  # each call sends about a third of the traits
    first = _choice(rng, FIRST, n_rows)
    last = _choice(rng, LAST, n_rows)
    traits: dict[str, pa.Array] = {
        "first_name": _sometimes(rng, first, 0.1),
        "last_name": _sometimes(rng, last, 0.1),
        "name": _sometimes(
            rng, pc.binary_join_element_wise(_choice(rng, ["", " "], n_rows), first, last, " "), p
        ),
        "email": _sometimes(rng, _email(rng, user), p),
        "phone": _sometimes(rng, _phone(rng, user), p),
        "timezone": _sometimes(rng, _choice(rng, ZONES, n_rows), 0.2),
    }
    for name, options in STRING_TRAITS.items():
        values = (
            _choice(rng, options, n_rows)
            if options
            else _strings(f"{name}-", rng.integers(0, n_rows, n_rows))
        )
        traits[name] = _sometimes(rng, values, p)
    for name in INT_TRAITS:
        traits[name] = _sometimes(rng, pa.array(rng.integers(0, 10_000, n_rows)), p)
    for name in FLOAT_TRAITS:
        values = pa.array(np.round(rng.random(n_rows) * 1000, 2))
        traits[name] = _sometimes(rng, values, p)
    for name in BOOL_TRAITS:
        traits[name] = _sometimes(rng, pa.array(rng.random(n_rows) < 0.5), p)
    for name in TIME_TRAITS:
        values = pa.array(T0 - rng.integers(0, 10**15, n_rows), pa.timestamp("us"))
        traits[name] = _sometimes(rng, values, p)
    assert len(traits) == 30, len(traits)
    table = pa.table({**cols, **traits})
    frame = table.to_pandas(types_mapper=pd.ArrowDtype)
    frame["canonical_id"] = pd.array(
        pc.coalesce(user_id, anonymous).to_pylist(), dtype=pd.ArrowDtype(pa.string())
    )
    return frame


def _email(rng: np.random.Generator, user: np.ndarray) -> pa.Array:
    good = _strings("person.", user, "@example.com")
    odd = _choice(rng, ["not-an-email", " spaced.out@example.com ", "a@b"], len(user))
    return pc.if_else(pa.array(rng.random(len(user)) < 0.03), odd, good)


def _phone(rng: np.random.Generator, user: np.ndarray) -> pa.Array:
    """One number per user, written in one of several forms."""
    area = 201 + user % 700
    line = 1000 + user % 9000
    exchange = 200 + (user // 9000) % 800
    forms = [
        pc.binary_join_element_wise(
            "+1", pc.cast(pa.array(area * 10_000_000 + exchange * 10_000 + line), pa.string()), ""
        ),
        _fmt("+1 ({}) {}-{}", area, exchange, line),
        _fmt("({}) {}-{}", area, exchange, line),
        _fmt("+44 20 7{}{}", exchange, line),
        _choice(rng, ["55555", "call me", "+1 555"], len(user)),
    ]
    pick = (user * 2654435761 % 100).astype(np.int64)
    form = np.select([pick < 45, pick < 70, pick < 85, pick < 95], [0, 1, 2, 3], 4)
    out = forms[4]
    for k in (3, 2, 1, 0):
        out = pc.if_else(pa.array(form == k), forms[k], out)
    return out


def _fmt(template: str, *numbers: np.ndarray) -> pa.Array:
    pieces = template.split("{}")
    parts: list[Any] = [pieces[0]]
    for number, piece in zip(numbers, pieces[1:], strict=True):
        parts += [pc.cast(pa.array(number), pa.string()), piece]
    return pc.binary_join_element_wise(*parts, "")


# -- the per-row reference ----------------------------------------------------------------


def reference_payloads(rows: list[dict[str, Any]], region: str | None) -> dict[str, dict]:
    """The mapping.md rules, one row and one user at a time, in plain Python."""
    never = datetime.min.replace(tzinfo=UTC)

    def order(row: dict[str, Any]) -> tuple:
        return (row["timestamp"] or never, row["received_at"] or never, row["id"])

    zones = iana_timezones()
    email_ok = re.compile(EMAIL_PATTERN).match
    phones: dict[str, str | None] = {}
    latest: dict[str, dict[str, Any]] = {}
    tokens: dict[str, dict[str, list[str]]] = {}
    for row in sorted(rows, key=lambda r: (r["canonical_id"], *order(r))):
        user = row["canonical_id"]
        merged = latest.setdefault(user, {})
        for key, value in row.items():
            if value is not None and not (isinstance(value, float) and math.isnan(value)):
                merged[key] = value
        token = (row["context_device_token"] or "").strip()
        kind = (row["context_device_type"] or "").strip().lower()
        if not kind:
            library = (row["context_library_name"] or "").lower()
            kind = "ios" if "ios" in library else "android" if "android" in library else ""
        platform = {"ios": "apns", "android": "fcm"}.get(kind)
        if token and platform:
            mine = tokens.setdefault(user, {}).setdefault(platform, [])
            if token in mine:
                mine.remove(token)
            mine.insert(0, token)

    def text(value: Any) -> str | None:
        value = value.strip() if isinstance(value, str) else value
        return value or None

    out = {}
    for user, traits in latest.items():
        payload: dict[str, Any] = {"user_id": user}
        name = text(traits.get("name"))
        words = name.split(None, 1) if name else []
        first = text(traits.get("first_name")) or (words[0] if words else None)
        last = text(traits.get("last_name")) or (words[1].strip() if len(words) > 1 else None)
        email = text(traits.get("email"))
        if email is None and email_ok(user):
            email = user
        if email is not None and not email_ok(email):
            email = None
        phone = text(traits.get("phone"))
        if phone is not None:
            if phone not in phones:
                phones[phone] = e164_number(phone, region)
            phone = phones[phone] or phone
        context_tz, trait_tz = text(traits.get("context_timezone")), text(traits.get("timezone"))
        zone = context_tz if context_tz in zones else trait_tz if trait_tz in zones else None
        fields = (
            ("first_name", first),
            ("last_name", last),
            ("email", email),
            ("phone_number", phone),
            ("timezone", zone),
        )
        for key, value in fields:
            if value is not None:
                payload[key] = value
        for platform, values in tokens.get(user, {}).items():
            payload[platform] = values
        attributes = {}
        for key, value in traits.items():
            if not is_custom_column(key) or key in IDENTIFY_FIELD_TRAITS or key == "canonical_id":
                continue
            if key == "timezone" and zone is not None:
                continue
            if isinstance(value, datetime):
                value = value.astimezone(UTC) if value.tzinfo else value
                value = value.strftime("%Y-%m-%dT%H:%M:%SZ")
            if value == "" or (isinstance(value, float) and not math.isfinite(value)):
                continue
            attributes[key] = value
        if attributes:
            payload["attributes"] = attributes
        out[user] = payload
    return out


# -- timing ---------------------------------------------------------------------------------


def timed(fn, repeat: int) -> tuple[float, float, Any]:
    """Best wall time and best CPU time (this process) of `repeat` runs, and a result."""
    best, best_cpu, result = math.inf, math.inf, None
    for _ in range(repeat):
        result = None
        gc.collect()
        start, cpu = time.perf_counter(), time.process_time()
        result = fn()
        best = min(best, time.perf_counter() - start)
        best_cpu = min(best_cpu, time.process_time() - cpu)
    return best, best_cpu, result


def load() -> str:
    one, five, _ = os.getloadavg()
    return f"load average {one:.1f}/{five:.1f} on {os.cpu_count()} cores"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--users", type=int, default=200_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--skip-reference", action="store_true")
    args = parser.parse_args()

    print(load())
    start = time.perf_counter()
    frame = identify_rows(args.rows, args.users, args.seed)
    traits = [c for c in frame.columns if is_custom_column(c) and c != "canonical_id"]
    print(
        f"identify rows: {len(frame):,} ({len(traits)} trait columns, "
        f"{frame['canonical_id'].nunique():,} users), built in {time.perf_counter() - start:.1f} s"
    )

    stages: dict[str, float] = {}

    def users_transform():
        t = time.perf_counter()
        _, rank = chronological_rank(frame)
        stages["chronological_rank"] = time.perf_counter() - t
        t = time.perf_counter()
        tokens = device_tokens(frame, rank=rank)
        stages["device_tokens"] = time.perf_counter() - t
        t = time.perf_counter()
        latest = latest_traits(frame, rank=rank)
        stages["latest_traits"] = time.perf_counter() - t
        t = time.perf_counter()
        built = identify_payloads(latest, tokens, REGION)
        stages["identify_payloads"] = time.perf_counter() - t
        return built

    best_stages: dict[str, float] = {}
    seconds, cpu_seconds, built = math.inf, math.inf, None
    for _ in range(args.repeat):
        built = None
        gc.collect()
        t, c = time.perf_counter(), time.process_time()
        built = users_transform()
        took, cpu = time.perf_counter() - t, time.process_time() - c
        if took < seconds:
            seconds, best_stages = took, dict(stages)
        cpu_seconds = min(cpu_seconds, cpu)
    n_payloads = len(built.payloads)
    rows = len(frame)
    print(
        f"users transform: {seconds:.3f} s = {rows / seconds:,.0f} rows/s, "
        f"{n_payloads / seconds:,.0f} payloads/s (wall, best of {args.repeat}); "
        f"CPU {cpu_seconds:.3f} s = {rows / cpu_seconds:,.0f} rows/s"
    )
    print("  " + ", ".join(f"{k} {v:.3f} s" for k, v in best_stages.items()))
    print(f"  data quality: {dict(sorted(Counter(built.quality).items()))}")

    if not args.skip_reference:
        rows = pa.Table.from_pandas(frame, preserve_index=False).to_pylist()
        gc.collect()
        t, c = time.perf_counter(), time.process_time()
        reference = reference_payloads(rows, REGION)
        ref_seconds, ref_cpu = time.perf_counter() - t, time.process_time() - c
        pairs = list(zip(built.user_ids, built.payloads, strict=True))
        same = len(reference) == n_payloads and all(
            reference.get(u) == orjson.loads(p) for u, p in pairs
        )
        sorted_keys = orjson.OPT_SORT_KEYS
        same_bytes = same and all(
            orjson.dumps(reference[u], option=sorted_keys) == p for u, p in pairs
        )
        print(
            f"per-row Python reference: {ref_seconds:.3f} s = {len(frame) / ref_seconds:,.0f} "
            f"rows/s (CPU {ref_cpu:.3f} s); transform is {ref_seconds / seconds:.1f}x faster "
            f"(CPU: {ref_cpu / cpu_seconds:.1f}x); same payloads: {same}; "
            f"same bytes (fingerprints): {same_bytes}"
        )
        del rows, reference, pairs

    payloads = built.payloads

    def serialize():
        return [batch_json(payloads[i : i + 100]) for i in range(0, len(payloads), 100)]

    ser_seconds, ser_cpu, bodies = timed(serialize, args.repeat)
    size = sum(len(b) for b in bodies)
    print(
        f"serialization (joining JSON bytes, batches of 100): {ser_seconds:.3f} s = "
        f"{n_payloads / ser_seconds:,.0f} payloads/s (CPU {n_payloads / ser_cpu:,.0f}/s; "
        f"{size / n_payloads:,.0f} bytes a payload)"
    )
    print(load())


if __name__ == "__main__":
    main()
