"""Email, phone and timezone cleaning, column-wise on Arrow arrays.

Phone numbers: libphonenumber (the `phonenumbers` package) parses one value at a time at
about 50 µs a value. Each distinct value is parsed once, and the common shapes (`+` and
digits, or digits with a default region) are decided column-wise with the library's own
metadata: country code, then its regions' validation patterns, matched by Arrow's RE2.
Anything else, or anything the metadata cannot settle without the library's parsing rules
(national prefixes, international dialling prefixes), goes to `phonenumbers` itself.
tests/unit/test_users_contact.py checks both paths agree.
"""

from __future__ import annotations

from functools import cache
from zoneinfo import available_timezones

import numpy as np
import phonenumbers
import pyarrow as pa
import pyarrow.compute as pc
from connect_sync.transforms.values import blank_as_null
from phonenumbers import PhoneMetadata
from phonenumbers.phonenumberutil import COUNTRY_CODE_TO_REGION_CODE, SUPPORTED_REGIONS

#: Python's whitespace (`str.isspace`), which is also what Arrow's utf8 trim and split use.
WHITESPACE = "".join(chr(c) for c in range(0x10000) if chr(c).isspace())  # all in the BMP
#: WHITESPACE as the inside of a regex character class (for both RE2 and `re`).
WHITESPACE_CLASS = "".join(f"\\x{ord(c):02x}" if ord(c) < 0x80 else c for c in WHITESPACE)
_WS = WHITESPACE_CLASS
#: One `@`, no whitespace, a dot in the domain, a dotless top-level part (RE2 and `re`).
EMAIL_PATTERN = rf"^[^@{_WS}]+@[^@{_WS}]+\.[^@.{_WS}]+$"


@cache
def iana_timezones() -> frozenset[str]:
    return frozenset(available_timezones())


def trimmed(array: pa.Array) -> pa.Array:
    """Strings with surrounding whitespace removed; empty ones become null."""
    if not (pa.types.is_string(array.type) or pa.types.is_large_string(array.type)):
        array = array.cast(pa.string())
    text = pc.utf8_trim_whitespace(array)
    return blank_as_null(text)


def valid_emails(text: pa.Array) -> np.ndarray:
    """True where the (trimmed) value looks like an email address."""
    return _flags(pc.match_substring_regex(text, EMAIL_PATTERN))


def valid_timezones(text: pa.Array) -> np.ndarray:
    """True where the value is an IANA time zone name."""
    zones = pa.array(sorted(iana_timezones()), text.type)
    return _flags(pc.is_in(text, value_set=zones))


def _flags(mask: pa.Array | pa.ChunkedArray) -> np.ndarray:
    return pc.fill_null(mask, False).to_numpy(zero_copy_only=False).astype(bool, copy=False)


# -- phone numbers -----------------------------------------------------------------------------


def normalize_phones(text: pa.Array, default_region: str | None) -> tuple[pa.Array, np.ndarray]:
    """E.164 where a (trimmed) number is valid, else the trimmed original; and where not.

    Each distinct value is parsed once.
    """
    encoded = pc.dictionary_encode(text)
    distinct = encoded.dictionary
    e164 = e164_numbers(distinct, default_region)
    normalized = e164.take(encoded.indices)
    unparsed = _flags(pc.and_(text.is_valid(), normalized.is_null()))
    return pc.coalesce(normalized, text), unparsed


def e164_numbers(numbers: pa.Array, default_region: str | None) -> pa.Array:
    """E.164 of each number, or null where it does not parse to a valid number.

    Same answers as `phonenumbers.parse` + `is_valid_number` (see the module docstring).
    """
    numbers = numbers.cast(pa.string())
    region = default_region.upper() if default_region else None
    fast = _FastPath(numbers, region if region in SUPPORTED_REGIONS else None)
    result = fast.e164()
    undecided = np.flatnonzero(fast.undecided)
    if len(undecided):
        slow = [e164_number(v, default_region) for v in numbers.take(undecided).to_pylist()]
        patch = _placed([pa.array(slow, pa.string())], [undecided], len(numbers))
        result = pc.coalesce(result, patch)
    return result


def e164_number(value: str | None, region: str | None) -> str | None:
    """One number with `phonenumbers`: E.164 if it is a valid number, else None."""
    if value is None:
        return None
    try:
        number = phonenumbers.parse(value, region)
    except phonenumbers.NumberParseException:
        return None
    if not phonenumbers.is_valid_number(number):
        return None
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


_INTERNATIONAL = r"^\+[0-9][0-9 ().\-]*$"
_NATIONAL = r"^[0-9(][0-9 ().\-]*$"
#: The number types `_number_type_helper` tries. Any match makes the number valid, so the
#: order is free: the common ones first, after which few numbers are left to try.
_DESCS = (
    "fixed_line",
    "premium_rate",
    "toll_free",
    "shared_cost",
    "voip",
    "personal_number",
    "pager",
    "uan",
    "voicemail",
)
_MIN_NSN, _MAX_NSN, _MAX_INPUT = 2, 17, 250


class _FastPath:
    """Column-wise E.164 for the plain shapes; `undecided` marks what `phonenumbers` does."""

    def __init__(self, numbers: pa.Array, region: str | None) -> None:
        n = len(numbers)
        self.numbers = numbers
        self.undecided = np.ones(n, dtype=bool)
        #: (rows, country code, national numbers) settled column-wise.
        self.parts: list[tuple[np.ndarray, int, pa.Array]] = []
        if n == 0:
            return
        from connect_sync.transforms.digits import ascii_digits

        digits = ascii_digits(numbers)
        count = pc.fill_null(pc.binary_length(digits), 0).to_numpy(zero_copy_only=False)
        short = _flags(pc.less_equal(pc.utf8_length(numbers), _MAX_INPUT))
        plus = _flags(pc.match_substring_regex(numbers, _INTERNATIONAL)) & short
        plus &= (count >= 4) & (count <= 3 + _MAX_NSN)
        self._international(digits, np.flatnonzero(plus))
        national = _flags(pc.match_substring_regex(numbers, _NATIONAL)) & short
        if region is None:
            # Without a default region the library refuses any number without a `+`.
            self.undecided[national & (count >= 4)] = False
        else:
            national &= (count >= 4) & (count <= _MAX_NSN)
            self._national(digits, np.flatnonzero(national), region)

    def _international(self, digits: pa.Array, rows: np.ndarray) -> None:
        """`+` and digits: the country code is the first 1-3 digits that name one."""
        if not len(rows):
            return
        digits = digits.take(pa.array(rows))
        open_ = np.ones(len(rows), dtype=bool)
        open_ &= ~_flags(pc.starts_with(digits, "0"))  # the library refuses these
        for length in (1, 2, 3):
            prefix = pc.utf8_slice_codeunits(digits, 0, length)
            codes = pc.cast(prefix, pa.int64()).to_numpy(zero_copy_only=False)
            hit = np.flatnonzero(open_ & np.isin(codes, _country_codes()))
            if len(hit):
                open_[hit] = False
                nsn = pc.utf8_slice_codeunits(digits.take(pa.array(hit)), length)
                self._settle(rows[hit], codes[hit], nsn, check_prefix=True)

    def _national(self, digits: pa.Array, rows: np.ndarray, region: str) -> None:
        """Digits in the default region's national form, when no prefix rule applies: not
        starting with the international dialling prefix, the country code or the national
        prefix."""
        if not len(rows):
            return
        metadata = PhoneMetadata.metadata_for_region(region)
        digits = digits.take(pa.array(rows))
        plain = ~_flags(pc.starts_with(digits, str(metadata.country_code)))
        for pattern in (metadata.international_prefix, metadata.national_prefix_for_parsing):
            if pattern:
                plain &= ~_flags(pc.match_substring_regex(digits, f"^(?:{pattern})"))
        keep = np.flatnonzero(plain)
        codes = np.full(len(keep), metadata.country_code, dtype=np.int64)
        self._settle(rows[keep], codes, digits.take(pa.array(keep)), check_prefix=False)

    def _settle(self, rows: np.ndarray, codes: np.ndarray, nsn: pa.Array, check_prefix: bool):
        """Keep country code and national number, unless the code is non-geographic or
        the main region's national prefix could apply (the library strips it by rules of
        its own)."""
        for code in np.unique(codes):
            at = np.flatnonzero(codes == code)
            regions = COUNTRY_CODE_TO_REGION_CODE.get(int(code), ())
            if not regions or regions[0] == "001":
                continue
            part = nsn.take(pa.array(at))
            if check_prefix:
                prefix = PhoneMetadata.metadata_for_region(regions[0]).national_prefix_for_parsing
                if prefix:
                    plain = ~_flags(pc.match_substring_regex(part, f"^(?:{prefix})"))
                    at, part = at[plain], part.filter(pa.array(plain))
            self.undecided[rows[at]] = False
            self.parts.append((rows[at], int(code), part))

    def e164(self) -> pa.Array:
        """E.164 where settled and valid; null elsewhere (undecided rows included)."""
        texts, rows_of = [], []
        for rows, code, nsn in self.parts:
            length = pc.binary_length(nsn).to_numpy(zero_copy_only=False)
            fits = np.flatnonzero((length >= _MIN_NSN) & (length <= _MAX_NSN))
            if not len(fits):
                continue
            nsn = nsn.take(pa.array(fits))
            valid = _valid_numbers(code, nsn)
            texts.append(pc.binary_join_element_wise(f"+{code}", nsn.filter(pa.array(valid)), ""))
            rows_of.append(rows[fits[valid]])
        return _placed(texts, rows_of, len(self.numbers))


def _placed(texts: list[pa.Array], rows: list[np.ndarray], n: int) -> pa.Array:
    """A text column of n values: each of `texts` at its `rows`, null elsewhere."""
    if not texts:
        return pa.nulls(n, pa.string())
    where = np.full(n, -1, dtype=np.int64)
    where[np.concatenate(rows)] = np.arange(sum(len(t) for t in texts))
    return pa.concat_arrays(texts).take(pa.array(where, mask=where < 0))


@cache
def _country_codes() -> np.ndarray:
    return np.array(sorted(COUNTRY_CODE_TO_REGION_CODE), dtype=np.int64)


def _valid_numbers(code: int, nsn: pa.Array) -> np.ndarray:
    """`is_valid_number` for national numbers of one country code, column-wise: the region
    is the first one whose leading digits match, or (without leading digits) whose
    patterns know the number; valid when the region's patterns know its type."""
    regions = COUNTRY_CODE_TO_REGION_CODE[code]
    if len(regions) == 1:
        return _known_type(nsn, PhoneMetadata.metadata_for_region(regions[0]))
    metadata = [PhoneMetadata.metadata_for_region(r) for r in regions]
    leading = [m.leading_digits for m in metadata if m is not None and m.leading_digits is not None]
    # Only numbers matching some region's leading digits can go to such a region.
    maybe_leading = (
        _flags(pc.match_substring_regex(nsn, "^(?:" + "|".join(f"(?:{p})" for p in leading) + ")"))
        if leading
        else np.zeros(len(nsn), dtype=bool)
    )
    valid = np.zeros(len(nsn), dtype=bool)
    open_ = np.ones(len(nsn), dtype=bool)
    for region in metadata:
        if region is None:
            continue
        if region.leading_digits is not None:
            at = np.flatnonzero(open_ & maybe_leading)
            if not len(at):
                continue
            part = nsn.take(pa.array(at))
            chosen = at[_flags(pc.match_substring_regex(part, f"^(?:{region.leading_digits})"))]
            valid[chosen] = _known_type(nsn.take(pa.array(chosen)), region)
        else:
            at = np.flatnonzero(open_)
            if not len(at):
                break
            chosen = at[_known_type(nsn.take(pa.array(at)), region)]
            valid[chosen] = True
        open_[chosen] = False
    return valid


def _known_type(nsn: pa.Array, metadata: PhoneMetadata | None) -> np.ndarray:
    """`_number_type_helper(...) != UNKNOWN` column-wise."""
    known = np.zeros(len(nsn), dtype=bool)
    if metadata is None or not len(nsn):
        return known
    general = _matches(nsn, metadata.general_desc)
    descs = [getattr(metadata, name) for name in _DESCS]
    if not metadata.same_mobile_and_fixed_line_pattern:
        descs.insert(1, metadata.mobile)
    open_ = np.flatnonzero(general)
    for desc in descs:
        if not len(open_):
            break
        hit = _matches(nsn.take(pa.array(open_)), desc)
        known[open_[hit]] = True
        open_ = open_[~hit]
    return known


def _matches(nsn: pa.Array, desc) -> np.ndarray:
    """`_is_number_matching_desc`: a possible length and a full match of the pattern."""
    if desc is None or not desc.national_number_pattern:
        return np.zeros(len(nsn), dtype=bool)
    ok = _flags(pc.match_substring_regex(nsn, f"^(?:{desc.national_number_pattern})$"))
    if len(desc.possible_length):
        length = pc.binary_length(nsn).to_numpy(zero_copy_only=False)
        ok &= np.isin(length, np.array(desc.possible_length))
    return ok
