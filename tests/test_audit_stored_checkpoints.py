"""Plain ``audit verify`` checks the chain against the signed checkpoints stored in the file.

The attacker holds the file: they drop the append-only triggers with raw sqlite3 (as
test_audit_tamper's tools do) and cut the tail, rewrite entries, or alter a stored
checkpoint. Every such change under a stored checkpoint must fail the plain verify
(library: ChainBroken naming the checkpoint and the first missing seq; CLI: exit 1),
while a rewrite of the whole file, key included, is caught only by a checkpoint kept
outside it, which the output says.
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest
from cli_helpers import fails, invoke, ok, ok_json
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from helpers import MovableClock, grant_for
from test_audit_tamper import _rewrite_metadata, entry_rows, rebuild_merkle, reforge, tamper, tamper_many

from grantex_local import ChainBroken, Grantex, Ledger
from grantex_local.audit import checkpoints as audit_checkpoints
from grantex_local.audit import note


def log_actions(gx: Grantex, count: int) -> None:
    grant = next(g for g in gx.grants.list().grants if g.parent_grant_id is None)
    gx.audit.log_many([{"agent_id": grant.agent_id, "grant_id": grant.grant_id, "action": "calendar.read",
                        "metadata": {"i": i}} for i in range(count)])


@pytest.fixture
def path(tmp_path: Path) -> Path:
    """A chain with two stored checkpoints (at ``small`` and ``large`` entries) and 3 entries after."""
    path = tmp_path / "ledger.db"
    with Grantex(Ledger(path, clock=MovableClock())) as gx:
        grant_for(gx, ["calendar:read"])
        log_actions(gx, 6)
        gx.audit.checkpoint()
        log_actions(gx, 8)
        gx.audit.checkpoint()
        log_actions(gx, 3)
    return path


def stored(path: Path) -> list[dict[str, object]]:
    with Grantex(path, create=False) as gx:
        return gx.audit.checkpoints()


def broken(path: Path, checkpoint: str | None = None) -> ChainBroken:
    with Grantex(path, create=False) as gx, pytest.raises(ChainBroken) as err:
        gx.audit.verify(checkpoint=checkpoint)
    return err.value


def test_an_intact_chain_verifies_against_every_stored_checkpoint(path: Path) -> None:
    sizes = [c["entryCount"] for c in stored(path)]
    total = len(entry_rows(path))
    assert len(sizes) == 2 and sizes[-1] < total  # entries after the last checkpoint are walked too
    with Grantex(path, create=False) as gx:
        report = gx.audit.verify()
    assert (report.entries, report.stored_checkpoints, report.checkpoint_size) == (total, 2, None)
    result = ok("--ledger", path, "audit", "verify")
    assert f"{total} entries intact" in result.stdout and "matches its 2 stored checkpoints" in result.stdout
    assert "only a checkpoint kept outside it" in result.stderr and "--against" in result.stderr
    chain = ok_json("--ledger", path, "audit", "verify")["chains"][0]
    assert chain["storedCheckpointsChecked"] == 2 and chain["entries"] == total


@pytest.mark.parametrize("cut", [1, 4])
def test_a_tail_deleted_with_raw_sqlite3_under_a_stored_checkpoint_fails_plain_verify(
        path: Path, cut: int) -> None:
    large = stored(path)[-1]
    keep = int(large["entryCount"]) - cut  # type: ignore[call-overload]
    # DELETE is refused by the trigger; an attacker drops it first (tamper does) and cuts the tail.
    tamper(path, "DELETE FROM audit_entries WHERE seq > ?", (keep,))
    assert len(entry_rows(path)) == keep
    exc = broken(path)
    assert (exc.seq, exc.reason) == (keep + 1, "tail_deleted")
    assert str(large["checkpointId"]) in exc.message and f"entries {keep + 1}.." in exc.message
    result = fails(1, "--ledger", path, "audit", "verify")
    assert f"seq {keep + 1} (tail_deleted)" in result.stderr
    assert f"stored checkpoint {large['checkpointId']}" in result.stderr
    answer = json.loads(invoke("--ledger", path, "audit", "verify", "--json").stdout)
    assert (answer["valid"], answer["seq"], answer["reason"]) == (False, keep + 1, "tail_deleted")


def test_the_delete_trigger_alone_refuses_the_cut(path: Path) -> None:
    """Without dropping the trigger the delete does not happen: the test above really tampers."""
    conn = sqlite3.connect(path)
    with pytest.raises(sqlite3.IntegrityError, match="append-only"):
        conn.execute("DELETE FROM audit_entries WHERE seq > 1")
    conn.close()
    ok("--ledger", path, "audit", "verify")


def test_a_cut_below_the_older_checkpoint_names_the_larger_one(path: Path) -> None:
    small, large = stored(path)
    keep = int(small["entryCount"]) - 2  # type: ignore[call-overload]
    tamper(path, "DELETE FROM audit_entries WHERE seq > ?", (keep,))
    exc = broken(path)
    assert (exc.seq, exc.reason) == (keep + 1, "tail_deleted")
    assert str(large["checkpointId"]) in exc.message


def test_a_rewrite_under_a_stored_checkpoint_is_named(path: Path) -> None:
    small = stored(path)[0]
    reforge(path, 3, None, _rewrite_metadata)  # re-hashed and re-linked: the walk alone is satisfied
    rebuild_merkle(path)
    exc = broken(path)
    assert (exc.seq, exc.reason) == (small["entryCount"], "rewritten")
    assert str(small["checkpointId"]) in exc.message
    assert "(rewritten)" in fails(1, "--ledger", path, "audit", "verify").stderr


def test_a_rewrite_after_the_last_stored_checkpoint_is_not_theirs_to_catch(path: Path) -> None:
    """Entries after the last checkpoint are covered by the chain walk only (hence: checkpoint often)."""
    large = int(stored(path)[-1]["entryCount"])  # type: ignore[call-overload]
    reforge(path, large + 1, None, _rewrite_metadata)
    with Grantex(path, create=False) as gx:
        assert gx.audit.verify().entries == len(entry_rows(path))


def test_an_altered_stored_checkpoint_fails_plain_verify(path: Path) -> None:
    small = stored(path)[0]
    forged = str(small["signedCheckpoint"]).split("\n")
    forged[1] = str(int(forged[1]) + 1)  # claims one entry more, signature left as it was
    tamper(path, "UPDATE audit_checkpoints SET note = ? WHERE id = ?",
           ("\n".join(forged), small["checkpointId"]))
    exc = broken(path)
    assert exc.reason == "checkpoint_invalid" and str(small["checkpointId"]) in exc.message
    assert "(checkpoint_invalid)" in fails(1, "--ledger", path, "audit", "verify").stderr


def test_a_checkpoint_row_whose_columns_disagree_with_its_signed_note_fails(path: Path) -> None:
    small = stored(path)[0]
    tamper(path, "UPDATE audit_checkpoints SET size = size - 1 WHERE id = ?", (small["checkpointId"],))
    assert broken(path).reason == "checkpoint_invalid"


def test_only_an_outside_checkpoint_survives_a_rewrite_of_the_whole_file(path: Path, tmp_path: Path) -> None:
    """Cut the tail, replace the checkpoint key, re-sign every stored checkpoint: the file agrees
    with itself again, and only the checkpoint (and key) kept elsewhere tell."""
    kept, real_key = tmp_path / "kept.checkpoint", tmp_path / "real.pub"
    ok("--ledger", path, "audit", "checkpoint", "--out", kept)
    real_key.write_text(ok("--ledger", path, "audit", "public-key").stdout)
    total = len(entry_rows(path))
    tamper(path, "DELETE FROM audit_entries WHERE seq > ?", (total - 2,))
    tamper(path, "DELETE FROM audit_checkpoints WHERE size > ?", (total - 2,))
    attacker = Ed25519PrivateKey.generate()
    with Ledger(path, create=False) as ledger:
        name = audit_checkpoints.key_name(ledger)
        rows = [(r["id"], r["note"]) for r in ledger.query("SELECT id, note FROM audit_checkpoints")]
    statements: list[tuple[str, tuple[object, ...]]] = [
        ("UPDATE checkpoint_keys SET public_key = ?", (note.public_key_bytes(attacker.public_key()),))]
    for checkpoint_id, text in rows:
        statements.append(("UPDATE audit_checkpoints SET note = ? WHERE id = ?",
                           (note.sign(note.parse(text)[0], name, attacker), checkpoint_id)))
    tamper_many(path, statements)
    assert "matches its 2 stored checkpoints" in ok("--ledger", path, "audit", "verify").stdout  # fooled...
    outside = fails(1, "--ledger", path, "audit", "verify", "--against", kept, "--key", real_key)
    assert f"seq {total - 1} (tail_deleted)" in outside.stderr  # ...but not the checkpoint kept outside
