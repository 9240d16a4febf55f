"""Email, phone and timezone cleaning: vectorized, each distinct value parsed once."""

from __future__ import annotations

from functools import cache
from zoneinfo import available_timezones

import pandas as pd
import phonenumbers

EMAIL_PATTERN = r"^[^@\s]+@[^@\s]+\.[^@\s.]+$"


@cache
def iana_timezones() -> frozenset[str]:
    return frozenset(available_timezones())


def clean_text(series: pd.Series) -> pd.Series:
    """Trimmed strings, with empty ones as null."""
    text = series.astype("string").str.strip()
    return text.mask(text == "")


def valid_email(series: pd.Series) -> pd.Series:
    return series.str.match(EMAIL_PATTERN).fillna(False).astype(bool)


def normalize_phones(series: pd.Series, default_region: str | None) -> tuple[pd.Series, pd.Series]:
    """E.164 where a number parses, else the trimmed original; and which ones did not parse."""
    text = clean_text(series)
    distinct = text.dropna().unique()
    parsed = {value: _e164(value, default_region) for value in distinct}
    e164 = text.map(parsed)
    return e164.fillna(text), text.notna() & e164.isna()


def _e164(value: str, region: str | None) -> str | None:
    try:
        number = phonenumbers.parse(value, region)
    except phonenumbers.NumberParseException:
        return None
    if not phonenumbers.is_valid_number(number):
        return None
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def valid_timezone(series: pd.Series) -> pd.Series:
    return series.isin(iana_timezones()).fillna(False).astype(bool)
