"""A Segment-shaped demo warehouse in DuckDB: deterministic, realistically messy."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa

log = logging.getLogger(__name__)

BASE_TIME = pd.Timestamp("2026-10-01T00:00:00Z")
SPAN_S = 30 * 24 * 3600

FIRST_NAMES = np.array(
    [
        "Ashley",
        "Mary Ann",
        "John",
        "José",
        "Zoë",
        "李",
        "Ørjan",
        "Nadia",
        "Kwame",
        "Siobhán",
        "Mohammed",
        "Yuki",
        "Ana",
        "Émile",
        "Priya",
        "Łukasz",
    ],
    dtype=object,
)
LAST_NAMES = np.array(
    [
        "Boshweizen",
        "Smith",
        "Doe",
        "Álvarez",
        "小龙",
        "Müller",
        "O'Brien",
        "Nguyen",
        "Kowalski",
        "Okafor",
        "Sato",
        "da Silva",
        "Rossi",
        "Ivanova",
    ],
    dtype=object,
)
PLANS = np.array(["free", "startup", "business", "enterprise"], dtype=object)
TIMEZONES = np.array(
    [
        "America/Detroit",
        "Europe/Berlin",
        "Asia/Tokyo",
        "America/Sao_Paulo",
        "Africa/Lagos",
        "Australia/Sydney",
        "Europe/London",
        "America/Los_Angeles",
    ],
    dtype=object,
)
BAD_TIMEZONES = np.array(["Mars/Olympus_Mons", "GMT+2", "Eastern", "PST"], dtype=object)
LIBRARIES = {"ios": "analytics-ios", "android": "analytics-android", "web": "analytics.js"}

#: (event_text, table, property generator name)
EVENTS = [
    ("Signed Up", "signed_up"),
    ("Product Viewed", "product_viewed"),
    ("Order Completed", "order_completed"),
    ("Subscription Started", "subscription_started"),
]
LONG_EVENT_NAME = "Checkout Step Viewed " + "with a name far too long for Connect " * 6

#: The page and screen calls' tables and the group calls' table, built after the others
#: from their own random stream (`CALLS_STREAM`), so those stay the same for a seed.
CALL_TABLES = ("pages", "screens", "groups")
CALLS_STREAM = 101
#: (name, path, category) of the site's pages
PAGES = [
    ("Home", "/", None),
    ("Pricing", "/pricing", "marketing"),
    ("Docs", "/docs", "docs"),
    ("Blog", "/blog", "content"),
    ("Sign Up", "/signup", "marketing"),
]
SCREENS = np.array(["Home", "Product", "Cart", "Checkout", "Settings"], dtype=object)
REFERRERS = np.array(
    ["https://www.google.com/", "https://news.ycombinator.com/", "", None], dtype=object
)
INDUSTRIES = np.array(["Retail", "Media", "Finance", "Healthcare", "Software"], dtype=object)
USER_AGENTS = np.array(
    [
        "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_5) AppleWebKit/605.1.15 Safari/605.1.15",
        "Mozilla/5.0 (Windows NT 10.0; Win64; x64) Chrome/126.0 Safari/537.36",
    ],
    dtype=object,
)


@dataclass(frozen=True)
class DemoCounts:
    users: int
    identifies: int
    aliases: int
    tracks: int
    pages: int = 0
    screens: int = 0
    groups: int = 0


def _hex_vectorized(prefix: str, values: np.ndarray) -> np.ndarray:
    """`prefix` + 16 hex digits per value, without a Python loop per value."""
    digits = np.array(list("0123456789abcdef"))
    shifts = np.arange(60, -4, -4, dtype=np.int64)
    nibbles = (values[:, None] >> shifts) & 0xF
    chars = digits[nibbles]
    joined = np.ascontiguousarray(chars).view(f"<U{len(shifts)}").ravel()
    return np.char.add(prefix, joined).astype(object)


def _pick(rng: np.random.Generator, values: np.ndarray, n: int) -> np.ndarray:
    return values[rng.integers(0, len(values), size=n)]


def _mask(rng: np.random.Generator, p: float, n: int) -> np.ndarray:
    return rng.random(n) < p


def _null_where(values: np.ndarray, mask: np.ndarray) -> np.ndarray:
    out = values.astype(object).copy()
    out[mask] = None
    return out


def _times(seconds: np.ndarray) -> pd.Series:
    return BASE_TIME + pd.to_timedelta(np.round(seconds, 3), unit="s")


def build_frames(users: int, seed: int = 7) -> dict[str, pd.DataFrame]:
    """The demo tables as DataFrames: identifies, aliases, tracks, one per event, then
    pages, screens and groups."""
    rng = np.random.default_rng(seed)
    n = users
    person = np.arange(n)
    signed = _mask(rng, 0.85, n)
    user_ids = np.char.add("user-", person.astype(str)).astype(object)
    email_ids = _mask(rng, 0.03, n) & signed  # some products use the email as the user id
    user_ids[email_ids] = np.char.add(
        np.char.add("member", person[email_ids].astype(str)), "@example.com"
    )
    anon = _hex_vectorized("anon-", rng.integers(0, 2**62, size=n, dtype=np.int64))
    anon2 = _hex_vectorized("anon-", rng.integers(0, 2**62, size=n, dtype=np.int64))
    start = rng.uniform(0, SPAN_S * 0.8, size=n)
    platform = _pick(rng, np.array(["ios", "android", "web", "web"], dtype=object), n)

    identifies = _identifies(rng, n, signed, user_ids, anon, anon2, start, platform)
    aliases = _aliases(rng, signed, user_ids, anon, start)
    tracks, event_tables = _tracks(rng, n, signed, user_ids, anon, start, platform)
    frames = {"identifies": identifies, "aliases": aliases, "tracks": tracks, **event_tables}
    # Never a draw from `rng` from here on: the tables above stay as they were for a seed.
    calls = np.random.default_rng([seed, CALLS_STREAM])
    frames["pages"] = _pages(calls, signed, user_ids, anon, start)
    frames["screens"] = _screens(calls, signed, user_ids, anon, start, platform)
    frames["groups"] = _groups(calls, signed, user_ids, anon, start)
    return frames


def _common(rng: np.random.Generator, ts_seconds: np.ndarray, prefix: str) -> dict[str, object]:
    m = len(ts_seconds)
    timestamp = _times(ts_seconds)
    skew = rng.uniform(-5, 5, size=m)
    received = _times(ts_seconds + rng.uniform(0.1, 3, size=m))
    late = _mask(rng, 0.02, m)
    load_delay = np.where(late, rng.uniform(3600, 30 * 3600, size=m), rng.uniform(60, 900, size=m))
    return {
        "id": _hex_vectorized(prefix, rng.integers(0, 2**62, size=m, dtype=np.int64)),
        "received_at": received,
        "sent_at": _times(ts_seconds + skew + 1),
        "original_timestamp": _times(ts_seconds + skew),
        "timestamp": timestamp,
        "uuid_ts": _times(ts_seconds + load_delay),
    }


def _identifies(rng, n, signed, user_ids, anon, anon2, start, platform) -> pd.DataFrame:
    calls = rng.integers(1, 4, size=n)
    p = np.repeat(np.arange(n), calls)
    j = _ranks(calls)
    m = len(p)
    ts = start[p] + j * rng.uniform(600, 5 * 86400, size=m)
    frame = pd.DataFrame(_common(rng, ts, "idf-"))
    before_signup = (j == 0) & _mask(rng, 0.4, m)
    uid = _null_where(user_ids[p], ~signed[p] | before_signup)
    second_device = (j == calls[p] - 1) & (calls[p] > 1) & _mask(rng, 0.15, m)
    frame["anonymous_id"] = np.where(second_device, anon2[p], anon[p])
    frame["user_id"] = uid
    full = j == calls[p] - 1  # the latest call carries most traits; earlier ones are partial
    present = lambda share: full | _mask(rng, share, m)  # noqa: E731

    first = _pick(rng, FIRST_NAMES, m)
    last = _pick(rng, LAST_NAMES, m)
    name = np.char.add(np.char.add(first.astype(str), " "), last.astype(str)).astype(object)
    padded = _mask(rng, 0.05, m)
    name[padded] = np.char.add("  ", name[padded].astype(str))
    emoji = _mask(rng, 0.02, m)
    name[emoji] = np.char.add(name[emoji].astype(str), " 🚀")
    explicit = _mask(rng, 0.3, m)
    frame["name"] = _null_where(name, ~present(0.5))
    frame["first_name"] = _null_where(first, ~explicit)
    frame["last_name"] = _null_where(last, ~explicit)

    local = np.char.add("person", p.astype(str))
    email = np.char.add(local, "@example.com").astype(object)
    messy = _mask(rng, 0.05, m)
    email[messy] = np.char.add(" ", np.char.add(email[messy].astype(str), " "))
    invalid = _mask(rng, 0.02, m)
    email[invalid] = np.char.add(local[invalid], "-at-example.com")
    frame["email"] = _null_where(email, ~present(0.4) | ~signed[p])

    digits = rng.integers(2_000_000, 9_999_999, size=m).astype(str)
    phone = np.char.add("+1 415", digits).astype(object)
    local_fmt = _mask(rng, 0.3, m)
    phone[local_fmt] = np.char.add("(415) ", digits[local_fmt])
    short = _mask(rng, 0.03, m)
    phone[short] = "55555"
    frame["phone"] = _null_where(phone, ~_mask(rng, 0.35, m))

    frame["plan"] = _null_where(_pick(rng, PLANS, m), ~present(0.5))
    logins = pd.array(rng.integers(1, 500, size=m), dtype="Int64")
    logins[~present(0.4)] = pd.NA
    frame["logins"] = logins
    vip = pd.array(_mask(rng, 0.1, m), dtype="boolean")
    vip[~present(0.3)] = pd.NA
    frame["is_vip"] = vip
    created = _times(start[p] - rng.uniform(0, 86400 * 365, size=m))
    frame["created_at"] = created.where(present(0.3))
    tz_trait = _pick(rng, TIMEZONES, m)
    bad_tz = _mask(rng, 0.03, m)
    tz_trait[bad_tz] = _pick(rng, BAD_TIMEZONES, int(bad_tz.sum()))
    frame["timezone"] = _null_where(tz_trait, ~_mask(rng, 0.3, m))
    frame["company_name"] = _null_where(
        np.char.add("Company ", (p % 997).astype(str)).astype(object), ~_mask(rng, 0.2, m)
    )

    mobile = platform[p] != "web"
    frame["context_library_name"] = np.vectorize(LIBRARIES.get, otypes=[object])(platform[p])
    ctx_tz = _pick(rng, TIMEZONES, m)
    frame["context_timezone"] = _null_where(ctx_tz, ~mobile)
    device_type = platform[p].copy()
    cased = _mask(rng, 0.3, m) & mobile
    device_type[cased] = np.where(device_type[cased] == "ios", "iOS", "Android")
    untyped = _mask(rng, 0.1, m) & mobile
    frame["context_device_type"] = _null_where(device_type, ~mobile | untyped)
    tokens = _hex_vectorized("tok", rng.integers(0, 2**62, size=m, dtype=np.int64))
    frame["context_device_token"] = _null_where(tokens, ~mobile | _mask(rng, 0.3, m))
    frame["context_ip"] = np.char.add("10.0.", (p % 250).astype(str)).astype(object)
    return _with_duplicates(rng, frame, 0.01)


def _ranks(counts: np.ndarray) -> np.ndarray:
    """0..c-1 for each count c, concatenated (vectorized)."""
    ends = np.cumsum(counts)
    starts = np.repeat(ends - counts, counts)
    return np.arange(ends[-1] if len(ends) else 0) - starts


def _aliases(rng, signed, user_ids, anon, start) -> pd.DataFrame:
    chosen = np.flatnonzero(signed & _mask(rng, 0.3, len(signed)))
    ts = start[chosen] + rng.uniform(60, 3600, size=len(chosen))
    frame = pd.DataFrame(_common(rng, ts, "als-"))
    frame["previous_id"] = anon[chosen]
    frame["user_id"] = user_ids[chosen]
    frame["anonymous_id"] = anon[chosen]
    return frame


def _tracks(rng, n, signed, user_ids, anon, start, platform):
    counts = rng.integers(0, 6, size=n)
    p = np.repeat(np.arange(n), counts)
    m = len(p)
    ts = start[p] + rng.uniform(0, SPAN_S * 0.2, size=m)
    frame = pd.DataFrame(_common(rng, ts, "trk-"))
    anonymous_call = ~signed[p] | _mask(rng, 0.2, m)
    frame["anonymous_id"] = anon[p]
    frame["user_id"] = _null_where(user_ids[p], anonymous_call)
    kind = rng.integers(0, len(EVENTS), size=m)
    frame["event_text"] = np.array([e[0] for e in EVENTS], dtype=object)[kind]
    frame["event"] = np.array([e[1] for e in EVENTS], dtype=object)[kind]
    frame["context_library_name"] = np.vectorize(LIBRARIES.get, otypes=[object])(platform[p])
    if m >= 50:  # a few rows Connect cannot take: no id at all, an over-long name
        frame.loc[frame.index[:2], ["anonymous_id", "user_id"]] = None
        frame.loc[frame.index[2], ["event_text", "event"]] = [LONG_EVENT_NAME, "checkout_step"]
    frame = _with_duplicates(rng, frame, 0.01)

    tables = {}
    for _, table in EVENTS:
        rows = frame[frame["event"] == table].reset_index(drop=True)
        tables[table] = pd.concat([rows, _event_properties(rng, table, len(rows))], axis=1)
    return frame, tables


def _event_properties(rng, table: str, k: int) -> pd.DataFrame:
    if table == "signed_up":
        return pd.DataFrame(
            {
                "plan": _pick(rng, PLANS, k),
                "source": _pick(
                    rng, np.array(["Analytics Academy", "ads", "organic"], dtype=object), k
                ),
            }
        )
    if table == "product_viewed":
        return pd.DataFrame(
            {
                "product_id": _hex_vectorized(
                    "sku-", rng.integers(0, 5000, size=k, dtype=np.int64)
                ),
                "category": _pick(rng, np.array(["shoes", "hats", "bags"], dtype=object), k),
                "price": np.round(rng.uniform(5, 300, size=k), 2),
            }
        )
    if table == "order_completed":
        coupon = _null_where(
            _pick(rng, np.array(["SPRING", "VIP10"], dtype=object), k), ~_mask(rng, 0.2, k)
        )
        items = pd.array(rng.integers(1, 8, size=k), dtype="Int64")
        items[_mask(rng, 0.1, k)] = pd.NA
        return pd.DataFrame(
            {
                "order_id": _hex_vectorized("ord-", rng.integers(0, 2**40, size=k, dtype=np.int64)),
                "revenue": np.round(rng.uniform(10, 900, size=k), 2),
                "currency": "USD",
                "items": items,
                "coupon": coupon,
            }
        )
    trial = pd.array(_mask(rng, 0.5, k), dtype="boolean")
    return pd.DataFrame({"plan": _pick(rng, PLANS, k), "trial": trial})


def _coded(values: Sequence[object], codes: np.ndarray, missing: np.ndarray | None = None):
    """`values[codes]` as an Arrow text column (null where `missing` or the value is None),
    decoded from a dictionary: no Python string per row."""
    values = list(values)
    nulls = np.array([v is None for v in values] + [True])
    codes = np.asarray(codes, dtype=np.int32)
    mask = nulls[codes] if missing is None else nulls[codes] | missing
    dictionary = pa.array(["" if v is None else str(v) for v in values], pa.string())
    indices = pa.array(codes, mask=mask)
    decoded = pa.DictionaryArray.from_arrays(indices, dictionary).dictionary_decode()
    return pd.arrays.ArrowExtensionArray(decoded)


def _per_person(values: np.ndarray, p: np.ndarray, missing: np.ndarray | None = None):
    """Each call's value of a per-person text array (null where `missing`)."""
    return _coded(values, p, missing)


def _visits(rng, signed, user_ids, anon, start, counts, prefix):
    """Calls of each person (`counts` each), from two days before their first identify on:
    anonymous (their anonymous id only) before it, and for people who never signed up or
    did not sign in; otherwise the same (user id, anonymous id) pair as their other calls."""
    p = np.repeat(np.arange(len(counts)), counts)
    m = len(p)
    ts = start[p] + rng.uniform(-2 * 86400, SPAN_S * 0.15, size=m)
    frame = pd.DataFrame(_common(rng, ts, prefix))
    anonymous = ~signed[p] | (ts < start[p]) | _mask(rng, 0.1, m)
    frame["anonymous_id"] = _per_person(anon, p)
    frame["user_id"] = _per_person(user_ids, p, anonymous)
    return frame, p


def _name_codes(rng, kinds: int, m: int) -> tuple[np.ndarray, np.ndarray]:
    """A name code per call (`kinds` is the empty name) and where the name is null: some
    calls are sent without a name."""
    codes = rng.integers(0, kinds, size=m)
    codes[_mask(rng, 0.03, m)] = kinds
    return codes, _mask(rng, 0.08, m)


def _pages(rng, signed, user_ids, anon, start) -> pd.DataFrame:
    frame, p = _visits(rng, signed, user_ids, anon, start, rng.integers(0, 5, len(signed)), "pg-")
    m = len(p)
    names, paths, categories = (list(column) for column in zip(*PAGES, strict=True))
    kind, unnamed = _name_codes(rng, len(PAGES), m)
    page = np.where(kind == len(PAGES), rng.integers(0, len(PAGES), size=m), kind)
    searched = _mask(rng, 0.2, m)
    searches = ["", "?utm_source=ads"]
    urls = [f"https://example.com{path}{search}" for search in searches for path in paths]
    url = page + len(PAGES) * searched
    titles = [f"{name} | Example" for name in names]
    frame["name"] = _coded([*names, ""], kind, unnamed)
    frame["path"] = _coded(paths, page)
    frame["url"] = _coded(urls, url)
    frame["title"] = _coded(titles, page)
    frame["referrer"] = _coded(REFERRERS, rng.integers(0, len(REFERRERS), size=m))
    frame["search"] = _coded(searches, searched)
    frame["category"] = _coded(categories, page)
    frame["context_library_name"] = _coded([LIBRARIES["web"]], np.zeros(m))
    frame["context_page_path"] = _coded(paths, page)
    frame["context_page_url"] = _coded(urls, url)
    frame["context_page_title"] = _coded(titles, page)
    frame["context_user_agent"] = _coded(USER_AGENTS, rng.integers(0, len(USER_AGENTS), size=m))
    frame["context_ip"] = _coded([f"10.0.{i}" for i in range(250)], p % 250)
    return _with_duplicates(rng, frame, 0.01)


def _screens(rng, signed, user_ids, anon, start, platform) -> pd.DataFrame:
    mobile = platform != "web"
    counts = rng.integers(0, 4, len(signed)) * mobile
    frame, p = _visits(rng, signed, user_ids, anon, start, counts, "scr-")
    m = len(p)
    kind, unnamed = _name_codes(rng, len(SCREENS), m)
    frame["name"] = _coded([*SCREENS, ""], kind, unnamed)
    load_ms = pd.array(rng.integers(40, 3000, size=m), dtype="Int64")
    load_ms[_mask(rng, 0.2, m)] = pd.NA
    frame["load_ms"] = load_ms
    platforms = ["ios", "android"]
    device = (platform[p] == "android").astype(np.int32)
    frame["context_library_name"] = _coded([LIBRARIES[k] for k in platforms], device)
    frame["context_device_type"] = _coded(platforms, device)
    frame["context_app_version"] = _coded(["3.0.1", "3.1.0"], rng.integers(0, 2, size=m))
    return _with_duplicates(rng, frame, 0.01)


def _groups(rng, signed, user_ids, anon, start) -> pd.DataFrame:
    """Group calls: people of one company share its group; some belong to a second one;
    each call sends some traits, the plan and head count change over time."""
    n = len(signed)
    companies = max(1, n // 8)
    member = np.flatnonzero(signed & _mask(rng, 0.6, n))
    company = member % companies
    second = _mask(rng, 0.1, len(member))  # a member of two groups
    person = np.r_[member, member[second]]
    other = (company[second] + 1 + rng.integers(0, 5, int(second.sum()))) % companies
    group = np.r_[company, other]
    calls = rng.integers(1, 4, size=len(person))
    k = np.repeat(np.arange(len(person)), calls)
    j = _ranks(calls)
    p, g = person[k], group[k]
    m = len(k)
    ts = start[p] + j * rng.uniform(3600, 5 * 86400, size=m)
    frame = pd.DataFrame(_common(rng, ts, "gcl-"))
    before_signup = (j == 0) & _mask(rng, 0.1, m)
    frame["anonymous_id"] = _per_person(anon, p)
    frame["user_id"] = _per_person(user_ids, p, before_signup)
    group_ids = [f"grp-{c}" for c in range(companies)] + [""]
    if m >= 50:  # a few calls Connect cannot take: no group id
        g_coded = g.copy()
        g_coded[1] = companies  # an empty group id
        frame["group_id"] = _coded(group_ids, g_coded, np.arange(m) == 0)
    else:
        frame["group_id"] = _coded(group_ids, g)
    sent = lambda share: (j == calls[k] - 1) | _mask(rng, share, m)  # noqa: E731
    frame["name"] = _coded([f"Company {c}" for c in range(companies)], g, ~sent(0.6))
    frame["industry"] = _coded(INDUSTRIES, g % len(INDUSTRIES), ~sent(0.4))
    employees = pd.array(10 + (g * 37) % 900 + j * rng.integers(1, 40, size=m), dtype="Int64")
    employees[~sent(0.5)] = pd.NA
    frame["employees"] = employees
    frame["plan"] = _coded(PLANS, np.minimum(j + g % 2, len(PLANS) - 1), ~sent(0.7))
    frame["context_library_name"] = _coded([LIBRARIES["web"]], np.zeros(m))
    frame["context_ip"] = _coded([f"10.0.{i}" for i in range(250)], p % 250)
    return _with_duplicates(rng, frame, 0.01)


def _with_duplicates(rng: np.random.Generator, frame: pd.DataFrame, share: float) -> pd.DataFrame:
    """Re-deliver a share of rows with the same message id, loaded later (as warehouses see)."""
    dupes = frame[_mask(rng, share, len(frame))].copy()
    dupes["uuid_ts"] = dupes["uuid_ts"] + pd.Timedelta(hours=1)
    return pd.concat([frame, dupes], ignore_index=True)


def build_demo_warehouse(
    path: Path, users: int, seed: int = 7, schema: str = "segment"
) -> DemoCounts:
    """Write the demo tables into a fresh DuckDB file at `path` (replacing any old one)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    for stale in (path, path.with_suffix(path.suffix + ".wal")):
        stale.unlink(missing_ok=True)
    frames = build_frames(users, seed)
    con = duckdb.connect(str(path))
    try:
        con.execute(f'CREATE SCHEMA IF NOT EXISTS "{schema}"')
        for table, frame in frames.items():
            con.register("frame", frame)
            con.execute(f'CREATE TABLE "{schema}"."{table}" AS SELECT * FROM frame')
            con.unregister("frame")
    finally:
        con.close()
    counts = DemoCounts(
        users=users,
        identifies=len(frames["identifies"]),
        aliases=len(frames["aliases"]),
        tracks=len(frames["tracks"]),
        **{table: len(frames[table]) for table in CALL_TABLES},
    )
    log.info("demo warehouse %s: %s", path, counts)
    return counts
