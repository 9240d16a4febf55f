"""Email, phone and timezone cleaning; the column-wise phone path against `phonenumbers`."""

from __future__ import annotations

import random
import re

import phonenumbers
import pyarrow as pa
import pytest
from connect_sync.transforms.contact import (
    EMAIL_PATTERN,
    WHITESPACE,
    _FastPath,
    e164_number,
    e164_numbers,
    normalize_phones,
    trimmed,
    valid_emails,
    valid_timezones,
)
from hypothesis import given, settings
from hypothesis import strategies as st
from phonenumbers import PhoneNumberFormat, PhoneNumberType

REGIONS = [None, "US", "GB", "DE", "IT", "BR", "IN", "AR", "JP"]
TYPES = [PhoneNumberType.FIXED_LINE, PhoneNumberType.MOBILE, PhoneNumberType.TOLL_FREE]
FORMATS = [PhoneNumberFormat.E164, PhoneNumberFormat.INTERNATIONAL]


def library(values: list[str], region: str | None) -> list[str | None]:
    return [e164_number(v, region) for v in values]


def example_numbers() -> list[str]:
    """Every region's example numbers, in two international forms, and near misses."""
    rng = random.Random(4)
    out = []
    for region in sorted(phonenumbers.SUPPORTED_REGIONS):
        for kind in TYPES:
            number = phonenumbers.example_number_for_type(region, kind)
            if number is None:
                continue
            for form in FORMATS:
                text = phonenumbers.format_number(number, form)
                digits = [i for i, c in enumerate(text) if c.isdigit()]
                at = rng.choice(digits[2:])
                out += [text, text[:-1], text + "7", text[:at] + str((int(text[at]) + 3) % 10)]
    return sorted(set(out))


@pytest.fixture(scope="module")
def examples() -> list[str]:
    return example_numbers()


def test_fast_path_equals_the_library_on_every_regions_examples(examples):
    assert library(examples, None) == e164_numbers(pa.array(examples), None).to_pylist()


def test_fast_path_decides_most_international_numbers(examples):
    undecided = _FastPath(pa.array(examples), None).undecided
    assert undecided.mean() < 0.25  # what is left is national prefixes and odd codes


@pytest.mark.parametrize("region", [r for r in REGIONS if r])
def test_fast_path_equals_the_library_for_national_numbers(region):
    rng = random.Random(region)
    values = []
    for kind in (*TYPES, PhoneNumberType.PREMIUM_RATE, PhoneNumberType.VOIP):
        number = phonenumbers.example_number_for_type(region, kind)
        if number is not None:
            national = phonenumbers.format_number(number, PhoneNumberFormat.NATIONAL)
            values += [national, national.replace(" ", ""), national[:-1], national + "1"]
    for _ in range(150):
        length = rng.randint(4, 13)
        values.append("".join(rng.choice("0123456789") for _ in range(length)))
        values.append("(" + values[-1][:3] + ") " + values[-1][3:])
    values += ["011 44 20 7946 0018", "0044 20 7946 0018", "1 415 555 0132", "55555"]
    assert library(values, region) == e164_numbers(pa.array(values), region).to_pylist()


@settings(max_examples=150, deadline=None)
@given(
    st.lists(st.text("+0123456789 ()-.", min_size=1, max_size=22), min_size=1, max_size=8),
    st.sampled_from(REGIONS),
)
def test_fast_path_equals_the_library_on_any_text(values, region):
    assert library(values, region) == e164_numbers(pa.array(values), region).to_pylist()


def test_normalize_phones_keeps_unparsed_originals():
    text = trimmed(pa.array(["+1 415 555 0132", " 55555 ", None, "call me"]))
    phones, unparsed = normalize_phones(text, "US")
    assert phones.to_pylist() == ["+14155550132", "55555", None, "call me"]
    assert unparsed.tolist() == [False, True, False, True]


def test_trimmed_uses_python_whitespace():
    values = [f"{WHITESPACE}x y{WHITESPACE}", WHITESPACE, "", None, "\u200bz"]
    assert trimmed(pa.array(values)).to_pylist() == [
        v.strip() or None if v else None for v in values
    ]


@pytest.mark.parametrize(
    ("email", "ok"),
    [
        ("ada@example.com", True),
        ("ada.lovelace+tag@mail.example.co.uk", True),
        ("ünïcødé@exämple.de", True),
        ("ada@example", False),
        ("ada@@example.com", False),
        ("ada example@example.com", False),
        ("ada@example.com.", False),
        ("@example.com", False),
        ("ada@exa\u3000mple.com", False),
    ],
)
def test_email_pattern(email, ok):
    assert valid_emails(pa.array([email])).tolist() == [ok]
    assert bool(re.match(EMAIL_PATTERN, email)) is ok  # the same pattern in Python


def test_valid_timezones_are_iana_names():
    values = ["Europe/Berlin", "UTC", "europe/berlin", "EST5", "Mars/Olympus", None]
    assert valid_timezones(pa.array(values)).tolist() == [True, True, False, False, False, False]
