"""Tampering with the ledger file: each tampering is detected with the right seq and reason.

The attacker has the file. They open it with sqlite3, drop the append-only
triggers and edit rows: change bytes, re-hash consistently, delete, swap,
insert, rewrite the whole chain. The chain verifier must point at the first
entry where the tampering shows and say what it is; a checkpoint kept outside
the file must catch what a chain walk alone cannot (a deleted tail, a chain
rewritten from scratch); the ledger must refuse to sign a new checkpoint over
a tampered chain; and an inclusion proof must not survive any one-character
change.
"""

from __future__ import annotations

import base64
import hashlib
import json
import shutil
import sqlite3
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from helpers import MovableClock, grant_for

from grantex_local import ChainBroken, Grantex, GrantexLocalError, Ledger
from grantex_local.audit import CheckpointInvalid, merkle, note, verify_proof
from grantex_local.audit import checkpoints as audit_checkpoints
from grantex_local.audit.hashing import js_string, preimage_text
from grantex_local.developers import create_developer
from grantex_local.ids import new_id

TRIGGERS = tuple(f"{table}_no_{verb}" for table in ("audit_entries", "audit_merkle", "audit_checkpoints")
                 for verb in ("update", "delete"))
LONG_AGO = "2000-01-01T00:00:00.000Z"

Row = tuple[int, str, str]
Statement = tuple[str, Sequence[Any]]


# ── the attacker's tools ─────────────────────────────────────────────────────


def tamper_many(path: Path, statements: Iterable[Statement]) -> None:
    """Drop the append-only triggers, run the statements, commit: what anyone holding the file can do."""
    conn = sqlite3.connect(path)
    try:
        for trigger in TRIGGERS:
            conn.execute(f"DROP TRIGGER IF EXISTS {trigger}")
        for sql, params in statements:
            conn.execute(sql, params)
        conn.commit()
    finally:
        conn.close()


def tamper(path: Path, sql: str, params: Sequence[Any] = ()) -> None:
    tamper_many(path, [(sql, params)])


def entry_rows(path: Path) -> list[Row]:
    conn = sqlite3.connect(path)
    try:
        return conn.execute("SELECT seq, preimage, hash FROM audit_entries ORDER BY seq").fetchall()
    finally:
        conn.close()


def sha256_hex(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def rebuilt(entry: dict[str, Any]) -> str:
    """The preimage of a parsed entry, as the library would write it."""
    return preimage_text(entry, entry["metadata"])


def reforge(path: Path, first: int, last: int | None, edit: Callable[[int, dict[str, Any]], None]) -> None:
    """Rewrite entries ``first..last`` (default: to the end) consistently.

    Each entry is parsed, edited, linked to the (new) hash of the entry before
    it and re-hashed, so every entry in the range is internally sound; the
    entries after ``last`` are left alone.
    """
    rows = entry_rows(path)
    prev_hash = rows[first - 2][2] if first > 1 else None
    updates: list[Statement] = []
    for seq, text, _ in rows[first - 1:last]:
        entry = json.loads(text)
        edit(seq, entry)
        entry["prevHash"] = prev_hash
        new_text = rebuilt(entry)
        prev_hash = sha256_hex(new_text)
        updates.append(("UPDATE audit_entries SET preimage = ?, hash = ? WHERE seq = ?",
                        (new_text, prev_hash, seq)))
    tamper_many(path, updates)


def rebuild_merkle(path: Path, leaves: dict[int, str] | None = None) -> None:
    """Recompute every stored Merkle node from the entries' hashes (``leaves``: index → forged hash)."""
    rows = entry_rows(path)
    developer_id = json.loads(rows[0][1])["developerId"]
    nodes: dict[tuple[int, int], bytes] = {}
    for index, (_, _, digest) in enumerate(rows):
        digest = (leaves or {}).get(index, digest)
        for level, idx, node in merkle.new_nodes(index, merkle.leaf_hash(digest),
                                                 lambda lv, ix: nodes[(lv, ix)]):
            nodes[(level, idx)] = node
    tamper_many(path, [
        ("DELETE FROM audit_merkle WHERE developer_id = ?", (developer_id,)),
        *[("INSERT INTO audit_merkle (developer_id, level, idx, hash) VALUES (?, ?, ?, ?)",
           (developer_id, level, idx, node)) for (level, idx), node in nodes.items()],
    ])


def set_preimage(path: Path, seq: int, change: Callable[[str], str]) -> None:
    text = entry_rows(path)[seq - 1][1]
    new_text = change(text)
    assert new_text != text, "the tampering changed nothing"
    tamper(path, "UPDATE audit_entries SET preimage = ? WHERE seq = ?", (new_text, seq))


# ── the tamperings (path, k) ─────────────────────────────────────────────────


def change_action(path: Path, k: int) -> None:
    def change(text: str) -> str:
        action = js_string(json.loads(text)["action"])
        return text.replace(f'"action":{action}', '"action":"payments.refund"', 1)
    set_preimage(path, k, change)


def change_metadata_value(path: Path, k: int) -> None:
    def change(text: str) -> str:
        amount = json.loads(text)["metadata"]["amount"]
        return text.replace(f'"amount":{amount}', f'"amount":{amount * 1000}', 1)
    set_preimage(path, k, change)


def change_hash_column(path: Path, k: int) -> None:
    digest = entry_rows(path)[k - 1][2]
    forged = ("0" if digest[0] != "0" else "1") + digest[1:]
    tamper(path, "UPDATE audit_entries SET hash = ? WHERE seq = ?", (forged, k))


def change_and_rehash(path: Path, k: int) -> None:
    def edit(seq: int, entry: dict[str, Any]) -> None:
        entry["action"] = "payments.refund"
        entry["metadata"] = {**entry["metadata"], "forged": True}
    reforge(path, k, k, edit)


def delete_entry(path: Path, k: int) -> None:
    tamper(path, "DELETE FROM audit_entries WHERE seq = ?", (k,))


def swap_with_next(path: Path, k: int) -> None:
    tamper_many(path, [("UPDATE audit_entries SET seq = -1 WHERE seq = ?", (k,)),
                       ("UPDATE audit_entries SET seq = ? WHERE seq = ?", (k, k + 1)),
                       ("UPDATE audit_entries SET seq = ? WHERE seq = -1", (k + 1,))])


def insert_before(path: Path, k: int) -> None:
    """A forged, well-formed entry at seq ``k`` linked to entry k-1; the rest shifted up by one."""
    rows = entry_rows(path)
    template = json.loads(rows[k - 1][1])
    previous = json.loads(rows[k - 2][1]) if k > 1 else None
    forged = {**template, "id": new_id("audit"), "action": "payments.initiate", "status": "success",
              "metadata": {"amount": 99_999, "to": "mallory"},
              "prevHash": rows[k - 2][2] if k > 1 else None,
              "timestamp": previous["timestamp"] if previous else template["timestamp"]}
    text = rebuilt(forged)
    tamper_many(path, [
        ("UPDATE audit_entries SET seq = -seq WHERE seq >= ?", (k,)),
        ("UPDATE audit_entries SET seq = 1 - seq WHERE seq < 0", ()),
        ("INSERT INTO audit_entries (seq, preimage, hash) VALUES (?, ?, ?)", (k, text, sha256_hex(text))),
    ])


def timestamp_backwards(path: Path, k: int) -> None:
    def edit(seq: int, entry: dict[str, Any]) -> None:
        if seq == k:
            entry["timestamp"] = LONG_AGO
    reforge(path, k, None, edit)


# ── the ledger under attack ──────────────────────────────────────────────────


@dataclass(frozen=True)
class Template:
    path: Path
    size: int
    action_seqs: tuple[int, ...]
    developer_id: str

    def position(self, name: str) -> int:
        """A seq by role: first, second, lifecycle (an event before the actions), first_action,
        action (in the middle of a bulk append), penultimate, last (a lifecycle event)."""
        lifecycle = min(self.action_seqs) - 2
        assert lifecycle > 2 and self.size not in self.action_seqs
        return {"first": 1, "second": 2, "lifecycle": lifecycle, "first_action": min(self.action_seqs),
                "action": self.action_seqs[len(self.action_seqs) // 2],
                "penultimate": self.size - 1, "last": self.size}[name]


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Template:
    """One developer chain of ~40 entries: lifecycle events and bulk-logged actions."""
    path = tmp_path_factory.mktemp("tamper") / "template.db"
    clock = MovableClock()
    with Grantex(Ledger(path, clock=clock)) as gx:
        root = grant_for(gx, ["calendar:read", "payments:initiate"])
        clock.advance(1)
        sub = gx.agents.register(name="sub-agent", scopes=["calendar:read"])
        child = gx.grants.delegate(parent_grant_token=root.grant_token, sub_agent_id=sub.id,
                                   scopes=["calendar:read"])
        clock.advance(1)
        gx.tokens.refresh(refresh_token=root.refresh_token, agent_id=gx.grants.get(root.grant_id).agent_id)
        grant = gx.grants.get(root.grant_id)
        actions: list[int] = []
        for batch in range(4):
            clock.advance(2)
            entries = gx.audit.log_many([
                {"agent_id": grant.agent_id, "grant_id": grant.id, "action": "payments.initiate",
                 "metadata": {"amount": 100 * batch + i + 1, "batch": batch, "to": f"payee-{i}"}}
                for i in range(6)])
            clock.advance(1)
            entries.append(gx.audit.log(agent_id=grant.agent_id, grant_id=grant.id,
                                        action="calendar.read", status="failure",
                                        metadata={"amount": batch, "calendar": "work"}))
            actions += [e.seq for e in entries]
        clock.advance(1)
        gx.grants.revoke(child.grant_id)
        gx.agents.suspend(sub.id)
        gx.audit.public_key()  # the checkpoint key exists before any copy is made
        report = gx.audit.verify()
        developer_id = gx.developer_id
    assert 35 <= report.entries <= 50
    conn = sqlite3.connect(path)
    assert conn.execute("SELECT count(DISTINCT developer_id) FROM audit_entries").fetchone()[0] == 1
    conn.close()
    return Template(path, report.entries, tuple(actions), developer_id)


def copy_ledger(source: Path, target: Path) -> Path:
    for suffix in ("", "-wal"):
        if Path(f"{source}{suffix}").exists():
            shutil.copyfile(f"{source}{suffix}", f"{target}{suffix}")
    return target


@pytest.fixture
def ledger(template: Template, tmp_path: Path) -> Path:
    """A private copy of the template ledger."""
    return copy_ledger(template.path, tmp_path / "ledger.db")


def verify(path: Path, checkpoint: str | None = None) -> Any:
    """Verify with a freshly opened ledger: no state cached from before the tampering."""
    with Grantex(path, create=False) as gx:
        return gx.audit.verify(checkpoint=checkpoint)


def broken(path: Path, checkpoint: str | None = None) -> tuple[int, str]:
    with pytest.raises(ChainBroken) as err:
        verify(path, checkpoint)
    return err.value.seq, err.value.reason


def take_checkpoint(path: Path) -> str:
    with Grantex(path, create=False) as gx:
        return str(gx.audit.checkpoint()["signedCheckpoint"])


def log_more(path: Path, count: int) -> None:
    with Grantex(path, create=False) as gx:
        grant = next(g for g in gx.grants.list().grants if g.parent_grant_id is None)
        gx.audit.log_many([{"agent_id": grant.agent_id, "grant_id": grant.grant_id,
                            "action": "calendar.read", "metadata": {"later": i}} for i in range(count)])


# ── the chain walk alone ─────────────────────────────────────────────────────


def test_the_untouched_copy_verifies_and_the_attackers_rebuild_is_faithful(
        template: Template, ledger: Path) -> None:
    assert verify(ledger).entries == template.size
    for _, text, digest in entry_rows(ledger):
        assert rebuilt(json.loads(text)) == text and sha256_hex(text) == digest


ExpectFn = Callable[[int], tuple[int, str]]

CASES = [
    pytest.param(change_action, position, lambda k: (k, "content_changed"), id=f"field_changed-{position}")
    for position in ("first", "lifecycle", "action", "last")
] + [
    pytest.param(change_metadata_value, position, lambda k: (k, "content_changed"),
                 id=f"metadata_changed-{position}")
    for position in ("first_action", "action")
] + [
    pytest.param(change_hash_column, position, lambda k: (k, "content_changed"),
                 id=f"hash_changed-{position}")
    for position in ("first", "action", "last")
] + [
    pytest.param(change_and_rehash, position, lambda k: (k + 1, "link_broken"), id=f"rehashed-{position}")
    for position in ("first", "lifecycle", "action", "penultimate")
] + [
    pytest.param(delete_entry, position, lambda k: (k, "seq_gap"), id=f"deleted-{position}")
    for position in ("first", "lifecycle", "action", "penultimate")
] + [
    pytest.param(swap_with_next, position, lambda k: (k, "order_changed"), id=f"swapped-{position}")
    for position in ("first", "lifecycle", "action", "penultimate")
] + [
    pytest.param(insert_before, position, lambda k: (k, "inserted"), id=f"inserted-{position}")
    for position in ("second", "lifecycle", "action", "last")
] + [
    pytest.param(timestamp_backwards, position, lambda k: (k, "timestamp_backwards"),
                 id=f"timestamp_backwards-{position}")
    for position in ("second", "action", "last")
]


@pytest.mark.parametrize(("attack", "position", "expected"), CASES)
def test_tampering_is_found_at_the_right_seq_with_the_right_reason(
        template: Template, ledger: Path, attack: Callable[[Path, int], None], position: str,
        expected: ExpectFn) -> None:
    k = template.position(position)
    attack(ledger, k)
    assert broken(ledger) == expected(k)


def test_a_forged_entry_inserted_before_the_first_one_is_reported_as_inserted(
        template: Template, ledger: Path) -> None:
    # The forged entry takes seq 1 (prevHash null); the real first entry, now seq 2, skips it.
    insert_before(ledger, 1)
    assert broken(ledger) == (1, "inserted")


def test_the_verifier_reports_only_the_first_break(template: Template, ledger: Path) -> None:
    middle, later = template.position("lifecycle"), template.position("action")
    change_hash_column(ledger, later)
    delete_entry(ledger, middle)
    assert broken(ledger) == (middle, "seq_gap")


# ── what only a checkpoint kept outside the file can catch ───────────────────


@pytest.mark.parametrize("deleted", [1, 5, 12])
def test_a_deleted_tail_is_caught_by_an_external_checkpoint(
        template: Template, ledger: Path, tmp_path: Path, deleted: int) -> None:
    n = template.size
    kept = tmp_path / "checkpoint.txt"
    kept.write_text(take_checkpoint(ledger))
    tamper(ledger, "DELETE FROM audit_entries WHERE seq > ?", (n - deleted,))
    tamper(ledger, "DELETE FROM audit_checkpoints")  # the stored checkpoint would tell: gone too
    assert verify(ledger).entries == n - deleted  # the chain walk alone cannot tell
    assert broken(ledger, kept.read_text()) == (n - deleted + 1, "tail_deleted")


def test_a_tail_deleted_after_more_appends_is_caught_by_an_older_checkpoint(
        template: Template, ledger: Path) -> None:
    n = template.size
    kept = take_checkpoint(ledger)
    log_more(ledger, 6)
    tamper(ledger, "DELETE FROM audit_entries WHERE seq > ?", (n - 3,))
    tamper(ledger, "DELETE FROM audit_checkpoints")  # the stored checkpoint would tell: gone too
    assert verify(ledger).entries == n - 3
    assert broken(ledger, kept) == (n - 2, "tail_deleted")


def _rewrite_metadata(seq: int, entry: dict[str, Any]) -> None:
    entry["metadata"] = {**entry["metadata"], "rewritten": seq}


@pytest.mark.parametrize("start", ["first", "lifecycle", "last"])
def test_a_chain_rewritten_and_rehashed_is_caught_by_an_external_checkpoint(
        template: Template, ledger: Path, start: str) -> None:
    n = template.size
    kept = take_checkpoint(ledger)
    reforge(ledger, template.position(start), None, _rewrite_metadata)
    rebuild_merkle(ledger)  # a thorough attacker fixes the stored tree too
    tamper(ledger, "DELETE FROM audit_checkpoints")  # the stored checkpoint would tell: gone too
    assert verify(ledger).entries == n  # internally consistent
    assert broken(ledger, kept) == (n, "rewritten")


def test_a_rewrite_is_reported_at_the_checkpoints_size_when_the_log_has_grown_since(
        template: Template, ledger: Path) -> None:
    n = template.size
    kept = take_checkpoint(ledger)
    log_more(ledger, 9)
    reforge(ledger, 1, None, _rewrite_metadata)
    tamper(ledger, "DELETE FROM audit_checkpoints")  # the stored checkpoint would tell: gone too
    assert verify(ledger).entries == n + 9
    assert broken(ledger, kept) == (n, "rewritten")


def test_the_external_checkpoint_still_verifies_the_untouched_log(template: Template, ledger: Path) -> None:
    kept = take_checkpoint(ledger)
    log_more(ledger, 4)
    report = verify(ledger, kept)
    assert (report.entries, report.checkpoint_size) == (template.size + 4, template.size)


# ── checkpoints that are not what they claim ─────────────────────────────────


def _replace_line(note_text: str, index: int, line: str) -> str:
    lines = note_text.split("\n")
    lines[index] = line
    return "\n".join(lines)


def _resigned(note_text: str, **changes: Any) -> str:
    """The note's checkpoint (with ``changes``) signed by an attacker's key under the ledger's key name."""
    checkpoint, signatures = note.parse(note_text)
    fields = {"origin": checkpoint.origin, "size": checkpoint.size, "root_hash": checkpoint.root_hash,
              "timestamp": checkpoint.timestamp, **changes}
    return note.sign(note.Checkpoint(**fields), signatures[0][0], Ed25519PrivateKey.generate())


FORGERIES: list[Any] = [
    pytest.param(lambda t: _replace_line(t, 2, base64.b64encode(hashlib.sha256(b"x").digest()).decode()),
                 id="root_line_changed"),
    pytest.param(lambda t: _replace_line(t, 1, str(int(t.split("\n")[1]) - 5)), id="size_line_changed"),
    pytest.param(lambda t: _replace_line(t, 3, f"timestamp {LONG_AGO}"), id="timestamp_line_changed"),
    pytest.param(lambda t: _resigned(t), id="signed_by_another_key"),
    pytest.param(lambda t: _resigned(t, root_hash=hashlib.sha256(b"x").digest()),
                 id="forged_root_signed_by_another_key"),
    pytest.param(lambda t: t.split("\n\n")[0] + "\n\n", id="signature_removed"),
    pytest.param(lambda t: t.replace("\u2014 ", "- "), id="signature_line_malformed"),
]


@pytest.mark.parametrize("forge", FORGERIES)
def test_a_forged_checkpoint_is_refused(ledger: Path, forge: Callable[[str], str]) -> None:
    genuine = take_checkpoint(ledger)
    forged = forge(genuine)
    assert forged != genuine
    with Grantex(ledger, create=False) as gx, pytest.raises(CheckpointInvalid):
        gx.audit.verify(checkpoint=forged)


def test_a_checkpoint_of_another_developers_chain_is_refused(ledger: Path) -> None:
    with Grantex(ledger, create=False) as gx:
        other = create_developer(gx.ledger, "someone else")
        theirs = Grantex(gx.ledger, developer_id=other.id).audit.checkpoint()["signedCheckpoint"]
        assert gx.audit.public_key() == Grantex(gx.ledger, developer_id=other.id).audit.public_key()
        with pytest.raises(CheckpointInvalid, match="not this chain"):
            gx.audit.verify(checkpoint=theirs)


def test_a_checkpoint_of_another_ledger_is_refused(ledger: Path, tmp_path: Path) -> None:
    with Grantex(tmp_path / "other.db") as other:
        grant_for(other, ["calendar:read"])
        theirs = other.audit.checkpoint()["signedCheckpoint"]
        their_key = other.audit.public_key()
    with Grantex(ledger, create=False) as gx:
        with pytest.raises(CheckpointInvalid):
            gx.audit.verify(checkpoint=theirs)
        # Even when the caller vouches for the other ledger's key, its origin is not this chain.
        with pytest.raises(CheckpointInvalid, match="not this chain"):
            gx.audit.verify(checkpoint=theirs, public_key=their_key)


# ── the ledger will not sign over a tampered chain ───────────────────────────


def _change_after(template: Template, ledger: Path, attack: Callable[[Path, int], None],
                  offset: int) -> int:
    take_checkpoint(ledger)
    log_more(ledger, 6)
    k = template.size + offset
    attack(ledger, k)
    return k


@pytest.mark.parametrize(
    ("attack", "expected"),
    [pytest.param(change_action, lambda k: (k, "content_changed"), id="field_changed"),
     pytest.param(change_hash_column, lambda k: (k, "content_changed"), id="hash_changed"),
     pytest.param(change_and_rehash, lambda k: (k + 1, "link_broken"), id="rehashed"),
     pytest.param(delete_entry, lambda k: (k, "seq_gap"), id="deleted"),
     pytest.param(swap_with_next, lambda k: (k, "order_changed"), id="swapped")],
)
def test_no_new_checkpoint_over_an_entry_changed_since_the_last_one(
        template: Template, ledger: Path, attack: Callable[[Path, int], None], expected: ExpectFn) -> None:
    k = _change_after(template, ledger, attack, 2)
    with Grantex(ledger, create=False) as gx:
        before = len(gx.audit.checkpoints())
        with pytest.raises(ChainBroken) as err:
            gx.audit.checkpoint()
        assert (err.value.seq, err.value.reason) == expected(k)
        assert len(gx.audit.checkpoints()) == before


def test_no_new_checkpoint_over_the_first_entry_after_the_last_one_changed(
        template: Template, ledger: Path) -> None:
    # The first entry after the checkpoint must still link to the checkpoint's head.
    k = _change_after(template, ledger, change_and_rehash, 1)
    with Grantex(ledger, create=False) as gx, pytest.raises(ChainBroken) as err:
        gx.audit.checkpoint()
    assert (err.value.seq, err.value.reason) == (k + 1, "link_broken")


def test_no_new_checkpoint_over_a_tail_deleted_below_the_last_one(template: Template, ledger: Path) -> None:
    n = template.size
    take_checkpoint(ledger)
    tamper(ledger, "DELETE FROM audit_entries WHERE seq > ?", (n - 5,))
    with Grantex(ledger, create=False) as gx:
        with pytest.raises(ChainBroken) as err:
            gx.audit.checkpoint()
        assert (err.value.seq, err.value.reason) == (n - 4, "tail_deleted")
        assert [c["entryCount"] for c in gx.audit.checkpoints()] == [n]


@pytest.mark.parametrize("tree_too", [False, True], ids=["entries_only", "entries_and_tree"])
def test_no_new_checkpoint_over_a_rewritten_chain(template: Template, ledger: Path, tree_too: bool) -> None:
    n = template.size
    take_checkpoint(ledger)
    reforge(ledger, 1, None, _rewrite_metadata)
    if tree_too:
        rebuild_merkle(ledger)
    with Grantex(ledger, create=False) as gx, pytest.raises(ChainBroken) as err:
        gx.audit.checkpoint()
    assert (err.value.seq, err.value.reason) == (n, "rewritten")


@pytest.mark.parametrize("earlier_checkpoint", [False, True])
def test_a_new_checkpoint_is_never_signed_over_a_tree_that_does_not_match_the_entries(
        template: Template, ledger: Path, earlier_checkpoint: bool) -> None:
    """The stored Merkle nodes are an index: if one was altered, refuse, or sign what the entries say."""
    if earlier_checkpoint:
        take_checkpoint(ledger)
    more = 70 - template.size  # past 64 entries, so that perfect subtrees above the leaf are stored
    log_more(ledger, more)
    # The leaf of seq size + 3 (after any earlier checkpoint) and every node above it, consistently.
    rebuild_merkle(ledger, {template.size + 2: sha256_hex("forged leaf")})
    assert verify(ledger).entries == template.size + more  # the entries themselves are untouched
    with Grantex(ledger, create=False) as gx:
        try:
            signed = gx.audit.checkpoint()["signedCheckpoint"]
        except ChainBroken:
            return  # refused: fine
    # Signed: then the checkpoint must describe the chain that is in the file.
    assert verify(ledger, signed).checkpoint_size == template.size + more


# ── inclusion proofs ─────────────────────────────────────────────────────────

HEX = "0123456789abcdef"
B64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
TEXT_SUBSTITUTES = B64 + "= -_.:\n\u2014\"{}"


@dataclass(frozen=True)
class ProofCase:
    proof: dict[str, Any]
    key: str


@pytest.fixture(scope="module", params=["first", "action", "last"])
def proof_case(request: pytest.FixtureRequest, template: Template,
               tmp_path_factory: pytest.TempPathFactory) -> ProofCase:
    path = copy_ledger(template.path, tmp_path_factory.mktemp("proof") / "ledger.db")
    seq = template.position(request.param)
    with Grantex(path, create=False) as gx:
        gx.audit.checkpoint()
        entry_id = json.loads(entry_rows(path)[seq - 1][1])["id"]
        return ProofCase(gx.audit.prove(entry_id), gx.audit.public_key())


def test_an_inclusion_proof_verifies_with_only_the_public_key(
        template: Template, proof_case: ProofCase) -> None:
    checkpoint = verify_proof(json.loads(json.dumps(proof_case.proof)), proof_case.key)
    assert checkpoint.size == template.size == proof_case.proof["treeSize"]


def _string_variants(value: str, alphabet: str) -> Iterator[tuple[int, str, str]]:
    for i, old in enumerate(value):
        for new in alphabet:
            if new != old:
                yield i, new, value[:i] + new + value[i + 1:]


def _int_variants(value: int) -> Iterator[tuple[int, str, int]]:
    for i, new_text, text in _string_variants(str(value), "0123456789-"):
        try:
            yield i, new_text, int(text)
        except ValueError:
            continue


def _altered_proofs(proof: dict[str, Any], field: str) -> Iterator[tuple[str, dict[str, Any]]]:
    """Every single-character change of one field of the proof (and, for the path, its shape)."""
    value = proof[field]
    if field in ("leafIndex", "treeSize", "seq"):
        for i, new, altered in _int_variants(value):
            yield f"{field}[{i}]={new!r}", {**proof, field: altered}
    elif field == "proof":
        for n, element in enumerate(value):
            for i, new, altered in _string_variants(element, HEX + "g"):
                yield f"proof[{n}][{i}]={new!r}", {**proof, "proof": [*value[:n], altered, *value[n + 1:]]}
        yield "proof: last element dropped", {**proof, "proof": value[:-1]}
        yield "proof: element added", {**proof, "proof": [*value, value[0] if value else "00" * 32]}
        if len(value) > 1:
            yield "proof: reversed", {**proof, "proof": value[::-1]}
    elif field == "entryHash":
        for i, new, altered in _string_variants(value, HEX + "G"):
            yield f"entryHash[{i}]={new!r}", {**proof, field: altered}
    elif field == "preimage":
        for i, old in enumerate(value):
            new = "x" if old != "x" else "y"
            yield f"preimage[{i}]={new!r}", {**proof, field: value[:i] + new + value[i + 1:]}
    else:  # the checkpoint note, the entry id
        for i, new, altered in _string_variants(value, TEXT_SUBSTITUTES):
            yield f"{field}[{i}]={new!r}", {**proof, field: altered}


def _refused_alterations(proof_case: ProofCase, field: str) -> None:
    accepted = []
    tried = 0
    for label, altered in _altered_proofs(proof_case.proof, field):
        tried += 1
        try:
            verify_proof(altered, proof_case.key)
        except CheckpointInvalid as exc:  # ProofInvalid is one
            assert isinstance(exc, GrantexLocalError)
        else:
            accepted.append(label)
    assert tried > 0
    assert accepted == [], f"{len(accepted)} of {tried} altered proofs verified: {accepted[:10]}"


@pytest.mark.parametrize("field", ["preimage", "entryHash", "leafIndex", "treeSize", "proof", "checkpoint"])
def test_any_single_character_changed_in_a_proof_is_refused(proof_case: ProofCase, field: str) -> None:
    """``publicKey`` is not in the list: the verifier's key is the caller's trust anchor, not the proof's."""
    _refused_alterations(proof_case, field)


@pytest.mark.parametrize("field", ["entryId", "seq"])
def test_a_proof_is_refused_when_it_names_another_entry_than_the_one_it_proves(
        proof_case: ProofCase, field: str) -> None:
    """An auditor reads ``entryId``/``seq``: they must be the id in the preimage and leafIndex + 1."""
    _refused_alterations(proof_case, field)


def test_a_proof_from_another_ledger_key_is_refused(proof_case: ProofCase) -> None:
    name, _ = audit_checkpoints.parse_verifier_key(proof_case.key)
    stranger = audit_checkpoints.format_verifier_key(name, Ed25519PrivateKey.generate().public_key())
    with pytest.raises(CheckpointInvalid):
        verify_proof(proof_case.proof, stranger)
