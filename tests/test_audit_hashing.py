"""The audit hash reproduces the reference implementation's vectors exactly."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from grantex_local.audit.hashing import canonical_json, entry_hash, js_number, preimage

# A copy of ../shared/vectors, so the suite runs from any checkout; the test below keeps it honest.
VECTORS = Path(__file__).resolve().parent / "vectors" / "audit_hash_vectors.json"
SHARED = Path(__file__).resolve().parents[2] / "shared" / "vectors" / "audit_hash_vectors.json"


def _vectors() -> list[dict]:
    return json.loads(VECTORS.read_text())["vectors"]


@pytest.mark.parametrize("vector", _vectors(), ids=lambda v: v["fields"]["id"])
def test_reference_vectors(vector: dict) -> None:
    metadata = json.loads(vector["metadata_json"])
    data = preimage(vector["fields"], metadata)
    assert data.decode("utf-8") == vector["preimage"]
    assert entry_hash(data) == vector["hash"]


@pytest.mark.skipif(not SHARED.exists(), reason="no ../shared beside this checkout")
def test_vector_copy_matches_shared() -> None:
    assert VECTORS.read_bytes() == SHARED.read_bytes()


@pytest.mark.parametrize(
    ("value", "text"),
    [(0, "0"), (-0.0, "0"), (10.0, "10"), (1.5, "1.5"), (1e21, "1e+21"), (1e20, "100000000000000000000"),
     (1e-7, "1e-7"), (0.000001, "0.000001"), (123.456, "123.456"), (-2.5e-8, "-2.5e-8"),
     (2**53, "9007199254740992"), (2**64, "18446744073709552000"), (10**21, "1e+21"),
     (1.2345e22, "1.2345e+22"), (5e-324, "5e-324"), (1.7976931348623157e308, "1.7976931348623157e+308"),
     (0.1 + 0.2, "0.30000000000000004"), (-1, "-1"), (123456789012, "123456789012")],
)
def test_numbers_as_javascript_writes_them(value: float, text: str) -> None:
    assert js_number(value) == text


def test_keys_sort_by_utf16_code_units() -> None:
    # U+FF5E sorts after U+1F600 by code point but before it in UTF-16 (surrogate D83D < FF5E).
    assert canonical_json({"\uff5e": 1, "\U0001f600": 2, "a": 3}) == '{"a":3,"\U0001f600":2,"\uff5e":1}'


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**70), 2**70)
    | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4)
    | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=20,
)


@given(json_values)
def test_canonical_json_is_valid_json_with_the_same_value(value: object) -> None:
    text = canonical_json(value)
    assert _same(json.loads(text), value)
    assert canonical_json(json.loads(text)) == text  # stable under a round trip


def _same(parsed: object, original: object) -> bool:
    if isinstance(original, bool) or original is None or isinstance(original, str):
        return parsed == original
    if isinstance(original, int | float):
        return math.isclose(float(parsed), float(original), rel_tol=1e-15, abs_tol=0) or parsed == original
    if isinstance(original, list):
        pairs = zip(parsed, original, strict=True)
        return len(parsed) == len(original) and all(_same(p, o) for p, o in pairs)
    return set(parsed) == set(original) and all(_same(parsed[k], original[k]) for k in original)
