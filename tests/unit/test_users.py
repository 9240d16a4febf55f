"""Identify payloads: one test per rule of mapping.md's Users section."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import numpy as np
import orjson
import pandas as pd
import pyarrow as pa
import pytest
from connect_sync.transforms import contact
from connect_sync.transforms.traits import device_tokens, latest_traits
from connect_sync.transforms.users import identify_fields, identify_payloads, split_names, tokens_of

T0 = datetime(2024, 5, 1, 12, 0, 0, tzinfo=UTC)
_ids = iter(range(10**9))


def row(user: str = "u1", minutes: float = 0, **traits: Any) -> dict[str, Any]:
    """One identify row of `user` (its canonical id) at T0 + minutes."""
    ts = T0 + timedelta(minutes=minutes)
    return {
        "id": f"m{next(_ids):06d}",
        "anonymous_id": None,
        "user_id": user,
        "canonical_id": user,
        "received_at": ts,
        "timestamp": ts,
        "uuid_ts": ts,
        **traits,
    }


def frame(rows: list[dict[str, Any]], schema: dict[str, pa.DataType] | None = None):
    """Rows as the warehouse reader returns them: Arrow dtypes."""
    keys = list(dict.fromkeys(k for r in rows for k in r))
    columns = {k: [r.get(k) for r in rows] for k in keys}
    arrays = {k: pa.array(v, (schema or {}).get(k)) for k, v in columns.items()}
    return pa.table(arrays).to_pandas(types_mapper=pd.ArrowDtype)


def decoded(payloads: list[bytes]) -> list[dict[str, Any]]:
    """The payloads (JSON bytes) as dicts."""
    assert all(isinstance(p, bytes) for p in payloads)
    return [orjson.loads(p) for p in payloads]


def payloads(rows, region: str | None = None, schema=None) -> tuple[list[dict], Counter]:
    identifies = frame(rows, schema)
    built = identify_payloads(latest_traits(identifies), device_tokens(identifies), region)
    return decoded(built.payloads), built.quality


def payload(rows, region: str | None = None, schema=None) -> dict[str, Any]:
    out, _ = payloads(rows, region, schema)
    assert len(out) == 1
    return out[0]


# -- the worked example -------------------------------------------------------------------


def test_worked_example_segment_fixture():
    user = "1e03bd84-5a37-4f2b-9a38-4a41e6f1c2a1"
    rows = [
        row(
            user,
            first_name="Ashley",
            last_name="Boshweizen",
            name="Ashley Boshweizen",
            email="ashley.boshweizen@yahoo.com",
            member_id="8331191919004518291",
            app_details="490 (3.0.1.490)",
            user_name="Knottie07799953",
            wedding_date="2/14/2016",
            country="United States",
            context_timezone="America/Detroit",
            context_device_type="ios",
            context_device_token="ff15bc",
            context_library_name="analytics-ios",
        )
    ]
    assert payload(rows) == {
        "user_id": user,
        "first_name": "Ashley",
        "last_name": "Boshweizen",
        "email": "ashley.boshweizen@yahoo.com",
        "timezone": "America/Detroit",
        "apns": ["ff15bc"],
        "attributes": {
            "member_id": "8331191919004518291",
            "name": "Ashley Boshweizen",
            "app_details": "490 (3.0.1.490)",
            "user_name": "Knottie07799953",
            "wedding_date": "2/14/2016",
            "country": "United States",
        },
    }


# -- user id ------------------------------------------------------------------------------


def test_user_id_is_always_a_string():
    out = payload([row("12345", plan="pro")])
    assert out["user_id"] == "12345"
    assert isinstance(out["user_id"], str)


def test_anonymous_user_is_created_under_the_anonymous_id():
    rows = [row("anon-7f3e", name="Sam", context_device_type="android", context_device_token="t")]
    rows[0]["user_id"] = None
    rows[0]["anonymous_id"] = "anon-7f3e"
    out = payload(rows)
    assert out["user_id"] == "anon-7f3e"
    assert out["first_name"] == "Sam"
    assert out["fcm"] == ["t"]
    assert "email" not in out  # an anonymous id is no address


def test_one_payload_per_user_in_user_id_order():
    out, _ = payloads([row("b", plan="x"), row("a", plan="y"), row("b", 1, plan="z")])
    assert [p["user_id"] for p in out] == ["a", "b"]
    assert out[1]["attributes"] == {"plan": "z"}


# -- names --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "first", "last"),
    [
        ("John Doe", "John", "Doe"),  # Segment's own case
        ("Mary Ann Smith", "Mary", "Ann Smith"),
        ("Cher", "Cher", None),
        ("  John   Doe  ", "John", "Doe"),  # leading spaces, a run of whitespace
        ("\tJohn\u3000Doe", "John", "Doe"),  # tabs and ideographic space are whitespace
        ("José Müller-Lüdenscheidt", "José", "Müller-Lüdenscheidt"),
        ("山田 太郎", "山田", "太郎"),
        ("🎉 Party Person", "🎉", "Party Person"),
        ("Zoë 👩‍💻", "Zoë", "👩‍💻"),
        ("   ", None, None),
    ],
)
def test_name_is_split_at_the_first_whitespace(name, first, last):
    out = payload([row(name=name)])
    assert out.get("first_name") == first
    assert out.get("last_name") == last
    if name.strip():
        assert out["attributes"]["name"] == name  # `name` itself stays, as it was sent


def test_explicit_name_traits_win_and_are_trimmed():
    out = payload([row(first_name="  Jonathan ", last_name=" Smythe", name="John Smith")])
    assert (out["first_name"], out["last_name"]) == ("Jonathan", "Smythe")
    assert out["attributes"] == {"name": "John Smith"}
    assert "first_name" not in out["attributes"] and "last_name" not in out["attributes"]


def test_each_name_field_falls_back_to_name_on_its_own():
    out = payload([row(first_name="Jon", name="John Smith")])
    assert (out["first_name"], out["last_name"]) == ("Jon", "Smith")


def test_split_names_frame():
    names = split_names(latest_traits(frame([row("a", name="Ada Lovelace"), row("b")])))
    assert names.loc["a"].tolist() == ["Ada", "Lovelace"]
    assert names.loc["b"].isna().all()


# -- email --------------------------------------------------------------------------------


def test_email_is_trimmed():
    assert payload([row(email="  ada@example.com\n")])["email"] == "ada@example.com"


def test_user_id_is_the_email_when_absent_and_an_address():
    assert payload([row("ada@example.com", plan="x")])["email"] == "ada@example.com"
    assert "email" not in payload([row("ada", plan="x")])


def test_invalid_email_is_left_out_and_counted():
    out, quality = payloads([row("a", email="not-an-email"), row("b", email="b@x"), row("c")])
    assert all("email" not in p for p in out)
    assert quality["invalid_email"] == 2
    assert all("email" not in p.get("attributes", {}) for p in out)


def test_invalid_email_trait_does_not_fall_back_to_the_user_id():
    out, quality = payloads([row("ada@example.com", email="nope")])
    assert "email" not in out[0]
    assert quality["invalid_email"] == 1


# -- phone --------------------------------------------------------------------------------


def test_phone_is_normalized_to_e164():
    assert payload([row(phone="+1 (415) 555-0132")])["phone_number"] == "+14155550132"


def test_phone_default_region_applies_to_national_numbers():
    assert payload([row(phone="(415) 555-0132")], region="US")["phone_number"] == "+14155550132"
    assert payload([row(phone="020 7946 0018")], region="GB")["phone_number"] == "+442079460018"


def test_unparsed_phone_is_sent_as_the_trimmed_original_and_counted():
    out, quality = payloads([row("a", phone=" 55555 "), row("b", phone="(415) 555-0132")])
    assert out[0]["phone_number"] == "55555"  # Segment's own case: passed through
    assert out[1]["phone_number"] == "(415) 555-0132"  # national, no default region
    assert quality["unparsed_phone"] == 2
    assert "phone" not in out[0]["attributes"] if "attributes" in out[0] else True


def test_each_distinct_phone_is_parsed_once(monkeypatch):
    seen: list[int] = []
    original = contact.e164_numbers

    def counting(numbers, region):
        seen.append(len(numbers))
        return original(numbers, region)

    monkeypatch.setattr(contact, "e164_numbers", counting)
    rows = [
        row(f"u{i}", phone=["+14155550132", " +14155550132", "55555"][i % 3]) for i in range(30)
    ]
    out, quality = payloads(rows)
    assert seen == [2]  # two distinct trimmed values
    assert quality["unparsed_phone"] == 10
    assert Counter(p["phone_number"] for p in out) == {"+14155550132": 20, "55555": 10}


# -- timezone -----------------------------------------------------------------------------


def test_timezone_from_context_first_and_trait_dropped():
    out = payload([row(context_timezone="America/Detroit", timezone="Europe/Berlin", plan="x")])
    assert out["timezone"] == "America/Detroit"
    assert out["attributes"] == {"plan": "x"}


def test_timezone_from_the_trait_without_context():
    out = payload([row(timezone="Europe/Berlin", plan="x")])
    assert out["timezone"] == "Europe/Berlin"
    # Deliberate: a trait that became the `timezone` field is not sent again as an attribute.
    assert out["attributes"] == {"plan": "x"}


def test_only_iana_names_and_the_others_are_counted():
    rows = [
        row("a", context_timezone="EST5", timezone="Europe/Berlin"),  # trait still valid
        row("b", timezone="Mars/Olympus"),
        row("c", context_timezone="america/detroit"),  # names are case-sensitive
        row("d", context_timezone="Asia/Tokyo", timezone="nonsense"),  # trait not needed
    ]
    out, quality = payloads(rows)
    by_user = {p["user_id"]: p for p in out}
    assert by_user["a"]["timezone"] == "Europe/Berlin"
    assert "timezone" not in by_user["b"] and "timezone" not in by_user["c"]
    assert by_user["b"]["attributes"] == {"timezone": "Mars/Olympus"}  # not used: an attribute
    assert by_user["d"]["timezone"] == "Asia/Tokyo"
    assert "attributes" not in by_user["d"]
    assert quality["invalid_timezone"] == 3


# -- device tokens ------------------------------------------------------------------------


def test_ios_and_android_tokens_with_any_case_or_inferred_type():
    rows = [
        row("a", 0, context_device_type="iOS", context_device_token="ios-1"),
        row("a", 1, context_device_type="ios", context_device_token="ios-2"),
        row("a", 2, context_device_type="Android", context_device_token="droid-1"),
        row(
            "a",
            3,
            context_device_type=None,
            context_library_name="analytics-ios",
            context_device_token="ios-3",
        ),
        row(
            "a",
            4,
            context_device_type=None,
            context_library_name="analytics-android",
            context_device_token="droid-2",
        ),
    ]
    out = payload(rows)
    assert out["apns"] == ["ios-3", "ios-2", "ios-1"]  # newest first
    assert out["fcm"] == ["droid-2", "droid-1"]


def test_every_distinct_token_once_newest_first():
    rows = [
        row("a", 0, context_device_type="ios", context_device_token="t1"),
        row("a", 1, context_device_type="ios", context_device_token="t2"),
        row("a", 2, context_device_type="ios", context_device_token=" t1 "),
        row("a", 3, context_device_type="ios", context_device_token="  "),
    ]
    assert payload(rows)["apns"] == ["t1", "t2"]


def test_other_device_types_and_libraries_give_no_tokens():
    rows = [
        row("a", 0, context_device_type="web", context_library_name="analytics-ios",
            context_device_token="t1"),
        row("a", 1, context_library_name="analytics.js", context_device_token="t2"),
        row("a", 2, plan="x"),
    ]  # fmt: skip
    out = payload(rows)
    assert "apns" not in out and "fcm" not in out


# -- attributes ---------------------------------------------------------------------------


def test_segment_and_context_columns_are_not_attributes():
    rows = [
        row(
            previous_id="p",
            sent_at=T0,
            original_timestamp=T0,
            uuid="x",
            loaded_at=T0,
            event="e",
            event_text="E",
            context_ip="10.0.0.1",
            context_library_version="4.0",
            plan="pro",
        )
    ]
    assert payload(rows)["attributes"] == {"plan": "pro"}


def test_traits_named_like_segment_columns_are_attributes():
    rows = [
        row(
            user_name="ada",
            ids="1,2",
            event_count=3,
            timestamp_local="noon",
            received=True,
            contextual="yes",
            identity="x",
        )
    ]
    assert payload(rows)["attributes"] == {
        "user_name": "ada",
        "ids": "1,2",
        "event_count": 3,
        "timestamp_local": "noon",
        "received": True,
        "contextual": "yes",
        "identity": "x",
    }


def test_identify_field_traits_are_not_attributes():
    rows = [row(first_name="A", last_name="B", email="a@b.co", phone="+14155550132", plan="x")]
    assert payload(rows)["attributes"] == {"plan": "x"}


def test_values_keep_their_type():
    schema = {"logins": pa.int64(), "vip": pa.bool_(), "score": pa.float64()}
    rows = [
        row("a", 0, logins=3, vip=True, score=1.5),
        row("b", 0, logins=None, vip=False, score=None),
        row("c", 0, logins=2**62, vip=None, score=2.0),
    ]
    out, _ = payloads(rows, schema=schema)
    attrs = [p.get("attributes", {}) for p in out]
    assert attrs == [
        {"logins": 3, "vip": True, "score": 1.5},
        {"vip": False},
        {"logins": 2**62, "score": 2.0},
    ]
    assert type(attrs[0]["logins"]) is int and type(attrs[2]["logins"]) is int
    assert type(attrs[0]["vip"]) is bool and type(attrs[2]["score"]) is float


def test_timestamps_become_iso_utc_strings():
    from zoneinfo import ZoneInfo

    rows = [
        row("a", created_at=datetime(2024, 5, 1, 12, 0, 0, 987654, tzinfo=UTC)),
        row("b", created_at=datetime(2024, 5, 1, 8, 0, 0, tzinfo=ZoneInfo("America/Detroit"))),
        row("c", created_at=datetime(1969, 12, 31, 23, 59, 59, 500000, tzinfo=UTC)),
    ]
    out, _ = payloads(rows)
    assert [p["attributes"]["created_at"] for p in out] == [
        "2024-05-01T12:00:00Z",
        "2024-05-01T12:00:00Z",
        "1969-12-31T23:59:59Z",
    ]


def test_naive_timestamps_are_taken_as_utc():
    naive = {"created_at": pa.timestamp("us")}
    out = payload([row(created_at=datetime(2024, 5, 1, 12, 0))], schema=naive)
    assert out["attributes"]["created_at"] == "2024-05-01T12:00:00Z"


def test_null_nan_and_empty_values_are_left_out():
    rows = [row(plan="", score=float("nan"), ratio=float("inf"), note=None, city="Berlin")]
    out = payload(rows, schema={"score": pa.float64(), "ratio": pa.float64(), "note": pa.string()})
    assert out["attributes"] == {"city": "Berlin"}


def test_decimals_become_numbers():
    schema = {"amount": pa.decimal128(10, 2), "count": pa.decimal128(12, 0)}
    out = payload([row(amount=Decimal("12.50"), count=Decimal(7))], schema=schema)
    assert out["attributes"] == {"amount": 12.5, "count": 7}


def test_keys_are_the_warehouse_column_names():
    out = payload([row(favorite_color="blue", created_at_local="x")])
    assert set(out["attributes"]) == {"favorite_color", "created_at_local"}


# -- merged traits ------------------------------------------------------------------------


def test_all_identify_rows_merge_latest_non_null_wins():
    rows = [
        row("a", 0, plan="free", city="Paris", email="old@example.com"),
        row("a", 2, plan="pro"),  # later: wins for plan only
        row("a", 1, city="Lyon", email=None),  # null = not sent: keeps the email
    ]
    out = payload(rows)
    assert out["email"] == "old@example.com"
    assert out["attributes"] == {"plan": "pro", "city": "Lyon"}


def test_payload_leaves_out_every_empty_field():
    out = payload(
        [row("a", plan=None, name=None)], schema={"plan": pa.string(), "name": pa.string()}
    )
    assert out == {"user_id": "a"}


def test_quality_counts_use_the_report_reason_names():
    _, quality = payloads(
        [row("a", email="bad", phone="123", timezone="Nowhere"), row("b", plan="x")]
    )
    assert dict(quality) == {"invalid_email": 1, "unparsed_phone": 1, "invalid_timezone": 1}


def test_identify_fields_frame():
    identifies = frame([row("a", name="Ada Lovelace", phone="+14155550132")])
    fields, quality = identify_fields(latest_traits(identifies), device_tokens(identifies))
    assert fields.loc["a", "first_name"] == "Ada"
    assert fields.loc["a", "phone_number"] == "+14155550132"
    assert fields.loc["a", "apns"] is None
    assert not quality


def test_empty_input_gives_no_payloads():
    identifies = frame([row("a", plan="x")]).iloc[0:0]
    built = identify_payloads(latest_traits(identifies), device_tokens(identifies))
    assert built.payloads == [] and built.user_ids == []


def test_int_user_ids_from_plain_pandas_frames():
    identifies = pd.DataFrame(
        {
            "id": ["m1", "m2"],
            "canonical_id": [1, 2],
            "timestamp": pd.to_datetime([T0, T0]),
            "plan": ["a", None],
            "logins": pd.array([1, None], dtype="Int64"),
        }
    )
    built = identify_payloads(latest_traits(identifies), device_tokens(identifies))
    assert decoded(built.payloads) == [
        {"user_id": "1", "attributes": {"plan": "a", "logins": 1}},
        {"user_id": "2"},
    ]
    assert np.all([isinstance(u, str) for u in built.user_ids])


def test_chunks_with_tokens_aligned_once_give_the_same_payloads():
    """The pipeline aligns the tokens to the users once (`tokens_of`) and builds the
    payloads a chunk of users at a time; the bytes equal one build of every user."""
    rows = [
        row(f"u{i % 7}", i, name=f"N {i}", context_device_type=("ios", "android", None)[i % 3],
            context_library_name="analytics-ios", context_device_token=f"t{i % 4}")
        for i in range(40)
    ] + [row("no-token", 50, name="Kim")]  # fmt: skip
    identifies = frame(rows)
    latest, tokens = latest_traits(identifies), device_tokens(identifies)
    whole = identify_payloads(latest, tokens)
    aligned = tokens_of(tokens, latest.index)
    assert aligned.index.equals(latest.index) and aligned["apns"].isna().sum() > 0
    parts = [
        identify_payloads(latest.iloc[i : i + 3], aligned.iloc[i : i + 3])
        for i in range(0, len(latest), 3)
    ]
    assert [p for part in parts for p in part.payloads] == whole.payloads
