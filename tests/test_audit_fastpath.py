"""The audit trail's fast paths (issue 7) against the reference code they stand in for.

Why these tests: bulk appends build canonical JSON with the C encoder, spell ULIDs by table,
assemble preimages from cached pieces and fold the Merkle tree a level at a time; chain
verification checks whole batches with string operations. Each is only allowed because it
produces exactly what the slower reference produces (the hashed bytes, the ids, the stored
nodes) or reaches exactly the reference's verdict (the same seq and reason at the first break,
the same report otherwise). So each is compared with its reference here, on generated input,
including the awkward cases (astral and lone-surrogate characters, unsafe integers, floats,
tampered rows of every shape).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import re
import sqlite3
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from unittest import mock

import pytest
from helpers import dump, grant_for
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from ulid import ULID

from grantex_local import ChainBroken, Grantex, InvalidInput, NotFound, ids
from grantex_local.audit import chain, hashing, merkle, trail
from grantex_local.audit.hashing import canonical_json, canonical_object, preimage_text

SETTINGS = settings(max_examples=80, deadline=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture])

awkward = st.lists(st.sampled_from(
    ["\U0001f600", "\U0001d11e", "\ud83d", "\ude00", "\ue000", "\uffff", "\u2028", "\x00", "\x1f",
     "\x7f", '"', "\\", "/", "\u00e9", "a", "Z", " ", "0"]), max_size=6).map("".join)
texts = st.text(max_size=10) | awkward
scalars = (st.none() | st.booleans() | texts
           | st.integers(min_value=-(2**60), max_value=2**60)
           | st.sampled_from([2**53 - 1, -(2**53) + 1, 2**53, -(2**53), 10**21, 0, -1])
           | st.floats(allow_nan=False, allow_infinity=False))
string_lists = st.lists(texts, max_size=4) | st.lists(texts, max_size=3).map(tuple)
flat_objects = st.dictionaries(texts, scalars | string_lists, max_size=8)
json_values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=3)
                           | st.dictionaries(texts, inner, max_size=3), max_leaves=10)


def reference_canonical(value: Any) -> str:
    """canonical_json with the C-encoder fast path switched off: the explicit builder alone."""
    with mock.patch.object(hashing, "_encode", None):
        return canonical_json(value)


def outcome(fn: Callable[[], Any]) -> tuple[str, Any]:
    try:
        return "ok", fn()
    except InvalidInput as exc:
        return "InvalidInput", exc.message


# ── canonical JSON ───────────────────────────────────────────────────────────


@SETTINGS
@given(value=flat_objects)
@example(value={"b": 1, "a": "x", "\u00e9": True, "\ue000": None, "A": -(2**53) + 1})
@example(value={"\U0001f600": 1, "\uffff": 2})  # UTF-16 order differs from code-point order
@example(value={"\ud83d\ude00": 1, "\U0001f600": 2})  # one JavaScript key spelt twice
@example(value={"big": 2**53, "float": 10.0, "tiny": 1e-7})
@example(value={"lone": "\udfff", "pair": "\ud83d\ude00"})
@example(value={"scopes": ["calendar:read", "\u00e9"], "t": ("a",), "e": [], "beyond": ["\U0001f600"]})
def test_flat_objects_canonicalise_to_the_reference_bytes(value: dict[str, Any]) -> None:
    expected = outcome(lambda: reference_canonical(value))
    assert outcome(lambda: canonical_json(value)) == expected
    got = outcome(lambda: canonical_object(value))
    if expected[0] != "ok":
        assert got == expected
        return
    text, parsed = got[1]
    assert text == expected[1]
    reparsed = json.loads(text)
    assert list(parsed.items()) == list(reparsed.items())  # same values, same (canonical) key order
    assert parsed is not value
    for key, item in parsed.items():  # lists are the copy's own, as json.loads would give them
        assert not isinstance(item, list) or item is not value.get(key)


@SETTINGS
@given(value=json_values)
def test_any_value_canonicalises_to_the_reference_bytes(value: Any) -> None:
    assert outcome(lambda: canonical_json(value)) == outcome(lambda: reference_canonical(value))


def test_the_fast_path_refuses_what_it_cannot_spell() -> None:
    for value in ({"f": 1.5}, {"n": 2**53}, {"n": -(2**53)}, {1: "x"}, {"l": [1]}, {"d": {}},
                  {"s": "\ud800"}, {"\U0001f600": 1}, {"t": (1,)}, {"b": b"x"}):
        assert hashing._flat_canonical(value) is None, value
    assert hashing._flat_canonical({"b": True, "a": None}) == ('{"a":null,"b":true}', {"a": None, "b": True})


def test_the_vectors_metadata_takes_either_path_to_the_same_bytes() -> None:
    """The reference vectors, with and without the fast path (test_audit_hashing checks the rest)."""
    for path in (Path(__file__).parent / "vectors" / "audit_hash_vectors.json",
                 Path(__file__).parents[2] / "shared" / "vectors" / "audit_hash_vectors.json"):
        if not path.exists():
            continue
        for vector in json.loads(path.read_text(encoding="utf-8"))["vectors"]:
            metadata = json.loads(vector["metadata_json"])
            text = canonical_object(metadata)[0]
            assert text == reference_canonical(metadata)
            assert f',"metadata":{text},"timestamp":' in vector["preimage"]
            assert preimage_text(vector["fields"], metadata).encode() == vector["preimage"].encode()
            assert hashlib.sha256(vector["preimage"].encode()).hexdigest() == vector["hash"]


# ── ids ──────────────────────────────────────────────────────────────────────


def test_ids_are_the_ones_python_ulid_spells() -> None:
    with ids.deterministic(7, 1_700_000_000_000):
        fast = [ids.new_id(kind) for _ in range(100) for kind in ("audit", "grant", "audit")]
    with ids.deterministic(7, 1_700_000_000_000):
        reference = [ids.PREFIXES[kind] + str(ids._generator.generate())
                     for _ in range(100) for kind in ("audit", "grant", "audit")]
    assert fast == reference


@SETTINGS
@given(raw=st.lists(st.binary(min_size=16, max_size=16), min_size=1, max_size=5),
       step=st.integers(min_value=0, max_value=3))
@example(raw=[b"\xff" * 16, b"\x00" * 16, b"\x7f" + b"\xff" * 15], step=1)
def test_audit_ids_spell_any_ulid_as_python_ulid_does(raw: list[bytes], step: int) -> None:
    values = [int.from_bytes(b, "big") + k * step for b in raw for k in range(3)]
    values = [v % 2**128 for v in values]
    queue = iter(ULID.from_int(v) for v in values)
    fake = mock.Mock()
    fake.generate.side_effect = lambda: next(queue)
    with mock.patch.object(ids, "_generator", fake):
        got = [ids.new_id("audit") for _ in values]
    assert got == ["alog_" + str(ULID.from_int(v)) for v in values]


# ── appends ──────────────────────────────────────────────────────────────────


@pytest.fixture
def two_agents(gx: Grantex) -> dict[str, dict[str, str]]:
    one = grant_for(gx, ["calendar:read"], agent_name="one", principal="user_a")
    two = grant_for(gx, ["calendar:read"], agent_name="two", principal="user_\u00e9\"q")
    return {"one": {"agent_id": gx.grants.get(one.grant_id).agent_id, "grant_id": one.grant_id},
            "two": {"agent_id": gx.grants.get(two.grant_id).agent_id, "grant_id": two.grant_id}}


def stored_rows(path: Path) -> list[tuple[int, str, str]]:
    conn = sqlite3.connect(path)
    try:
        return conn.execute("SELECT seq, preimage, hash FROM audit_entries ORDER BY seq").fetchall()
    finally:
        conn.close()


def test_appended_preimages_are_the_reference_text(gx: Grantex, ledger_path: Path,
                                                   two_agents: dict[str, dict[str, str]]) -> None:
    metadata: list[dict[str, Any]] = [
        {}, {"i": 1, "b": "x"}, {"f": 1.5, "n": 2**60}, {"nested": {"z": [1, {"y": None}], "a": True}},
        {"\U0001f600": "\U0001f600", "\ue000": "astral \U0001d11e"}, {"q": 'quote " back \\ slash \u2028'},
    ]
    items = [{**two_agents["one" if i % 3 else "two"], "action": f"act.{i % 4}\u00e9",
              "status": ("success", "failure", "blocked")[i % 3], "metadata": metadata[i % len(metadata)]}
             for i in range(40)]
    written = gx.audit.log_many(items)
    written += [gx.audit.log(**two_agents["one"], action="single", metadata={"k": "v"})]
    gx.grants.revoke(two_agents["two"]["grant_id"])  # lifecycle entries with explicit time stamps
    written += gx.audit.log_many(items[:3])
    rows = {seq: (text, digest) for seq, text, digest in stored_rows(ledger_path)}
    for seq, (text, digest) in rows.items():
        fields = json.loads(text)
        assert preimage_text(fields, fields["metadata"]) == text, seq
        assert hashlib.sha256(text.encode()).hexdigest() == digest
    for entry in written:
        text, digest = rows[entry.seq]
        fields = json.loads(text)
        assert (entry.entry_id, entry.hash, entry.prev_hash, entry.timestamp, entry.status) == (
            fields["id"], digest, fields["prevHash"], fields["timestamp"], fields["status"])
        assert list(entry.metadata.items()) == list(fields["metadata"].items())
        assert entry == gx.audit.get(entry.entry_id)  # appends report the flags a read gives
    assert gx.audit.verify().entries == len(rows)


def test_bad_items_anywhere_in_a_batch_write_nothing(gx: Grantex, ledger_path: Path,
                                                     two_agents: dict[str, dict[str, str]]) -> None:
    good = {**two_agents["one"], "action": "ok"}
    before = dump(ledger_path)
    cases: list[tuple[Any, type[Exception], str]] = [
        (["not an object"], InvalidInput, "entry 3: an audit entry must be an object"),
        ({**good, "metadata": {"f": float("nan")}}, InvalidInput, "entry 3: metadata numbers"),
        ({**good, "metadata": {"x": {1, 2}}}, InvalidInput, "entry 3: metadata holds"),
        ({**good, "metadata": {1: "x"}}, InvalidInput, "entry 3: metadata object keys"),
        ({**good, "status": "maybe"}, InvalidInput, "entry 3: status must be one of"),
        ({**good, "action": "grantex.x"}, InvalidInput, "entry 3: actions starting with"),
        ({**good, "agent_id": two_agents["two"]["agent_id"]}, InvalidInput, "does not belong"),
        ({**good, "grant_id": "grnt_nope"}, NotFound, "entry 3: grant grnt_nope not found"),
        ({**good, "agent_did": "did:grantex:someone"}, InvalidInput, "entry 3: agentDid"),
        ({**good, "extra": 1}, InvalidInput, "entry 3: unknown audit fields: extra"),
    ]
    for bad, error, message in cases:
        with pytest.raises(error) as raised:
            gx.audit.log_many([good, good, good, bad, good])  # type: ignore[list-item]
        assert message in raised.value.message
    assert dump(ledger_path) == before


@SETTINGS
@given(batches=st.lists(st.integers(min_value=1, max_value=70), min_size=1, max_size=8))
@example(batches=[1] * 40)
@example(batches=[16, 16, 32, 64])
def test_merkle_nodes_are_the_tree_whatever_the_batches(batches: list[int]) -> None:
    with tempfile.TemporaryDirectory() as tmp, Grantex(Path(tmp) / "m.db") as gx:
        token = grant_for(gx, ["calendar:read"])
        ids_ = {"agent_id": gx.grants.get(token.grant_id).agent_id, "grant_id": token.grant_id}
        for size in batches:
            gx.audit.log_many([{**ids_, "action": "m", "metadata": {"n": n}} for n in range(size)])
            gx.audit.log(**ids_, action="one")
        conn = gx.ledger.conn
        hashes = [r[0] for r in conn.execute("SELECT hash FROM audit_entries ORDER BY seq")]
        stored = {(r[0], r[1]): bytes(r[2])
                  for r in conn.execute("SELECT level, idx, hash FROM audit_merkle")}
        leaves = [merkle.leaf_hash(h) for h in hashes]
        expected = {(level, index): merkle.root_of(leaves[index << level:(index + 1) << level])
                    for level in range(trail.STORED_LEVEL, len(leaves).bit_length())
                    for index in range(len(leaves) >> level)}
        assert stored == expected
        checkpoint = gx.audit.checkpoint()
        assert checkpoint["rootHash"] == merkle.root_of(leaves).hex()
        assert gx.audit.verify(checkpoint=checkpoint["signedCheckpoint"]).entries == len(leaves)


# ── chain verification: batches against the reference walk ────────────────────


@pytest.fixture(scope="module")
def clean_rows(tmp_path_factory: pytest.TempPathFactory) -> list[tuple[int, str, str]]:
    """A real chain: lifecycle entries, actions with varied metadata, a revocation."""
    path = tmp_path_factory.mktemp("walk") / "walk.db"
    with Grantex(path) as gx:
        token = grant_for(gx, ["calendar:read"])
        who = {"agent_id": gx.grants.get(token.grant_id).agent_id, "grant_id": token.grant_id}
        gx.audit.log_many([{**who, "action": "a", "metadata": {"i": i, "timestamp": '"timestamp":"x'}}
                           for i in range(30)])
        gx.audit.log(**who, action="b", status="blocked", metadata={"s": '","prevHash":"'})
        gx.audit.log_many([{**who, "action": "c", "metadata": {"i": i}} for i in range(20)])
    return stored_rows(path)


def relinked(rows: list[tuple[int, str, str]], start: int) -> list[tuple[int, str, str]]:
    """Rows from ``start`` on re-hashed, each linked to the one before: what a careful attacker writes."""
    out = list(rows[:start])
    for seq, text, _ in rows[start:]:
        if out:
            text = re.sub(r'"prevHash":"[0-9a-f]{64}"', f'"prevHash":"{out[-1][2]}"', text)
        out.append((seq, text, hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()))
    return out


def verdict(rows: Any, **options: Any) -> tuple[Any, ...]:
    marks: list[int] = []
    try:
        report = chain.verify_rows(rows, progress=marks.append, **options)
    except ChainBroken as exc:
        return "broken", exc.seq, exc.reason, exc.message, marks
    except Exception as exc:  # the reference's own failures (bytes that cannot be encoded, …)
        return "error", type(exc).__name__, marks
    return "ok", report, marks


def both_walks(rows: list[tuple[int, str, str]], **options: Any) -> tuple[tuple[Any, ...], tuple[Any, ...]]:
    """(batched over a list, reference over a generator), with batches small enough to have many."""
    with mock.patch.object(chain, "_BATCH", 7), mock.patch.object(chain, "_PROGRESS_EVERY", 14):
        return verdict(list(rows), **options), verdict(iter(rows), **options)


@contextlib.contextmanager
def counting_batches() -> Iterator[list[bool]]:
    """Record whether each batch passed whole: the fast path must really be taken."""
    results: list[bool] = []
    original = chain._Walk.batch

    def spy(self: chain._Walk, rows: list[tuple[int, str, str]]) -> bool:
        results.append(original(self, rows))
        return results[-1]

    with mock.patch.object(chain._Walk, "batch", spy):
        yield results


def test_clean_chains_take_the_batch_path_and_report_the_same(clean_rows: list[tuple[int, str, str]]) -> None:
    with counting_batches() as passed:
        fast, reference = both_walks(clean_rows)
    assert fast == reference and fast[0] == "ok"
    assert passed and all(passed)
    assert both_walks(clean_rows, with_root=False)[0] == both_walks(clean_rows, with_root=False)[1]
    head = clean_rows[9]
    after = (head[0], head[2], json.loads(head[1])["id"], json.loads(head[1])["timestamp"])
    fast, reference = both_walks(clean_rows[10:], after=after)
    assert fast == reference and fast[0] == "ok"


MUTATIONS = st.sampled_from(["char", "swap", "delete", "duplicate", "hash", "seq", "stamp_back",
                             "truncate", "insert_quote_in_stamp", "rename_key"])


@SETTINGS
@given(mutation=MUTATIONS, where=st.integers(min_value=0, max_value=10_000),
       position=st.integers(min_value=0, max_value=10_000),
       char=st.sampled_from(['"', "\\", "x", "0", "}", "{", ",", ":", "\ud800", "\u00e9", "\U0001f600"]),
       relink=st.booleans(), ordered_ids=st.booleans())
def test_every_tampering_gets_the_reference_verdict(
        clean_rows: list[tuple[int, str, str]], mutation: str, where: int, position: int, char: str,
        relink: bool, ordered_ids: bool) -> None:
    rows = list(clean_rows)
    k = where % len(rows)
    seq, text, digest = rows[k]
    if mutation == "char":
        p = position % len(text)
        rows[k] = (seq, text[:p] + char + text[p + 1:], digest)
    elif mutation == "swap" and k + 1 < len(rows):
        rows[k], rows[k + 1] = (rows[k][0], rows[k + 1][1], rows[k + 1][2]), (rows[k + 1][0], text, digest)
    elif mutation == "delete":
        del rows[k]
    elif mutation == "duplicate":
        rows.insert(k, rows[k])
    elif mutation == "hash":
        rows[k] = (seq, text, hashlib.sha256(b"x").hexdigest())
    elif mutation == "seq":
        rows[k] = (seq + 1 + position % 3, text, digest)
    elif mutation == "stamp_back":
        rows[k] = (seq, re.sub(r'"timestamp":"\d{4}', '"timestamp":"1999', text), digest)
    elif mutation == "truncate":
        rows[k] = (seq, text[: position % len(text)], digest)
    elif mutation == "insert_quote_in_stamp":
        rows[k] = (seq, text.replace('"timestamp":"2', '"timestamp":"\\"', 1), digest)
    elif mutation == "rename_key":
        rows[k] = (seq, text.replace('"prevHash":', '"prevHasH":', 1), digest)
    if relink:
        rows = relinked(rows, k)
    fast, reference = both_walks(rows, ordered_ids=ordered_ids)
    assert fast == reference


def test_breaks_at_batch_edges_get_the_reference_verdict(clean_rows: list[tuple[int, str, str]]) -> None:
    for k in range(len(clean_rows) - 1):  # a swap across every boundary, first and last rows included
        rows = list(clean_rows)
        rows[k], rows[k + 1] = (rows[k][0], *rows[k + 1][1:]), (rows[k + 1][0], *clean_rows[k][1:])
        fast, reference = both_walks(rows)
        assert fast == reference and fast[0] == "broken"
    rows = [(s, t, d) for s, t, d in clean_rows]
    rows.insert(20, (21, rows[20][1], rows[20][2]))  # an entry inserted: "inserted" names the one before
    fast, reference = both_walks([(i + 1, t, d) for i, (_, t, d) in enumerate(rows)])
    assert fast == reference


def test_rows_of_other_shapes_get_the_reference_verdict(clean_rows: list[tuple[int, str, str]]) -> None:
    rows: list[Any] = list(clean_rows)
    for odd in ((5, None, "h"), (5, b"bytes", "h"), (5, "x", None), (5,), (5, "t", "h", "extra"), None,
                ("5", clean_rows[4][1], clean_rows[4][2]), (5.0, clean_rows[4][1], clean_rows[4][2])):
        changed = [*rows[:4], odd, *rows[5:]]
        assert both_walks(changed)[0] == both_walks(changed)[1], odd
        earlier_break = [*rows[:2], (3, rows[2][1] + " ", rows[2][2]), *changed[3:]]
        assert both_walks(earlier_break)[0] == both_walks(earlier_break)[1], odd
