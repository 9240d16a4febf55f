"""The compiled text loops give what the Arrow kernels they replace give."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.compute as pc
from connect_sync.transforms.digits import ascii_digits
from hypothesis import given, settings
from hypothesis import strategies as st


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.one_of(st.none(), st.text(alphabet=st.characters(codec="utf-8"), max_size=12)),
        max_size=30,
    ),
    st.integers(min_value=0, max_value=5),
)
def test_ascii_digits_is_the_regex_replace(values, skip):
    """Any text, nulls and a sliced array (an offset into the buffers) included."""
    text = pa.array(values, pa.string()).slice(min(skip, len(values)))
    expected = pc.replace_substring_regex(text, r"[^0-9]", "")
    assert ascii_digits(text).equals(expected)


def test_ascii_digits_keeps_only_ascii_digits():
    text = pa.array(["+1 (201) 555-0100", "٣٤", "é9🎉8", "", None])
    assert ascii_digits(text).to_pylist() == ["12015550100", "", "98", "", None]
