"""Export bundles: what goes in (everything an auditor needs, no secrets) and what verification catches.

Every attack here is made on real bundle files the way someone holding the
bundle would make it: flip a byte, append a line, delete or add a file,
re-sign the manifest with another key, or (an insider with the real key)
rewrite the audit entries and re-sign them, which the chain check must catch
on its own.
"""

from __future__ import annotations

import base64
import copy
import csv
import hashlib
import json
import shutil
import sqlite3
import tracemalloc
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from helpers import MovableClock, grant_for

from grantex_local import ChainBroken, Grantex, InvalidInput, Ledger, developers, policies
from grantex_local.audit import checkpoints
from grantex_local.audit.chain import chain_developers
from grantex_local.audit.checkpoints import format_verifier_key
from grantex_local.audit.hashing import preimage_text
from grantex_local.audit.note import CheckpointInvalid
from grantex_local.audit.trail import count_entries
from grantex_local.export import (
    BUNDLE_FILES,
    MANIFEST,
    SIGNATURE,
    TABLES,
    ExportInvalid,
    export_bundle,
    verify_bundle,
    verify_hosted_export,
)
from grantex_local.models import CreatePolicyParams

VECTORS = Path(__file__).resolve().parent / "vectors" / "audit_hash_vectors.json"  # copy of ../shared
ALL_FILES = (*BUNDLE_FILES, MANIFEST, SIGNATURE)


@dataclass
class World:
    """A ledger with two developers, tokens, consent records, policies, checkpoints, and its secrets."""

    path: Path
    secrets: list[str]
    partner: str


def build_world(path: Path, clock: MovableClock) -> World:
    secrets: list[str] = []
    with Grantex(Ledger(path, clock=clock)) as gx:
        root = grant_for(gx, ["calendar:read", "files:read"], principal="user_älice")
        secrets += [root.refresh_token, root.grant_token]
        refreshed = gx.tokens.refresh(refresh_token=root.refresh_token, agent_id=gx.grants.get(
            root.grant_id).agent_id)
        secrets += [refreshed.refresh_token, refreshed.grant_token]
        sub = gx.agents.register(name="helper", scopes=["calendar:read"])
        child = gx.grants.delegate(parent_grant_token=refreshed.grant_token, sub_agent_id=sub.id,
                                   scopes=["calendar:read"])
        secrets += [child.refresh_token, child.grant_token]
        gone = gx.agents.register(name="retired", scopes=[])
        gx.agents.delete(gone.id)
        gx.policies.create(name="no payments", effect="auto_deny", scopes=["payments:initiate"])
        gx.keys.rotate()
        secrets.append(developers.create_api_key(gx.ledger, gx.developer_id, "ci").key)
        grant = gx.grants.get(root.grant_id)
        gx.audit.log_many([{"agent_id": grant.agent_id, "grant_id": grant.id, "action": "calendar.read",
                            "metadata": {"i": i, "note": "café ☕", "n": 1.5e-7, "odd": "\U0001f600\ue000"}}
                           for i in range(25)])
        gx.audit.checkpoint()
        gx.audit.log(agent_id=grant.agent_id, grant_id=grant.id, action="files.read", status="failure")
        gx.audit.checkpoint()
        gx.audit.log(agent_id=grant.agent_id, grant_id=grant.id, action="files.read")

        partner = developers.create_developer(gx.ledger, "acme", sandbox=False)
        pgx = Grantex(gx.ledger, developer_id=partner.id)
        bot = pgx.agents.register(name="acme-bot", scopes=["calendar:read", "files:read"])
        policies.create(gx.ledger, partner.id, CreatePolicyParams(name="office hours", effect="allow",
                                                                  scopes=["calendar:read"]))
        request = pgx.authorize(agent_id=bot.id, user_id="user_bob", scopes=["files:read"], state="xyz")
        decision = pgx.consent.approve(request.request_id, decided_by="bob")
        assert decision.code is not None
        issued = pgx.tokens.exchange(code=decision.code, agent_id=bot.id)
        secrets += [decision.code, issued.refresh_token, issued.grant_token]
        unused = pgx.authorize(agent_id=bot.id, user_id="user_carol", scopes=["files:read"])
        secrets.append(pgx.consent.approve(unused.request_id).code or "")
        secrets.append(developers.create_api_key(gx.ledger, partner.id).key)
        pgx.audit.log(agent_id=bot.id, grant_id=issued.grant_id, action="files.read")
        pgx.audit.checkpoint()
    return World(path, secrets, partner.id)


@pytest.fixture
def world(tmp_path: Path, clock: MovableClock) -> World:
    return build_world(tmp_path / "ledger.db", clock)


@pytest.fixture(scope="module")
def pristine(tmp_path_factory: pytest.TempPathFactory) -> tuple[World, Path]:
    """One exported bundle, copied by the tests that damage it."""
    base = tmp_path_factory.mktemp("pristine")
    world = build_world(base / "ledger.db", MovableClock())
    with Ledger(world.path, create=False) as ledger:
        export_bundle(ledger, base / "bundle")
    return world, base / "bundle"


@pytest.fixture
def bundle(pristine: tuple[World, Path], tmp_path: Path) -> Path:
    copied = tmp_path / "bundle"
    shutil.copytree(pristine[1], copied)
    return copied


@pytest.fixture
def real_key(pristine: tuple[World, Path]) -> str:
    with Ledger(pristine[0].path, create=False) as ledger:
        return checkpoints.verifier_key(ledger)


def _lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def _write_lines(path: Path, rows: list[dict]) -> None:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")


def resign(bundle: Path, name: str, private: Ed25519PrivateKey, *, own_key: bool = False) -> None:
    """What someone holding ``private`` would do after editing files: fix the manifest and re-sign it."""
    manifest = json.loads((bundle / MANIFEST).read_text())
    if own_key:
        manifest["checkpointKey"] = format_verifier_key(name, private.public_key())
        (bundle / "checkpoint_key.pub").write_text(manifest["checkpointKey"] + "\n")
    for file, entry in manifest["files"].items():
        data = (bundle / file).read_bytes()
        entry["sha256"], entry["bytes"] = hashlib.sha256(data).hexdigest(), len(data)
        if "rows" in entry and file.endswith(".jsonl"):
            entry["rows"] = len(data.splitlines())
    raw = (json.dumps(manifest, indent=2, sort_keys=True, ensure_ascii=False) + "\n").encode()
    (bundle / MANIFEST).write_bytes(raw)
    (bundle / SIGNATURE).write_text(f"{name} {base64.b64encode(private.sign(raw)).decode()}\n")


def real_private(world: World) -> tuple[str, Ed25519PrivateKey]:
    with Ledger(world.path, create=False) as ledger:
        return checkpoints._private(ledger)


# ── a bundle round-trips ─────────────────────────────────────────────────────


def test_bundle_round_trips_and_counts_match_the_ledger(world: World, tmp_path: Path) -> None:
    out = tmp_path / "bundle"
    with Ledger(world.path, create=False) as ledger:
        manifest = export_bundle(ledger, out)
        expected = {
            "developers": "developers", "agents": "agents", "grants": "grants", "tokens": "tokens",
            "auth_requests": "auth_requests", "policies": "policies", "checkpoints": "audit_checkpoints",
        }
        counts = {t: ledger.query_one(f"SELECT count(*) FROM {table}")[0] for t, table in expected.items()}
        counts["audit_entries"] = count_entries(ledger)
        heads = {d: Grantex(ledger, developer_id=d).audit.verify() for d in chain_developers(ledger)}
        key = checkpoints.verifier_key(ledger)
        stored = {r["id"]: r["preimage"] for r in ledger.query("SELECT id, preimage FROM audit_entries")}
    assert sorted(p.name for p in out.iterdir()) == sorted(ALL_FILES)
    assert not [p.name for p in tmp_path.iterdir() if p.name.startswith(".")]  # no partial bundle
    summary = verify_bundle(out)
    assert summary["valid"] and summary["keySource"] == "bundle" and "out of band" in summary["warning"]
    assert summary["rows"] == counts and all(counts.values())
    assert {c["developerId"]: c["headHash"] for c in summary["chains"]} == {
        d: r.head_hash for d, r in heads.items()}
    assert {c["developerId"]: c["entries"] for c in manifest["chains"]} == {
        d: r.entries for d, r in heads.items()}
    given = verify_bundle(out, verifier_key=key)
    assert given["keySource"] == "given" and "warning" not in given
    # The exact hashed bytes travel with every entry, and the CSV holds the same rows.
    rows = _lines(out / "audit_entries.jsonl")
    assert {r["entryId"]: r["preimage"] for r in rows} == stored
    with open(out / "audit_entries.csv", newline="", encoding="utf-8") as handle:
        table = list(csv.DictReader(handle))
    assert [r["preimage"] for r in table] == [r["preimage"] for r in rows]
    assert json.loads(table[-1]["metadata"]) == rows[-1]["metadata"]
    agents = _lines(out / "agents.jsonl")
    assert all(a["didDocument"]["id"] == a["did"] for a in agents)
    assert any(a["status"] == "deleted" for a in agents)
    assert len(json.loads((out / "jwks.json").read_text())["keys"]) == 2  # the retired key too
    assert (out / "checkpoint_key.pub").read_text().strip() == key == manifest["checkpointKey"]


def test_rows_carry_only_their_allowed_columns(bundle: Path) -> None:
    for table, columns in TABLES.items():
        for row in _lines(bundle / f"{table}.jsonl"):
            assert set(row) <= set(columns), table
        with open(bundle / f"{table}.csv", newline="", encoding="utf-8") as handle:
            assert next(csv.reader(handle)) == list(columns)


def test_no_secrets_anywhere_in_the_bundle(pristine: tuple[World, Path]) -> None:
    world, bundle = pristine
    blobs = {p.name: p.read_bytes() for p in bundle.iterdir()}
    assert all(world.secrets)
    forbidden = [*world.secrets, *(developers.hash_secret(s) for s in world.secrets),
                 "PRIVATE KEY", "code_hash", "refresh_hash", "key_hash", "private_pem", "codeHash"]
    for name, data in blobs.items():
        for secret in forbidden:
            assert secret.encode() not in data, f"{secret[:12]}... found in {name}"
    with Ledger(world.path, create=False) as ledger:
        private_blobs = [bytes(r[0]) for r in ledger.query(
            "SELECT private_pem FROM signing_keys UNION ALL SELECT private_pem FROM checkpoint_keys "
            "UNION ALL SELECT private_pem FROM agent_keys WHERE private_pem IS NOT NULL")]
    for pem in private_blobs:
        body = b"".join(pem.splitlines()[1:-1])[:40]
        assert all(body not in data for data in blobs.values())
    for row in _lines(bundle / "tokens.jsonl"):
        assert set(row) <= {"jti", "grantId", "kid", "issuedAt", "expiresAt", "revokedAt", "refreshUsedAt"}
    assert all((bundle / n).stat().st_mode & 0o777 == 0o644 for n in ALL_FILES)


def test_export_refuses_an_existing_path_and_force_replaces_only_a_bundle(world: World,
                                                                          tmp_path: Path) -> None:
    out = tmp_path / "bundle"
    with Ledger(world.path, create=False) as ledger:
        export_bundle(ledger, out)
        first = (out / MANIFEST).read_bytes()
        with pytest.raises(InvalidInput, match="already exists"):
            export_bundle(ledger, out)
        export_bundle(ledger, out, force=True)
        assert (out / MANIFEST).read_bytes() != first
        precious = tmp_path / "home"
        precious.mkdir()
        (precious / "notes.txt").write_text("keep me")
        with pytest.raises(InvalidInput, match="refusing"):
            export_bundle(ledger, precious, force=True)
    assert (precious / "notes.txt").read_text() == "keep me"
    verify_bundle(out)
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []


def test_a_broken_chain_is_not_exported_and_leaves_nothing_behind(world: World, tmp_path: Path) -> None:
    conn = sqlite3.connect(world.path)
    seq = conn.execute("SELECT seq FROM audit_entries WHERE preimage LIKE '%\"i\":3,%'").fetchone()[0]
    conn.execute("DROP TRIGGER audit_entries_no_update")
    conn.execute("UPDATE audit_entries SET preimage = replace(preimage, 'café', 'cafe') WHERE seq = ? "
                 "AND developer_id != ?", (seq, world.partner))
    conn.commit()
    conn.close()
    with Ledger(world.path, create=False) as ledger, pytest.raises(ChainBroken) as err:
        export_bundle(ledger, tmp_path / "bundle")
    assert (err.value.seq, err.value.reason) == (seq, "content_changed")
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        p.name for p in tmp_path.iterdir() if p.name.startswith("ledger.db"))


# ── tampering with the files ─────────────────────────────────────────────────


def flip_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    middle = len(data) // 2
    data[middle] ^= 0x01
    path.write_bytes(bytes(data))


def append_line(path: Path) -> None:
    with open(path, "a", encoding="utf-8") as handle:
        handle.write('{"extra": true}\n')


@pytest.mark.parametrize("name", ALL_FILES)
@pytest.mark.parametrize("alter", [flip_byte, append_line], ids=["flip", "append"])
def test_any_altered_file_is_named(bundle: Path, name: str, alter: Callable[[Path], None],
                                   real_key: str) -> None:
    assert (bundle / name).stat().st_size > 0
    alter(bundle / name)
    for key in (None, real_key):
        with pytest.raises(ExportInvalid) as err:
            verify_bundle(bundle, verifier_key=key)
        assert name in str(err.value)


def test_a_missing_file_is_named(bundle: Path) -> None:
    (bundle / "grants.csv").unlink()
    with pytest.raises(ExportInvalid, match="grants\\.csv") as err:
        verify_bundle(bundle)
    assert err.value.file == "grants.csv" and "missing" in err.value.message


def test_an_extra_file_is_named(bundle: Path) -> None:
    (bundle / "notes.txt").write_text("planted")
    with pytest.raises(ExportInvalid, match="notes\\.txt") as err:
        verify_bundle(bundle)
    assert err.value.file == "notes.txt"


def test_missing_manifest_or_signature(bundle: Path) -> None:
    (bundle / SIGNATURE).unlink()
    with pytest.raises(ExportInvalid, match="not signed"):
        verify_bundle(bundle)
    (bundle / MANIFEST).unlink()
    with pytest.raises(ExportInvalid, match="manifest\\.json"):
        verify_bundle(bundle)


def test_a_forged_manifest_signature_is_detected(bundle: Path, real_key: str) -> None:
    name = real_key.split("+")[0]
    forger = Ed25519PrivateKey.generate()
    raw = (bundle / MANIFEST).read_bytes()
    (bundle / SIGNATURE).write_text(f"{name} {base64.b64encode(forger.sign(raw)).decode()}\n")
    for key in (None, real_key):
        with pytest.raises(ExportInvalid, match="does not match its signature") as err:
            verify_bundle(bundle, verifier_key=key)
        assert err.value.file == MANIFEST


def test_the_signature_has_one_spelling_only(bundle: Path) -> None:
    """Unused base64 bits changed: the same signature bytes, but the file was edited."""
    name, blob = (bundle / SIGNATURE).read_text().split()
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
    data, padding = blob.rstrip("="), "=" * blob.count("=")
    blob = data[:-1] + alphabet[alphabet.index(data[-1]) ^ 1] + padding
    assert base64.b64decode(blob) == base64.b64decode((bundle / SIGNATURE).read_text().split()[1])
    (bundle / SIGNATURE).write_text(f"{name} {blob}\n")
    with pytest.raises(ExportInvalid, match="canonical") as err:
        verify_bundle(bundle)
    assert err.value.file == SIGNATURE


def test_a_bundle_resigned_by_an_attacker_fails_with_the_real_key(bundle: Path, real_key: str) -> None:
    name = real_key.split("+")[0]
    rows = _lines(bundle / "grants.jsonl")
    rows[0]["scopes"] = ["payments:initiate:max_1000000"]
    _write_lines(bundle / "grants.jsonl", rows)
    resign(bundle, name, Ed25519PrivateKey.generate(), own_key=True)
    # The files all match the manifest; only the key says who signed it.
    with pytest.raises(ExportInvalid) as err:
        verify_bundle(bundle, verifier_key=real_key)
    assert err.value.file == MANIFEST
    # Even on its own key, the checkpoints the real key signed give it away.
    with pytest.raises(ExportInvalid, match="checkpoint") as err:
        verify_bundle(bundle)
    assert err.value.file == "checkpoints.jsonl"


def test_consistently_rewritten_entries_resigned_by_an_attacker_fail_with_the_real_key(
        bundle: Path, real_key: str) -> None:
    name = real_key.split("+")[0]
    path = bundle / "audit_entries.jsonl"
    rows = _lines(path)
    last = max(i for i, r in enumerate(rows) if r["developerId"] == rows[0]["developerId"])
    target = rows[last]
    target["preimage"] = target["preimage"].replace('"files.read"', '"files.delete"')
    target["action"] = "files.delete"
    target["hash"] = hashlib.sha256(target["preimage"].encode()).hexdigest()
    _write_lines(path, rows)
    resign(bundle, name, Ed25519PrivateKey.generate(), own_key=True)
    with pytest.raises(ExportInvalid) as err:
        verify_bundle(bundle, verifier_key=real_key)
    assert err.value.file == MANIFEST


def test_an_edited_column_with_the_preimage_kept_is_reported(bundle: Path, pristine: tuple[World, Path],
                                                             real_key: str) -> None:
    path = bundle / "audit_entries.jsonl"
    rows = _lines(path)
    victim = next(r for r in rows if r["action"] == "calendar.read")
    victim["action"] = "calendar.write"
    _write_lines(path, rows)
    resign(bundle, *real_private(pristine[0]))
    with pytest.raises(ExportInvalid, match="action") as err:
        verify_bundle(bundle, verifier_key=real_key)
    assert err.value.file == "audit_entries.jsonl" and f"seq {victim['seq']}" in err.value.message


@pytest.mark.parametrize("column", ["metadata", "grantId", "timestamp", "prevHash"])
def test_other_edited_columns_are_reported(bundle: Path, pristine: tuple[World, Path], column: str) -> None:
    path = bundle / "audit_entries.jsonl"
    rows = _lines(path)
    victim = next(r for r in rows if r["action"] == "calendar.read")
    victim[column] = {"i": True} if column == "metadata" else "x"
    _write_lines(path, rows)
    resign(bundle, *real_private(pristine[0]))
    with pytest.raises(ExportInvalid, match=column):
        verify_bundle(bundle)


def test_a_deleted_middle_entry_is_a_seq_gap_even_with_a_real_signature(
        bundle: Path, pristine: tuple[World, Path], real_key: str) -> None:
    path = bundle / "audit_entries.jsonl"
    rows = _lines(path)
    developer = rows[0]["developerId"]
    middle = next(i for i, r in enumerate(rows) if r["developerId"] == developer and r["seq"] == 17)
    del rows[middle]
    _write_lines(path, rows)
    resign(bundle, *real_private(pristine[0]))  # the manifest is fine and really signed
    with pytest.raises(ChainBroken) as err:
        verify_bundle(bundle, verifier_key=real_key)
    assert (err.value.seq, err.value.reason) == (17, "seq_gap")
    assert "audit_entries.jsonl" in err.value.message and developer in err.value.message


def test_a_rehashed_chain_fails_its_checkpoints_even_with_a_real_signature(
        bundle: Path, pristine: tuple[World, Path]) -> None:
    """Edit an entry and re-link everything after it: only the signed checkpoints can tell."""
    path = bundle / "audit_entries.jsonl"
    rows = _lines(path)
    developer = rows[0]["developerId"]
    chain = [r for r in rows if r["developerId"] == developer]
    previous = None
    for row in chain:
        text = row["preimage"]
        if previous is not None:
            text = text.replace(f'"prevHash":"{row["prevHash"]}"', f'"prevHash":"{previous}"')
            row["prevHash"] = previous
        if row["seq"] == 5:
            text = text.replace('"status":"success"', '"status":"failure"')
            row["status"] = "failure"
        row["preimage"], row["hash"] = text, hashlib.sha256(text.encode()).hexdigest()
        previous = row["hash"]
    _write_lines(path, rows)
    resign(bundle, *real_private(pristine[0]))
    with pytest.raises(ChainBroken) as err:
        verify_bundle(bundle)
    assert err.value.reason == "rewritten"


def _edit_checkpoint_head(bundle: Path) -> None:
    rows = _lines(bundle / "checkpoints.jsonl")
    rows[0]["headHash"] = "0" * 64
    _write_lines(bundle / "checkpoints.jsonl", rows)


def _edit_manifest_root(bundle: Path) -> None:
    manifest = json.loads((bundle / MANIFEST).read_text())
    manifest["chains"][0]["rootHash"] = "0" * 64
    (bundle / MANIFEST).write_text(json.dumps(manifest))


def _edit_csv_only(bundle: Path) -> None:
    text = (bundle / "grants.csv").read_text(encoding="utf-8")
    (bundle / "grants.csv").write_text(text.replace("calendar:read", "calendar:write", 1), encoding="utf-8")


def _split_a_chain(bundle: Path) -> None:
    """The first chain's newest entry (after its last checkpoint) moved behind the second chain."""
    rows = _lines(bundle / "audit_entries.jsonl")
    first = [r for r in rows if r["developerId"] == rows[0]["developerId"]]
    rest = rows[len(first):]
    _write_lines(bundle / "audit_entries.jsonl", [*first[:-1], *rest, first[-1]])


def _move_a_checkpoint_to_another_chain(bundle: Path) -> None:
    rows = _lines(bundle / "checkpoints.jsonl")
    rows[0]["developerId"] = rows[-1]["developerId"]
    _write_lines(bundle / "checkpoints.jsonl", rows)


@pytest.mark.parametrize(("edit", "file", "words"), [
    (_edit_checkpoint_head, "checkpoints.jsonl", "headHash"),
    (_edit_manifest_root, MANIFEST, "chain of developer"),
    (_edit_csv_only, "grants.csv", "differs from line 1 of grants.jsonl"),
    (_split_a_chain, "audit_entries.jsonl", "not together"),
    (_move_a_checkpoint_to_another_chain, "checkpoints.jsonl", "not this chain"),
    (lambda b: (b / "grants.jsonl").write_bytes(b"\xff" + (b / "grants.jsonl").read_bytes()), "grants.jsonl",
     "not UTF-8"),
    (lambda b: (b / "grants.csv").write_bytes((b / "grants.csv").read_bytes() + b"\xfe\n"), "grants.csv",
     "not UTF-8"),
])
def test_insider_edits_resigned_with_the_real_key_are_named(
        bundle: Path, pristine: tuple[World, Path], edit: Callable[[Path], None], file: str,
        words: str) -> None:
    edit(bundle)
    resign(bundle, *real_private(pristine[0]))
    with pytest.raises(ExportInvalid) as err:
        verify_bundle(bundle)
    assert err.value.file == file and words in err.value.message


def test_a_hashed_entry_with_a_null_timestamp_is_refused_not_a_crash(
        bundle: Path, pristine: tuple[World, Path]) -> None:
    path = bundle / "audit_entries.jsonl"
    rows = _lines(path)
    last = max(i for i, r in enumerate(rows) if r["developerId"] == rows[0]["developerId"])
    text = rows[last]["preimage"]
    cut = text.index('"timestamp":"')
    rows[last]["preimage"] = text[:cut] + '"timestamp":null' + text[text.index('"', cut + 13) + 1:]
    rows[last]["hash"] = hashlib.sha256(rows[last]["preimage"].encode()).hexdigest()
    rows[last]["timestamp"] = None
    _write_lines(path, rows)
    resign(bundle, *real_private(pristine[0]))
    with pytest.raises(ExportInvalid, match="must be strings") as err:
        verify_bundle(bundle)
    assert err.value.file == "audit_entries.jsonl"


def test_a_manifest_path_is_taken_as_its_bundle(bundle: Path) -> None:
    assert verify_bundle(bundle / MANIFEST)["valid"]


def test_a_malformed_key_is_refused(bundle: Path) -> None:
    with pytest.raises(CheckpointInvalid):
        verify_bundle(bundle, verifier_key="not a key")


def test_a_bundle_checked_with_another_ledgers_key_fails(bundle: Path, tmp_path: Path) -> None:
    with Ledger(tmp_path / "other.db") as other:
        foreign = checkpoints.verifier_key(other)
    with pytest.raises(ExportInvalid, match="signed by key"):
        verify_bundle(bundle, verifier_key=foreign)


# ── the hosted service's export format ───────────────────────────────────────


def hosted_export() -> dict:
    entries = []
    for vector in json.loads(VECTORS.read_text())["vectors"]:
        fields = dict(vector["fields"])
        entries.append({"entryId": fields.pop("id"), **fields,
                        "metadata": json.loads(vector["metadata_json"]), "hash": vector["hash"]})
    return {"generatedAt": "2026-02-01T12:35:00.000Z", "total": len(entries), "entries": entries}


def test_hosted_export_verifies(tmp_path: Path) -> None:
    path = tmp_path / "hosted.json"
    path.write_text(json.dumps(hosted_export()))
    for summary in (verify_hosted_export(path), verify_bundle(path)):
        assert summary["valid"] and summary["format"] == "hosted" and summary["entries"] == 3
        assert summary["chains"][0]["headHash"] == hosted_export()["entries"][-1]["hash"]
        assert "no signatures" in summary["warning"]


def test_hosted_export_accepts_id_and_unordered_ids(tmp_path: Path) -> None:
    """The hosted ids are not monotonic; entries may carry ``id`` rather than ``entryId``."""
    template = hosted_export()["entries"][1]
    entries, previous = [], None
    for entry_id in ("alog_zz", "alog_aa", "alog_mm"):
        fields = {**{k: template[k] for k in ("agentId", "agentDid", "grantId", "principalId", "developerId",
                                              "action", "timestamp", "status")},
                  "id": entry_id, "prevHash": previous}
        previous = hashlib.sha256(preimage_text(fields, template["metadata"]).encode()).hexdigest()
        entries.append({**fields, "metadata": template["metadata"], "hash": previous})
    path = tmp_path / "hosted.json"
    path.write_text(json.dumps({"generatedAt": "2026-02-01T12:35:00.000Z", "total": 3, "entries": entries}))
    assert verify_hosted_export(path)["chains"][0]["headHash"] == previous


def _hosted_failure(tmp_path: Path, change: Callable[[dict], None]) -> pytest.ExceptionInfo:
    data = copy.deepcopy(hosted_export())
    change(data)
    path = tmp_path / "hosted.json"
    path.write_text(json.dumps(data))
    with pytest.raises((ChainBroken, ExportInvalid)) as err:
        verify_bundle(path)
    return err


@pytest.mark.parametrize(("change", "seq", "reason"), [
    (lambda d: d["entries"][1]["metadata"].update(amount=42), 2, "content_changed"),
    (lambda d: d["entries"][2].update(status="success"), 3, "content_changed"),
    (lambda d: d["entries"][1].update(hash="0" * 64), 2, "content_changed"),
    (lambda d: (d["entries"].pop(1), d.update(total=2)), 2, "link_broken"),
    (lambda d: (d["entries"].pop(0), d.update(total=2)), 1, "link_broken"),
    (lambda d: d["entries"].reverse(), 1, "order_changed"),
])
def test_hosted_export_tampering_is_found(tmp_path: Path, change: Callable[[dict], None], seq: int,
                                          reason: str) -> None:
    err = _hosted_failure(tmp_path, change)
    assert isinstance(err.value, ChainBroken)
    assert (err.value.seq, err.value.reason) == (seq, reason)
    assert "hosted.json" in err.value.message


@pytest.mark.parametrize("change", [
    lambda d: d.update(total=4),
    lambda d: d.pop("entries"),
    lambda d: d["entries"][0].pop("developerId"),
    lambda d: d["entries"][0].update(agentId=7),
    lambda d: d["entries"][0].pop("hash"),
    lambda d: d["entries"][2].pop("timestamp"),
    lambda d: d["entries"][1].update(entryId=5),
])
def test_malformed_hosted_exports_are_named(tmp_path: Path, change: Callable[[dict], None]) -> None:
    err = _hosted_failure(tmp_path, change)
    assert isinstance(err.value, ExportInvalid) and err.value.file == "hosted.json"


# ── size ─────────────────────────────────────────────────────────────────────


def test_a_large_export_streams_and_verifies(gx: Grantex, tmp_path: Path) -> None:
    token = grant_for(gx, ["calendar:read"])
    grant = gx.grants.get(token.grant_id)
    for chunk in range(4):
        gx.audit.log_many([{"agent_id": grant.agent_id, "grant_id": grant.id, "action": "calendar.read",
                            "metadata": {"chunk": chunk, "i": i, "pad": "x" * 200}} for i in range(5000)])
    gx.audit.checkpoint()
    out = tmp_path / "bundle"
    tracemalloc.start()
    try:
        export_bundle(gx.ledger, out)
        _, export_peak = tracemalloc.get_traced_memory()
        tracemalloc.reset_peak()
        summary = verify_bundle(out, verifier_key=gx.audit.public_key())
        _, verify_peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    size = (out / "audit_entries.jsonl").stat().st_size
    assert summary["entries"] == count_entries(gx.ledger) > 20_000
    # Neither side holds the entries in memory: the peak is a fraction of the file.
    assert export_peak < size / 4 and verify_peak < size / 4, (export_peak, verify_peak, size)


# ── a bundle loaded as a read-only ledger (the TUI's auditor mode) ──────────


def test_bundle_to_ledger_is_a_faithful_read_only_copy(tmp_path: Path) -> None:
    from grantex_local import Grantex, Ledger, LedgerReadOnly
    from grantex_local.demo import run_demo
    from grantex_local.export import bundle_to_ledger, export_bundle

    source = tmp_path / "source.db"
    run_demo(source, seed=3)
    with Grantex(source, create=False) as gx:
        gx.audit.checkpoint()
        export_bundle(gx.ledger, tmp_path / "bundle")
        grants_before = [g.to_dict() for g in gx.grants.list().grants]
        entries_before = [e.hash for e in gx.audit.list(page_size=10_000)]
        key = gx.audit.public_key()
    summary = bundle_to_ledger(tmp_path / "bundle", tmp_path / "copy.db", verifier_key=key)
    assert summary["valid"] and summary["keySource"] != "bundle"
    with Grantex(Ledger(tmp_path / "copy.db", create=False)) as copy:
        assert copy.ledger.readonly
        assert [g.to_dict() for g in copy.grants.list().grants] == grants_before
        assert [e.hash for e in copy.audit.list(page_size=10_000)] == entries_before
        stored = copy.audit.checkpoints()[-1]["signedCheckpoint"]
        copy.audit.verify(checkpoint=stored)
        with pytest.raises(LedgerReadOnly):
            copy.agents.register(name="x", scopes=[])


def test_bundle_to_ledger_refuses_a_tampered_bundle(tmp_path: Path) -> None:
    from grantex_local import ChainBroken, Grantex
    from grantex_local.export import ExportInvalid, bundle_to_ledger, export_bundle

    with Grantex(tmp_path / "s.db") as gx:
        agent = gx.agents.register(name="a", scopes=[])
        export_bundle(gx.ledger, tmp_path / "bundle")
        del agent
    target = tmp_path / "bundle" / "agents.jsonl"
    target.write_bytes(target.read_bytes().replace(b'"a"', b'"b"'))
    with pytest.raises((ExportInvalid, ChainBroken)):
        bundle_to_ledger(tmp_path / "bundle", tmp_path / "copy.db")
    assert not (tmp_path / "copy.db").exists()


def test_export_and_verify_export_count_the_same_files(tmp_path: Path) -> None:
    """Both count what the directory holds (listed files, manifest, signature), as ls does."""
    from cli_helpers import ok, ok_json

    from grantex_local.export import bundle_file_count

    path, out = tmp_path / "l.db", tmp_path / "bundle"
    with Grantex(path) as gx:
        grant_for(gx, ["calendar:read"])
        gx.audit.checkpoint()
    exported = ok("--ledger", path, "export", out).stdout
    on_disk = len(list(out.iterdir()))
    assert on_disk == len(ALL_FILES)
    assert any(line.split() == ["files", str(on_disk)] for line in exported.splitlines()), exported
    assert f", {on_disk} files" in ok("verify-export", out).stdout
    assert ok_json("verify-export", out)["files"] == on_disk == bundle_file_count(
        json.loads((out / MANIFEST).read_text()))
