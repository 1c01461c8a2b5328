"""``Codes``: a column's distinct values and each row's position among them."""

from __future__ import annotations

import pyarrow as pa
import pytest
from hypothesis import given
from hypothesis import strategies as st

from lakecore.entities._codes import Codes

_values = st.lists(st.none() | st.sampled_from(["a", "b", "", "ab", "ba", "cat"]), max_size=40)


@given(chunks=st.lists(_values, min_size=1, max_size=3), skip=st.integers(0, 3))
def test_codes_give_back_every_row(chunks, skip):
    col = pa.chunked_array([pa.array(c, pa.string()) for c in chunks], pa.string())
    if skip:  # one chunk that is a slice: its buffers start before its first value
        col = pa.chunked_array([col.combine_chunks().slice(skip)], pa.string())
    codes = Codes.of(col)
    rows = col.to_pylist()
    values = codes.values.to_pylist()
    assert len(set(values)) == len(values)
    assert len(codes.index) == len(rows)
    for row, position in zip(rows, codes.index.tolist(), strict=True):
        assert (values[position] if position >= 0 else None) == row


@given(n=st.integers(0, 50), null=st.booleans())
def test_an_absent_column_has_no_values_and_every_row_is_null(n, null):
    col = pa.array([None] * n, pa.string())
    codes = Codes.of(col)
    assert len(codes.values) == 0
    assert codes.rows(pa.array([], pa.bool_()), null=null).tolist() == [null] * n


@given(
    value=st.sampled_from(["", "a", "ab", "human"]),
    n=st.integers(1, 30),
    other=st.sampled_from(["", "b", "ba", "abab"]),
    where=st.sampled_from(["before", "after", "inside"]),
)
def test_one_repeated_value_and_a_different_one(value, n, other, where):
    col = pa.array([other] + [value] * n + [other], pa.string())
    if where == "before":
        col = col.slice(1, n + 1)  # the value n times, then the other
    elif where == "after":
        col = col.slice(0, n + 1)  # the other, then the value n times
    else:
        col = col.slice(1, n)  # the value n times, nothing else
    codes = Codes.of(col)
    rows = col.to_pylist()
    assert sorted(codes.values.to_pylist()) == sorted(set(rows))
    assert [codes.values[i].as_py() for i in codes.index.tolist()] == rows


@pytest.mark.parametrize(
    ("col", "one"),
    [
        (pa.array(["ab"] * 1000, pa.string()), True),
        (pa.array(["ab", "ba"] + ["ab"] * 998, pa.string()), False),  # between two probes
        (pa.array(["ab", "abab"] + ["ab"] * 998, pa.string()), False),  # another length
        (pa.array(["x", "ab", "ba"] + ["ab"] * 998, pa.string()).slice(1), False),
        (pa.array(["x"] + ["ab"] * 1000, pa.string()).slice(1), True),
        (pa.array([b"ab", b"ba"] + [b"ab"] * 998, pa.binary()), False),
        (pa.array(["ab", "ba"] + ["ab"] * 998, pa.large_string()), False),  # compared by Arrow
        (pa.array(["ab"] * 1000, pa.large_string()), True),
        (pa.array([1, 2] + [1] * 998, pa.int32()), False),
    ],
)
def test_one_value_is_found_only_when_every_row_has_it(col, one):
    codes = Codes.of(col)
    assert (len(codes.values) == 1) is one
    rows = col.to_pylist()
    assert [codes.values[i].as_py() for i in codes.index.tolist()] == rows
