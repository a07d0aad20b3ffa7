"""The audit and export commands, run against real ledger files.

Tampering is done the way someone with the file would do it: drop the
append-only triggers with sqlite3 and edit or delete rows behind the app. A
failed check must exit 1 with one ``error:`` line naming where it broke; bad
usage exits 2.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
from dataclasses import dataclass
from pathlib import Path

import click
import pytest
from cli_helpers import fails, invoke, ok, ok_json
from helpers import grant_for

from grantex_local import Grantex, Ledger, developers
from grantex_local.audit import checkpoints
from grantex_local.cli import cli as cli_group
from grantex_local.export import BUNDLE_FILES

VECTORS = Path(__file__).resolve().parent / "vectors" / "audit_hash_vectors.json"  # copy of ../shared




@dataclass(frozen=True)
class Trail:
    path: Path
    developer: str
    agent: str
    grant: str
    entries: list[str]
    partner: str
    partner_agent: str


@pytest.fixture
def trail(tmp_path: Path) -> Trail:
    path = tmp_path / "ledger.db"
    ok("--ledger", path, "init")
    with Grantex(path, create=False) as gx:
        token = grant_for(gx, ["calendar:read", "files:read"], principal="user_alice")
        grant = gx.grants.get(token.grant_id)
        logged = gx.audit.log_many([
            {"agent_id": grant.agent_id, "grant_id": grant.id,
             "action": "calendar.read" if i % 2 else "files.read",
             "status": "failure" if i == 7 else "success", "metadata": {"i": i, "where": "café"}}
            for i in range(10)])
        partner = developers.create_developer(gx.ledger, "acme", sandbox=True)
        pgx = Grantex(gx.ledger, developer_id=partner.id)
        bot_token = grant_for(pgx, ["calendar:read"], principal="user_bob", agent_name="acme-bot")
        bot = pgx.grants.get(bot_token.grant_id).agent_id
        pgx.audit.log(agent_id=bot, grant_id=bot_token.grant_id, action="calendar.read")
        return Trail(path, gx.developer_id, grant.agent_id, grant.id, [e.entry_id for e in logged],
                     partner.id, bot)


def tamper(path: Path, sql: str, params: tuple = (), *, triggers: tuple[str, ...] = ()) -> None:
    """Edit the file behind the app's back, as anyone with write access could."""
    conn = sqlite3.connect(path)
    for trigger in triggers:
        conn.execute(f"DROP TRIGGER {trigger}")
    conn.execute(sql, params)
    conn.commit()
    conn.close()


def seq_of(trail: Trail, entry_id: str) -> int:
    with Ledger(trail.path, create=False) as ledger:
        return ledger.query_one("SELECT seq FROM audit_entries WHERE id = ?", (entry_id,))[0]


# ── the command set ──────────────────────────────────────────────────────────


def test_the_audit_and_export_commands_exist_with_help() -> None:
    audit = cli_group.commands["audit"]
    assert isinstance(audit, click.Group)
    assert set(audit.commands) == {"list", "show", "log", "verify", "checkpoint", "checkpoints", "prove",
                                   "verify-proof", "public-key"}
    others = [cli_group.commands["export"], cli_group.commands["verify-export"]]
    for command in [*audit.commands.values(), *others]:
        assert (command.help or "").strip()
        assert any("--ledger" in p.opts for p in command.params)
        for param in command.params:
            if isinstance(param, click.Option):
                assert (param.help or "").strip(), f"{command.name} {param.opts}"


# ── list, show, log ──────────────────────────────────────────────────────────


def test_audit_list_shows_every_chain_oldest_first(trail: Trail) -> None:
    text = ok("--ledger", trail.path, "audit", "list").stdout
    header = text.splitlines()[0].split()
    assert header == ["SEQ", "TIMESTAMP", "ACTION", "STATUS", "AGENT", "GRANT", "DEVELOPER", "FLAGS"]
    assert "calendar.read" in text and trail.partner in text
    listed = ok_json("--ledger", trail.path, "audit", "list")
    entries = listed["entries"]
    assert {e["developerId"] for e in entries} == {trail.developer, trail.partner}
    mine = [e["seq"] for e in entries if e["developerId"] == trail.developer]
    assert mine == sorted(mine) and listed["page"] == 1 and listed["pageSize"] == 100


def test_audit_list_filters_and_pages(trail: Trail) -> None:
    def seqs(*args: object) -> list[int]:
        return [e["seq"] for e in ok_json("--ledger", trail.path, "audit", "list", *args)["entries"]]

    first = seq_of(trail, trail.entries[0])
    assert len(seqs("--agent", trail.agent, "--action", "calendar.read")) == 5
    assert seqs("--status", "failure") == [first + 7]
    by_grant = seqs("--grant", trail.grant, "--principal", "user_alice")
    assert set(range(first, first + 10)) < set(by_grant)  # and the grant's own lifecycle entries
    bob = ok_json("--ledger", trail.path, "audit", "list", "--principal", "user_bob")["entries"]
    assert bob and {e["developerId"] for e in bob} == {trail.partner}
    assert {e["seq"] for e in bob} < set(seqs("--developer", trail.partner))
    assert seqs("--developer", trail.developer, "--page", "2", "--page-size", "3") == [4, 5, 6]
    newest = seqs("--developer", trail.developer, "--newest-first", "--page-size", "2")
    assert newest == [first + 9, first + 8]
    with Grantex(trail.path, create=False) as gx:
        stamps = [gx.audit.get(e).timestamp for e in trail.entries]
    window = seqs("--since", stamps[0], "--until", "2999-01-01T00:00:00Z", "--agent", trail.agent)
    assert window[0] <= first and window[-1] == first + 9
    assert seqs("--since", "2999-01-01T00:00:00Z") == []
    assert "no audit entries" in ok("--ledger", trail.path, "audit", "list", "--since", "2999-01-01").stdout
    assert "ISO-8601" in fails(2, "--ledger", trail.path, "audit", "list", "--since", "yesterday").stderr
    fails(2, "--ledger", trail.path, "audit", "list", "--page", "0")


def test_actions_under_a_revoked_grant_are_flagged(trail: Trail) -> None:
    ok("--ledger", trail.path, "grants", "revoke", trail.grant, "--yes")
    logged = ok_json("--ledger", trail.path, "audit", "log", "--agent", trail.agent, "--grant", trail.grant,
                     "--action", "calendar.read", "--status", "blocked")
    text = ok("--ledger", trail.path, "audit", "list", "--grant", trail.grant).stdout
    flagged = [line for line in text.splitlines() if "! after_revocation" in line]
    assert len(flagged) == 1 and flagged[0].split()[0] == str(logged["seq"])
    assert "! = logged under a grant that was already revoked or expired" in text
    shown = ok("--ledger", trail.path, "audit", "show", logged["entryId"]).stdout
    assert "! after_revocation" in shown
    entries = ok_json("--ledger", trail.path, "audit", "list", "--grant", trail.grant)["entries"]
    assert [e["flags"] for e in entries if e["flags"]] == [["after_revocation"]]


def test_audit_show(trail: Trail) -> None:
    entry_id = trail.entries[3]
    text = ok("--ledger", trail.path, "audit", "show", entry_id).stdout
    assert f"entry      {entry_id}" in text
    assert "metadata:\n{\n  \"i\": 3,\n  \"where\": \"café\"\n}" in text
    shown = ok_json("--ledger", trail.path, "audit", "show", entry_id)
    assert shown["entryId"] == entry_id and shown["metadata"] == {"i": 3, "where": "café"}
    assert "not found" in fails(2, "--ledger", trail.path, "audit", "show", "alog_nope").stderr


def test_audit_log_appends_as_the_agents_developer(trail: Trail) -> None:
    logged = ok_json("--ledger", trail.path, "audit", "log", "--agent", trail.partner_agent,
                     "--grant", ok_json("--ledger", trail.path, "grants", "list", "--agent",
                                        trail.partner_agent)["grants"][0]["grantId"],
                     "--action", "files.sync", "--metadata", '{"files": 3, "ok": true}')
    assert logged["developerId"] == trail.partner and logged["metadata"] == {"files": 3, "ok": True}
    text = ok("--ledger", trail.path, "audit", "log", "--agent", trail.agent, "--grant", trail.grant,
              "--action", "payment.initiated", "--status", "failure", "--metadata", "-",
              input='{"amount": 420}').stdout
    assert "payment.initiated" in text and "failure" in text
    ok("--ledger", trail.path, "audit", "verify")


@pytest.mark.parametrize("args", [
    ["--metadata", "{not json"],
    ["--metadata", "[1, 2]"],
    ["--metadata", '{"x": NaN}'],
    ["--action", "grantex.grant.revoked"],
])
def test_audit_log_refuses_bad_input(trail: Trail, args: list[str]) -> None:
    base = {"--agent": trail.agent, "--grant": trail.grant, "--action": "x.read"}
    for key, value in zip(args[::2], args[1::2], strict=True):
        base[key] = value
    result = invoke("--ledger", trail.path, "audit", "log", *[x for kv in base.items() for x in kv])
    assert result.exit_code == 2, result.output


def test_audit_log_refuses_another_agents_grant(trail: Trail) -> None:
    fails(2, "--ledger", trail.path, "audit", "log", "--agent", trail.partner_agent, "--grant", trail.grant,
          "--action", "x.read")


def test_audit_log_shows_the_flag_audit_list_shows_for_the_same_entry(trail: Trail) -> None:
    ok("--ledger", trail.path, "grants", "revoke", trail.grant, "--yes")
    args = ("--ledger", trail.path, "audit", "log", "--agent", trail.agent, "--grant", trail.grant,
            "--action", "calendar.read")
    logged = ok_json(*args)
    listed = ok_json("--ledger", trail.path, "audit", "list", "--grant", trail.grant)["entries"]
    assert logged["flags"] == ["after_revocation"] and listed[-1] == logged
    text = ok(*args).stdout
    assert "flags      ! after_revocation" in text and "already revoked" in text
    table = ok("--ledger", trail.path, "audit", "list", "--grant", trail.grant).stdout.splitlines()
    assert sum(line.endswith("! after_revocation") for line in table) == 2  # the two logged above


def test_an_append_reports_the_flags_a_read_of_it_gives(tmp_path: Path) -> None:
    """Library level, both flags: under a live grant none, after its expiry after_expiry."""
    from helpers import MovableClock

    clock = MovableClock()
    with Grantex(Ledger(tmp_path / "l.db", clock=clock)) as gx:
        token = grant_for(gx, ["calendar:read"], expires_in="1h")
        who = {"agent_id": gx.grants.get(token.grant_id).agent_id, "grant_id": token.grant_id}
        assert gx.audit.log(**who, action="calendar.read").flags == ()
        clock.advance(3601)
        late = gx.audit.log_many([{**who, "action": "calendar.read"}] * 2)
        assert [e.flags for e in late] == [("after_expiry",)] * 2
        assert [gx.audit.get(e.entry_id).flags for e in late] == [e.flags for e in late]


# ── verify ───────────────────────────────────────────────────────────────────


def test_audit_verify_passes_on_a_good_ledger(trail: Trail) -> None:
    text = ok("--ledger", trail.path, "audit", "verify").stdout
    assert f"{trail.developer}: " in text and f"{trail.partner}: " in text and "intact" in text
    report = ok_json("--ledger", trail.path, "audit", "verify", "--developer", trail.partner)
    assert report["valid"] and [c["developerId"] for c in report["chains"]] == [trail.partner]
    fails(2, "--ledger", trail.path, "audit", "verify", "--developer", "dev_nope")
    assert invoke("--ledger", trail.path, "audit", "verify", "--key", "x+y+z").exit_code == 2


def test_audit_verify_finds_a_changed_entry(trail: Trail) -> None:
    seq = seq_of(trail, trail.entries[4])
    tamper(trail.path, "UPDATE audit_entries SET preimage = replace(preimage, '\"i\":4', '\"i\":5') "
           "WHERE seq = ? AND developer_id = ?", (seq, trail.developer),
           triggers=("audit_entries_no_update",))
    result = fails(1, "--ledger", trail.path, "audit", "verify")
    assert f"error: audit chain broken at seq {seq} (content_changed)" in result.stderr
    assert trail.developer in result.stderr
    answer = json.loads(fails(1, "--ledger", trail.path, "audit", "verify", "--json").stdout)
    assert (answer["valid"], answer["seq"], answer["reason"]) == (False, seq, "content_changed")
    ok("--ledger", trail.path, "audit", "verify", "--developer", trail.partner)  # the other chain is fine


def test_audit_verify_finds_a_deleted_middle_entry(trail: Trail) -> None:
    seq = seq_of(trail, trail.entries[5])
    tamper(trail.path, "DELETE FROM audit_entries WHERE seq = ? AND developer_id = ?", (seq, trail.developer),
           triggers=("audit_entries_no_delete",))
    assert f"seq {seq} (seq_gap)" in fails(1, "--ledger", trail.path, "audit", "verify").stderr


# ── checkpoints ──────────────────────────────────────────────────────────────


def test_checkpoint_prints_stores_and_lists(trail: Trail) -> None:
    note = ok("--ledger", trail.path, "audit", "checkpoint").stdout
    lines = note.split("\n")
    assert lines[0].endswith(f"/{trail.developer}") and lines[4] == "" and lines[5].startswith("\u2014 ")
    made = ok_json("--ledger", trail.path, "audit", "checkpoint", "--developer", trail.partner)
    assert made["developerId"] == trail.partner and made["signedCheckpoint"].count("\n\n") == 1
    listed = ok_json("--ledger", trail.path, "audit", "checkpoints")["checkpoints"]
    assert {c["developerId"] for c in listed} == {trail.developer, trail.partner}
    text = ok("--ledger", trail.path, "audit", "checkpoints", "--developer", trail.partner).stdout
    assert made["checkpointId"] in text and trail.developer not in text


def test_no_checkpoints_yet(trail: Trail) -> None:
    assert "no checkpoints" in ok("--ledger", trail.path, "audit", "checkpoints").stdout


def test_checkpoint_kept_outside_catches_a_deleted_tail(trail: Trail, tmp_path: Path) -> None:
    kept = tmp_path / "kept.checkpoint"
    key = tmp_path / "checkpoint.pub"
    said = ok("--ledger", trail.path, "audit", "checkpoint", "--out", kept).stdout
    assert str(kept) in said and kept.read_text().count("\n\n") == 1
    key.write_text(ok("--ledger", trail.path, "audit", "public-key").stdout)
    report = ok_json("--ledger", trail.path, "audit", "verify", "--against", kept, "--key", key)
    size = report["chains"][0]["verifiedAgainstCheckpointSize"]
    assert report["chains"][0]["developerId"] == trail.developer and size == report["chains"][0]["entries"]
    # Delete the newest two entries and their Merkle nodes, as someone covering tracks would.
    keep = size - 2
    tamper(trail.path, "DELETE FROM audit_entries WHERE developer_id = ? AND seq > ?",
           (trail.developer, keep), triggers=("audit_entries_no_delete",))
    tamper(trail.path, "DELETE FROM audit_merkle WHERE developer_id = ? AND (idx + 1) * (1 << level) > ?",
           (trail.developer, keep), triggers=("audit_merkle_no_delete",))
    # The checkpoint stored in the file sees it: plain verify fails, and a new checkpoint is refused.
    assert f"seq {keep + 1} (tail_deleted)" in fails(1, "--ledger", trail.path, "audit", "verify").stderr
    assert "tail_deleted" in fails(1, "--ledger", trail.path, "audit", "checkpoint").stderr
    # Drop the stored checkpoints as well: the chain that is left links up perfectly...
    tamper(trail.path, "DELETE FROM audit_checkpoints", triggers=("audit_checkpoints_no_delete",))
    ok("--ledger", trail.path, "audit", "verify")
    result = fails(1, "--ledger", trail.path, "audit", "verify", "--against", kept)  # ...but not to this
    assert f"seq {keep + 1} (tail_deleted)" in result.stderr
    fails(1, "--ledger", trail.path, "audit", "verify", "--against", kept, "--key", key)


def test_a_forged_checkpoint_file_fails(trail: Trail, tmp_path: Path) -> None:
    kept = tmp_path / "kept.checkpoint"
    ok("--ledger", trail.path, "audit", "checkpoint", "--out", kept)
    lines = kept.read_text().split("\n")
    lines[2] = "A" * 43 + "="  # another root, same shape
    forged = tmp_path / "forged.checkpoint"
    forged.write_text("\n".join(lines))
    assert "signature" in fails(1, "--ledger", trail.path, "audit", "verify", "--against", forged).stderr
    lines[1] = "1"
    forged.write_text("\n".join(lines))
    fails(1, "--ledger", trail.path, "audit", "verify", "--against", forged)
    garbage = tmp_path / "garbage.checkpoint"
    garbage.write_text("hello\n")
    fails(1, "--ledger", trail.path, "audit", "verify", "--against", garbage)
    garbage.write_bytes(b"\xff\xfe binary\n\n")
    fails(1, "--ledger", trail.path, "audit", "verify", "--against", garbage)


def test_a_checkpoint_of_another_ledger_fails(trail: Trail, tmp_path: Path) -> None:
    other = tmp_path / "other.db"
    ok("--ledger", other, "init")
    kept = tmp_path / "other.checkpoint"
    ok("--ledger", other, "audit", "checkpoint", "--out", kept)
    assert "not a chain in this ledger" in fails(1, "--ledger", trail.path, "audit", "verify", "--against",
                                                 kept).stderr


def test_a_rewritten_chain_fails_against_the_kept_checkpoint(trail: Trail, tmp_path: Path) -> None:
    """Rewrite one entry and re-hash everything after it: links hold, the kept root does not."""
    kept = tmp_path / "kept.checkpoint"
    ok("--ledger", trail.path, "audit", "checkpoint", "--out", kept)
    conn = sqlite3.connect(trail.path)
    conn.execute("DROP TRIGGER audit_entries_no_update")
    rows = conn.execute("SELECT seq, preimage, hash FROM audit_entries WHERE developer_id = ? ORDER BY seq",
                        (trail.developer,)).fetchall()
    previous = None
    for seq, text, _ in rows:
        new = text if previous is None else text.replace(f'"prevHash":"{rows[seq - 2][2]}"',
                                                         f'"prevHash":"{previous}"')
        if seq == 3:
            new = new.replace('"status":"success"', '"status":"failure"')
        previous = hashlib.sha256(new.encode()).hexdigest()
        conn.execute("UPDATE audit_entries SET preimage = ?, hash = ? WHERE developer_id = ? AND seq = ?",
                     (new, previous, trail.developer, seq))
    conn.commit()
    conn.close()
    stored = fails(1, "--ledger", trail.path, "audit", "verify").stderr  # the stored checkpoint sees it...
    assert "(rewritten)" in stored and "stored checkpoint ckpt_" in stored
    tamper(trail.path, "DELETE FROM audit_checkpoints", triggers=("audit_checkpoints_no_delete",))
    ok("--ledger", trail.path, "audit", "verify")  # ...until it is dropped too; the kept one still does
    assert "(rewritten)" in fails(1, "--ledger", trail.path, "audit", "verify", "--against", kept).stderr


# ── inclusion proofs ─────────────────────────────────────────────────────────


def test_prove_and_verify_proof_offline(trail: Trail, tmp_path: Path) -> None:
    entry_id = trail.entries[2]
    assert "no checkpoint covers" in fails(2, "--ledger", trail.path, "audit", "prove", entry_id).stderr
    ok("--ledger", trail.path, "audit", "checkpoint")
    printed = json.loads(ok("--ledger", trail.path, "audit", "prove", entry_id).stdout)
    proof = tmp_path / "proof.json"
    assert str(proof) in ok("--ledger", trail.path, "audit", "prove", entry_id, "--out", proof).stdout
    assert json.loads(proof.read_text())["entryHash"] == printed["entryHash"]
    key = ok("--ledger", trail.path, "audit", "public-key").stdout.strip()
    with Ledger(trail.path, create=False) as ledger:
        assert key == checkpoints.verifier_key(ledger)
    key_file = tmp_path / "key.pub"
    key_file.write_text(key + "\n")
    # No ledger needed: point --ledger at nothing at all.
    nowhere = tmp_path / "nowhere.db"
    text = ok("--ledger", nowhere, "audit", "verify-proof", proof, "--key", key).stdout
    assert text.startswith(f"valid: entry {entry_id} (seq {printed['seq']})")
    answer = ok_json("audit", "verify-proof", proof, "--key", key_file)
    assert answer["valid"] and answer["entryId"] == entry_id and answer["treeSize"] == printed["treeSize"]
    assert not nowhere.exists()


@pytest.mark.parametrize("field", ["preimage", "proof", "leafIndex", "checkpoint", "entryHash"])
def test_an_altered_proof_fails(trail: Trail, tmp_path: Path, field: str) -> None:
    ok("--ledger", trail.path, "audit", "checkpoint")
    proof = json.loads(ok("--ledger", trail.path, "audit", "prove", trail.entries[2]).stdout)
    key = ok("--ledger", trail.path, "audit", "public-key").stdout.strip()
    if field == "preimage":
        proof["preimage"] = proof["preimage"].replace('"i":2', '"i":3')
    elif field == "proof":
        proof["proof"][0] = "00" * 32
    elif field == "leafIndex":
        proof["leafIndex"] += 1
    elif field == "checkpoint":
        proof["checkpoint"] = proof["checkpoint"].replace("\n", "\n\n", 1)
    else:
        proof["entryHash"] = "0" * 64
    path = tmp_path / "proof.json"
    path.write_text(json.dumps(proof))
    assert "proof is invalid" in fails(1, "audit", "verify-proof", path, "--key", key).stderr
    answer = json.loads(fails(1, "audit", "verify-proof", path, "--key", key, "--json").stdout)
    assert answer["valid"] is False and answer["error"] in ("PROOF_INVALID", "CHECKPOINT_INVALID")


def test_verify_proof_with_the_wrong_key_or_no_proof(trail: Trail, tmp_path: Path) -> None:
    ok("--ledger", trail.path, "audit", "checkpoint")
    path = tmp_path / "proof.json"
    ok("--ledger", trail.path, "audit", "prove", trail.entries[0], "--out", path)
    other = tmp_path / "other.db"
    ok("--ledger", other, "init")
    foreign = ok("--ledger", other, "audit", "public-key").stdout.strip()
    fails(1, "audit", "verify-proof", path, "--key", foreign)
    assert invoke("audit", "verify-proof", path, "--key", "not-a-key").exit_code == 2
    assert invoke("audit", "verify-proof", path).exit_code == 2  # --key is required
    path.write_text("not json")
    fails(1, "audit", "verify-proof", path, "--key", foreign)


# ── progress on a long chain ─────────────────────────────────────────────────


def test_a_long_chain_verifies_without_a_bar_when_stderr_is_not_a_terminal(tmp_path: Path) -> None:
    """The bar is for a person at a terminal (tests/test_progress.py drives one through a pty);
    under a runner, in a pipe or a log, stderr keeps only the note it always had."""
    path = tmp_path / "big.db"
    ok("--ledger", path, "init")
    with Grantex(path, create=False) as gx:
        token = grant_for(gx, ["calendar:read"])
        grant = gx.grants.get(token.grant_id)
        for chunk in range(11):
            gx.audit.log_many([{"agent_id": grant.agent_id, "grant_id": grant.id, "action": "calendar.read",
                                "metadata": {"chunk": chunk, "i": i}} for i in range(5000)])
        developer = gx.developer_id
    result = ok("--ledger", path, "audit", "verify")
    assert "verifying" not in result.stderr and "entries/s" not in result.stderr
    assert f"{developer}: 55004 entries intact" in result.stdout
    assert ok_json("--ledger", path, "audit", "verify")["chains"][0]["entries"] > 55_000


# ── export bundles ───────────────────────────────────────────────────────────


def test_export_then_verify_export(trail: Trail, tmp_path: Path) -> None:
    ok("--ledger", trail.path, "audit", "checkpoint")
    out = tmp_path / "bundle"
    shown = ok("--ledger", trail.path, "export", out)
    assert "audit entries" in shown.stdout and "verify-export" in shown.stderr
    assert "already exists" in fails(2, "--ledger", trail.path, "export", out).stderr
    manifest = ok_json("--ledger", trail.path, "export", out, "--force")
    assert sorted(manifest["files"]) == sorted(BUNDLE_FILES)
    # Without a key: valid, with a warning that the key came from the bundle itself.
    checked = ok("verify-export", out)
    assert checked.stdout.startswith("valid: ")
    assert checked.stderr.startswith("warning: ") and "out of band" in checked.stderr
    key = ok("--ledger", trail.path, "audit", "public-key").stdout.strip()
    with_key = ok("--ledger", tmp_path / "nowhere.db", "verify-export", out, "--key", key)
    assert with_key.stderr == ""
    summary = ok_json("verify-export", out, "--key", key)
    assert summary["keySource"] == "given"
    assert summary["entries"] == sum(c["entries"] for c in manifest["chains"])


@pytest.mark.parametrize("name", ["audit_entries.jsonl", "grants.csv", "jwks.json", "manifest.json",
                                  "manifest.sig"])
def test_verify_export_names_an_altered_file(trail: Trail, tmp_path: Path, name: str) -> None:
    out = tmp_path / "bundle"
    ok("--ledger", trail.path, "export", out)
    with open(out / name, "a", encoding="utf-8") as handle:
        handle.write("tampered\n")
    result = fails(1, "verify-export", out)
    assert result.stderr.startswith("error: export does not verify: ") and name in result.stderr
    answer = json.loads(fails(1, "verify-export", out, "--json").stdout)
    assert answer["valid"] is False and answer["error"] == "EXPORT_INVALID" and name in answer["message"]


def test_verify_export_of_a_missing_path_or_bad_key_is_usage(trail: Trail, tmp_path: Path) -> None:
    assert invoke("verify-export", tmp_path / "nothing").exit_code == 2
    out = tmp_path / "bundle"
    ok("--ledger", trail.path, "export", out)
    assert invoke("verify-export", out, "--key", "garbage").exit_code == 2


def test_export_refuses_a_broken_chain(trail: Trail, tmp_path: Path) -> None:
    seq = seq_of(trail, trail.entries[1])
    tamper(trail.path, "UPDATE audit_entries SET hash = ? WHERE seq = ? AND developer_id = ?",
           ("0" * 64, seq, trail.developer), triggers=("audit_entries_no_update",))
    assert f"seq {seq} (content_changed)" in fails(1, "--ledger", trail.path, "export", tmp_path / "b").stderr
    assert not (tmp_path / "b").exists()


def _hosted(tmp_path: Path, tamper_amount: bool) -> Path:
    entries = []
    for vector in json.loads(VECTORS.read_text())["vectors"]:
        fields = dict(vector["fields"])
        entries.append({"entryId": fields.pop("id"), **fields,
                        "metadata": json.loads(vector["metadata_json"]), "hash": vector["hash"]})
    if tamper_amount:
        entries[1]["metadata"]["amount"] = 42
    path = tmp_path / "hosted-audit.json"
    path.write_text(json.dumps({"generatedAt": "2026-02-01T13:00:00.000Z", "total": 3, "entries": entries}))
    return path


def test_verify_export_of_a_hosted_audit_export(tmp_path: Path) -> None:
    result = ok("verify-export", _hosted(tmp_path, False))
    assert result.stdout.startswith("valid: 3 audit entries in 1 chain(s)")
    assert "no signatures" in result.stderr
    broken = fails(1, "verify-export", _hosted(tmp_path, True))
    assert "seq 2 (content_changed)" in broken.stderr and "alog_01JZ0000000000000000000004" in broken.stderr


# ── library bugs found while writing these commands (they fail until the library is fixed) ──


def test_a_hashed_timestamp_that_is_not_text_is_a_broken_chain_not_a_crash(trail: Trail) -> None:
    # chain.verify_rows compares the preimage's timestamp (and id) with the previous entry's using
    # '<' and '<=' without checking they are strings: rewrite the newest entry with
    # "timestamp":null and its hash recomputed, and 'audit verify' dies with a TypeError (an
    # "internal error", exit 2) instead of exit 1 with the seq and a reason. Same for a numeric id.
    with Ledger(trail.path, create=False) as ledger:
        seq, text = ledger.query_one("SELECT seq, preimage FROM audit_entries WHERE developer_id = ? "
                                     "ORDER BY seq DESC LIMIT 1", (trail.developer,))
    cut = text.index('"timestamp":"')
    forged = text[:cut] + '"timestamp":null' + text[text.index('"', cut + 13) + 1:]
    tamper(trail.path, "UPDATE audit_entries SET preimage = ?, hash = ? WHERE developer_id = ? AND seq = ?",
           (forged, hashlib.sha256(forged.encode()).hexdigest(), trail.developer, seq),
           triggers=("audit_entries_no_update",))
    assert f"seq {seq} (" in fails(1, "--ledger", trail.path, "audit", "verify").stderr
