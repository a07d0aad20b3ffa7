"""Property tests: any JSON metadata survives the ledger as JavaScript would see it, and the chain holds.

"As JavaScript would see it": numbers are doubles (integers of magnitude
2^53 and more are rounded, -0 is written 0), and strings are sequences of
UTF-16 code units (a surrogate pair spelt as two Python code points is the
same string as the character it encodes).
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from helpers import grant_for
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from grantex_local import Grantex, GrantexLocalError, InvalidInput, Ledger
from grantex_local.audit.hashing import FIELD_ORDER, canonical_json, preimage_text
from grantex_local.text import is_clean

SETTINGS = settings(max_examples=60, deadline=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture])

# ── strategies ───────────────────────────────────────────────────────────────

any_char = st.characters(codec=None, exclude_categories=())  # surrogates included
plain_text = st.text(max_size=12)
awkward_text = st.lists(st.sampled_from(
    ["\U0001f600", "\U0001f469\u200d\U0001f4bb", "\U0001d11e", "\U00020b9f", "\ud83d", "\ude00", "\ue000",
     "\uffff", "\u2028", "\x00", "\x1f", "\x7f", '"', "\\", "/", "\u00e9", "e\u0301", "a", " "]),
    max_size=8).map("".join)
texts = plain_text | awkward_text | st.text(any_char, max_size=6)
keys = texts
numbers = (
    st.integers(min_value=-(2**60), max_value=2**60)
    | st.integers(min_value=-(2**1000), max_value=2**1000)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.sampled_from([0.0, -0.0, 5e-324, -5e-324, 2.2250738585072014e-308, 1.7976931348623157e308,
                       -1.7976931348623157e308, 1e21, 1e-7, 1e-6, 0.1, 2**53, 2**53 + 1, -(2**53) - 1,
                       2**64, 10**21, 123456789012345678901234567890])
)
scalars = st.none() | st.booleans() | numbers | texts
json_values = st.recursive(
    scalars,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(keys, children, max_size=4),
    max_leaves=16,
)
metadata_objects = st.dictionaries(keys, json_values, max_size=6)


# ── JavaScript semantics ─────────────────────────────────────────────────────


def utf16(text: str) -> bytes:
    return text.encode("utf-16-be", "surrogatepass")


def js_value(value: Any) -> Any:
    """What a JavaScript program holds after JSON.parse(JSON.stringify(value))."""
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, int):
        return value if abs(value) < 2**53 else float(value)
    if isinstance(value, float):
        return 0.0 if value == 0 else value
    if isinstance(value, str):
        return value
    if isinstance(value, dict):
        return {k: js_value(v) for k, v in value.items()}
    return [js_value(v) for v in value]


def mismatch(got: Any, want: Any, where: str = "$") -> str | None:
    """Where ``got`` differs from ``want`` under JavaScript equality (None when equal)."""
    if want is None or isinstance(want, bool):
        return None if got is want else f"{where}: {got!r} is not {want!r}"
    if isinstance(want, int | float):
        if isinstance(got, bool) or not isinstance(got, int | float):
            return f"{where}: {got!r} is not a number"
        if float(got) != float(want) or math.copysign(1.0, float(got)) != math.copysign(1.0, float(want)):
            return f"{where}: {got!r} != {want!r}"
        return None
    if isinstance(want, str):
        return None if isinstance(got, str) and utf16(got) == utf16(want) else f"{where}: {got!r} != {want!r}"
    if isinstance(want, list):
        if not isinstance(got, list) or len(got) != len(want):
            return f"{where}: {got!r} is not a list of {len(want)}"
        return next((m for i, (g, w) in enumerate(zip(got, want, strict=True))
                     if (m := mismatch(g, w, f"{where}[{i}]"))), None)
    if not isinstance(got, dict):
        return f"{where}: {got!r} is not an object"
    got_by_units = {utf16(k): v for k, v in got.items()}
    want_by_units = {utf16(k): v for k, v in want.items()}
    if set(got_by_units) != set(want_by_units):
        return f"{where}: keys {sorted(got)!r} != {sorted(want)!r}"
    return next((m for k, w in want_by_units.items()
                 if (m := mismatch(got_by_units[k], w, f"{where}.{k.decode('utf-16-be', 'replace')}"))),
                None)


def assert_js_equal(got: Any, want: Any) -> None:
    problem = mismatch(got, js_value(want))
    assert problem is None, problem


def has_duplicate_js_keys(value: Any) -> bool:
    """Two Python keys that are one JavaScript key ('\\ud83d\\ude00' and '\U0001f600')."""
    if isinstance(value, dict):
        units = [utf16(k) for k in value]
        return len(set(units)) != len(units) or any(has_duplicate_js_keys(v) for v in value.values())
    if isinstance(value, list):
        return any(has_duplicate_js_keys(v) for v in value)
    return False


def has_surrogate_pair(value: Any) -> bool:
    """A high and a low surrogate side by side: one character to JavaScript, two to Python."""
    return re.search("[\ud800-\udbff][\udc00-\udfff]", json.dumps(value, ensure_ascii=False)) is not None


def iter_numbers(value: Any) -> Iterator[int | float]:
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return
    if isinstance(value, int | float):
        yield value
    elif isinstance(value, dict):
        for v in value.values():
            yield from iter_numbers(v)
    else:
        for v in value:
            yield from iter_numbers(v)


# ── through the ledger ───────────────────────────────────────────────────────


@pytest.fixture
def chain(tmp_path: Path) -> Iterator[tuple[Grantex, dict[str, str]]]:
    """One ledger for the whole test function: every example appends to the same chain."""
    with Grantex(Ledger(tmp_path / "props.db")) as gx:
        token = grant_for(gx, ["calendar:read"])
        grant = gx.grants.get(token.grant_id)
        yield gx, {"agent_id": grant.agent_id, "grant_id": grant.id}


@SETTINGS
@given(metadata=metadata_objects)
@example(metadata={"big": 2**53 + 1, "neg_zero": -0.0, "tiny": 5e-324, "huge": 1.7976931348623157e308,
                   "\U0001f600": "\U0001f469\u200d\U0001f4bb", "\ue000": [None, True, False, 1e21]})
@example(metadata={"nested": {"a": [{"b": {"c": [[], {}]}}]}, "": "", "k\x00\"\\": "\u2028\ud800"})
@example(metadata={"surrogates": "\ud83d\ude00", "lone": "\udfff\ud800"})
def test_metadata_round_trips_through_the_ledger_and_the_chain_verifies(
        chain: tuple[Grantex, dict[str, str]], metadata: dict[str, Any]) -> None:
    gx, ids = chain
    if has_duplicate_js_keys(metadata):
        return  # not a JavaScript object; covered by its own test below
    if not is_clean(metadata):  # a surrogate or a non-character: refused, nothing written
        before = gx.audit.verify().entries
        with pytest.raises(InvalidInput):
            gx.audit.log(**ids, action="props.check", metadata=metadata)
        assert gx.audit.verify().entries == before
        return
    entry = gx.audit.log(**ids, action="props.check", metadata=metadata)
    assert_js_equal(entry.metadata, metadata)
    stored = gx.audit.get(entry.entry_id)
    assert_js_equal(stored.metadata, metadata)
    assert (stored.hash, stored.seq, stored.prev_hash) == (entry.hash, entry.seq, entry.prev_hash)
    report = gx.audit.verify()
    assert (report.entries, report.head_hash) == (entry.seq, entry.hash)


@SETTINGS
@given(action=st.text(st.characters(codec=None, exclude_categories=(), min_codepoint=32,
                                    exclude_characters="\x7f"),
                      min_size=1, max_size=30).filter(lambda a: not a.startswith("grantex.")),
       status=st.sampled_from(["success", "failure", "blocked"]))
@example(action="\U0001f4b8.send\ud800", status="blocked")
@example(action='quote"back\\slash/\u2028', status="failure")
def test_any_printable_action_round_trips_and_is_queryable(
        chain: tuple[Grantex, dict[str, str]], action: str, status: str) -> None:
    gx, ids = chain
    if not is_clean(action):  # a surrogate or a non-character: refused, nothing written
        with pytest.raises(InvalidInput):
            gx.audit.log(**ids, action=action, status=status)
        return
    entry = gx.audit.log(**ids, action=action, status=status)
    stored = gx.audit.get(entry.entry_id)
    assert utf16(stored.action) == utf16(action) and stored.status == status
    assert entry.entry_id in [e.entry_id for e in gx.audit.list(status=status, newest_first=True,
                                                                 page_size=5)]
    assert gx.audit.verify().entries == entry.seq


@SETTINGS
@given(metadata=metadata_objects)
def test_bulk_appends_round_trip_in_order(chain: tuple[Grantex, dict[str, str]],
                                          metadata: dict[str, Any]) -> None:
    gx, ids = chain
    if has_duplicate_js_keys(metadata):
        return
    items = [{**ids, "action": "props.bulk", "metadata": {"i": i, "m": metadata}} for i in range(3)]
    if not is_clean(metadata):  # refused as a whole batch: nothing written
        with pytest.raises(InvalidInput):
            gx.audit.log_many(items)
        return
    written = gx.audit.log_many(items)
    assert [e.seq for e in written] == list(range(written[0].seq, written[0].seq + 3))
    for i, entry in enumerate(written):
        assert_js_equal(gx.audit.get(entry.entry_id).metadata, {"i": i, "m": metadata})
    assert gx.audit.verify().entries == written[-1].seq


@pytest.mark.parametrize("value", [10**400, -(10**400), 2**1024, [1, {"deep": 10**309}]],
                         ids=["1e400", "-1e400", "2^1024", "nested_1e309"])
def test_a_number_javascript_cannot_hold_is_refused_cleanly(
        chain: tuple[Grantex, dict[str, str]], value: Any) -> None:
    """JavaScript reads such an integer as Infinity; the ledger refuses it like NaN and Infinity."""
    gx, ids = chain
    before = gx.audit.verify().entries
    with pytest.raises(InvalidInput):
        gx.audit.log(**ids, action="props.huge", metadata={"n": value})
    assert gx.audit.verify().entries == before


def test_two_spellings_of_one_javascript_key_are_refused_or_written_once(
        chain: tuple[Grantex, dict[str, str]]) -> None:
    """'\\ud83d\\ude00' and '\U0001f600' are one key to JavaScript: never two keys in the hashed text."""
    gx, ids = chain
    try:
        entry = gx.audit.log(**ids, action="props.dup", metadata={"\ud83d\ude00": 1, "\U0001f600": 2})
    except GrantexLocalError:
        return
    proof_text = canonical_json({"\ud83d\ude00": 1, "\U0001f600": 2})
    assert len(json.loads(proof_text, object_pairs_hook=list)) == 1, proof_text
    assert len(gx.audit.get(entry.entry_id).metadata) == 1


# ── canonical JSON against independent checks ────────────────────────────────

NUMBER = re.compile(r"-?(0|[1-9][0-9]*)(\.[0-9]*[1-9])?(e[+-][1-9][0-9]*)?")


@given(json_values)
@example("\ud83d\ude00")
@example({"\ud83d\ude00": 1})
@example({"\ue000": 1, "\U0001f600": 2})
def test_canonical_json_parses_back_to_the_javascript_value_and_is_a_fixed_point(value: Any) -> None:
    if has_duplicate_js_keys(value):
        return
    text = canonical_json(value)
    assert_js_equal(json.loads(text), value)
    assert canonical_json(json.loads(text)) == text


@given(json_values.filter(lambda v: not any(isinstance(n, float) or abs(n) >= 2**53
                                            for n in iter_numbers(v))))
def test_canonical_json_is_compact_sorted_json_for_plain_values(value: Any) -> None:
    """Without floats, big integers or keys beyond U+FFFF, canonical JSON is what json.dumps writes."""
    def keys_in(v: Any) -> Iterator[str]:
        if isinstance(v, dict):
            yield from v
            for child in v.values():
                yield from keys_in(child)
        elif isinstance(v, list):
            for child in v:
                yield from keys_in(child)
    if any(any(ord(c) > 0xD7FF for c in k) for k in keys_in(value)):
        return  # code-point order and UTF-16 order can differ there
    if any(0xD800 <= ord(c) <= 0xDFFF for c in json.dumps(value, ensure_ascii=False)):
        return  # lone surrogates: json.dumps keeps them raw, JavaScript escapes them
    assert canonical_json(value) == json.dumps(value, sort_keys=True, separators=(",", ":"),
                                               ensure_ascii=False)


@given(st.dictionaries(keys, st.integers(0, 9), min_size=2, max_size=8))
@example({"\ue000": 1, "\U0001f600": 2, "\uff5e": 3, "z": 4, "": 5})
def test_object_keys_come_out_in_utf16_code_unit_order(value: dict[str, int]) -> None:
    if has_duplicate_js_keys(value):
        return
    pairs = json.loads(canonical_json(value), object_pairs_hook=list)
    units = [utf16(k) for k, _ in pairs]
    assert units == sorted(units)
    assert len(pairs) == len(value)


@given(st.floats(allow_nan=False, allow_infinity=False) | st.integers(-(2**1000), 2**1000))
@example(1e21)
@example(999999999999999900000.0)
@example(1e-6)
@example(9.999999999999999e-7)
@example(-0.0)
@example(5e-324)
def test_numbers_are_written_as_javascript_writes_a_double(value: float) -> None:
    text = canonical_json(value)
    double = float(value)
    assert NUMBER.fullmatch(text), text
    assert float(text) == double  # exactly the same double, -0 aside
    if double == 0:
        assert text == "0"
        return
    # The shortest digits that round-trip (Python's repr finds them too), laid out by ECMA-262's rule.
    digits = "".join(map(str, Decimal(repr(abs(double))).as_tuple().digits)).strip("0")
    mantissa = text.lstrip("-").split("e")[0].replace(".", "").strip("0")
    assert mantissa == digits, (text, repr(double))
    exponent_form = "e" in text
    assert exponent_form == (abs(double) >= 1e21 or abs(double) < 1e-6), text
    assert text.startswith("-") == (double < 0)


@given(st.fixed_dictionaries({name: st.none() | texts for name in FIELD_ORDER if name != "metadata"}),
       metadata_objects)
def test_preimage_is_one_line_of_json_with_the_fields_in_the_fixed_order(
        fields: dict[str, str | None], metadata: dict[str, Any]) -> None:
    if has_surrogate_pair([fields, metadata]):
        return  # see test_canonical_json_parses_back_to_the_javascript_value_and_is_a_fixed_point
    text = preimage_text(fields, metadata)
    pairs = json.loads(text, object_pairs_hook=list)
    assert [k for k, _ in pairs] == list(FIELD_ORDER)
    parsed = dict(pairs)
    for name, value in fields.items():
        assert_js_equal(parsed[name], value)
    assert text.startswith('{"id":') and "\n" not in text and "\r" not in text
    assert preimage_text(parsed, json.loads(canonical_json(metadata))) == text
