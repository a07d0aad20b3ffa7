"""Loading a ledger, its export bundle and its parquet export into the same frames, and check 1 on
tampered copies (the bundle verifier's ChainBroken is reported by seq, never raised).
"""

from __future__ import annotations

import base64
import hashlib
import json
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from test_analysis_checks import Story, build_dirty

from grantex_local import Grantex, InvalidInput, Ledger
from grantex_local.analysis import SCHEMAS, Dataset, check_integrity, export_parquet, load, run_all
from grantex_local.audit import checkpoints
from grantex_local.export import export_bundle

AS_OF = pd.Timestamp("2026-03-03T12:00:00Z")
KEYS = {
    "developers": ["developer_id"],
    "agents": ["agent_id"],
    "grants": ["grant_id"],
    "tokens": ["jti"],
    "auth_requests": ["auth_request_id"],
    "policies": ["policy_id"],
    "audit": ["developer_id", "seq"],
    "checkpoints": ["checkpoint_id"],
}


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> tuple[Story, Path, Path]:
    """The dirty ledger of the checks' tests, its bundle and its parquet export."""
    root = tmp_path_factory.mktemp("exports")
    story = build_dirty(root / "dirty.db")
    story.gx.audit.checkpoint()
    export_bundle(story.gx.ledger, root / "bundle")
    export_parquet(story.gx.ledger, root / "parquet")
    return story, root / "bundle", root / "parquet"


def copy_of(directory: Path, tmp_path: Path) -> Path:
    target = tmp_path / directory.name
    shutil.copytree(directory, target)
    for path in target.iterdir():
        if path.is_file():
            path.chmod(0o644)
    return target


def sorted_frame(frame: pd.DataFrame, table: str) -> pd.DataFrame:
    return frame.sort_values(KEYS[table], kind="stable").reset_index(drop=True)


# ── the frames ───────────────────────────────────────────────────────────────


def test_ledger_loads_into_tidy_frames(exported: tuple[Story, Path, Path]) -> None:
    story, _, _ = exported
    ds = load(story.path)
    assert ds.kind == "ledger" and ds.integrity.valid and ds.integrity.method == "audit.chain.verify_chain"
    for table, schema in SCHEMAS.items():
        frame = getattr(ds, table)
        expected = [name for name, _ in schema] + (
            ["auth_request_id", "root_grant_id", "depth", "status"] if table == "grants" else []
        )
        assert list(frame.columns) == expected, table
        for name, kind in schema:
            if kind == "time":
                assert str(frame[name].dtype) == "datetime64[ns, UTC]", (table, name)
    audit = ds.audit
    assert audit["seq"].dtype == "int64" and audit["amount"].dtype == "float64"
    with sqlite3.connect(story.path) as conn:
        assert len(audit) == conn.execute("SELECT count(*) FROM audit_entries").fetchone()[0]
    row = audit.loc[
        (audit["developer_id"] == story.ids["dev_main"]) & (audit["seq"] == story.seqs["amount_over"])
    ]
    assert row["metadata"].item() == {"scope": "payments:initiate:max_500", "amount": 900}
    assert row["scope"].item() == "payments:initiate:max_500" and row["amount"].item() == 900.0
    assert row["grant_id"].item() == story.ids["g_pay"]
    sub = ds.grants.set_index("grant_id").loc[story.ids["g_sub"]]
    assert sub["parent_grant_id"] == story.ids["g_help"] and sub["depth"] == 2
    assert sub["root_grant_id"] == story.ids["g_pay"] and sub["status"] == "revoked"
    root = ds.grants.set_index("grant_id").loc[story.ids["g_pay"]]
    assert root["auth_request_id"].startswith("areq_") and root["depth"] == 0
    assert ds.settings["max_delegation_depth"] == 3 and ds.settings["max_expires_in"] == 7 * 86400
    assert len(ds.actions()) == (~audit["action"].str.startswith("grantex.")).sum()
    assert "integrity=valid" in repr(ds)


def test_ledger_bundle_and_parquet_give_equal_frames(exported: tuple[Story, Path, Path]) -> None:
    story, bundle, parquet = exported
    loaded = [load(source, as_of=AS_OF) for source in (story.path, bundle, parquet)]
    assert [ds.kind for ds in loaded] == ["ledger", "bundle", "parquet"]
    assert all(ds.integrity.valid for ds in loaded)
    for table in SCHEMAS:
        first = sorted_frame(getattr(loaded[0], table), table)
        for other in loaded[1:]:
            pd.testing.assert_frame_equal(
                first, sorted_frame(getattr(other, table), table), obj=f"{other.kind} {table}"
            )
    assert loaded[1].settings["max_expires_in"] == 7 * 86400  # from the log's settings.changed event
    assert loaded[2].settings["max_expires_in"] == 7 * 86400  # from the parquet manifest
    verdicts = [[(r.id, r.passed, len(r.evidence)) for r in run_all(ds, review_end=AS_OF)] for ds in loaded]
    assert verdicts[0] == verdicts[1] == verdicts[2]


def test_load_accepts_a_ledger_object_and_a_client(exported: tuple[Story, Path, Path]) -> None:
    story, _, _ = exported
    assert load(story.gx).path == load(story.gx.ledger).path == str(story.path)


def test_load_refuses_what_is_not_a_source(tmp_path: Path) -> None:
    with pytest.raises(InvalidInput):
        load(tmp_path / "missing.db")
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(InvalidInput):
        load(tmp_path / "notes.txt")
    (tmp_path / "empty").mkdir()
    with pytest.raises(InvalidInput):
        load(tmp_path / "empty")


def test_an_empty_ledger_loads_and_every_check_runs(tmp_path: Path) -> None:
    Grantex(tmp_path / "new.db").close()
    ds = load(tmp_path / "new.db")
    assert len(ds.audit) == 0 and ds.integrity.valid
    results = run_all(ds)
    assert [r.id for r in results] == list(range(1, 13))
    assert all(r.passed for r in results if r.id != 8)


# ── check 1 on tampered copies ───────────────────────────────────────────────


def _edit_audit_line(path: Path, seq: int, old: str, new: str, **columns: object) -> None:
    """Change the hashed bytes of entry ``seq`` (and, to hide it, the plain ``columns`` too)."""
    lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
    for index, line in enumerate(lines):
        row = json.loads(line)
        if row["seq"] == seq and old in row["preimage"]:
            row["preimage"] = row["preimage"].replace(old, new)
            row.update(columns)
            lines[index] = json.dumps(row, ensure_ascii=False, separators=(",", ":")) + "\n"
            break
    else:
        raise AssertionError(f"seq {seq} with {old!r} not found")
    path.write_text("".join(lines), encoding="utf-8")


def test_tampered_bundle_entry_fails_check_1_naming_the_seq(
    exported: tuple[Story, Path, Path], tmp_path: Path
) -> None:
    story, bundle, _ = exported
    copy = copy_of(bundle, tmp_path)
    seq = story.seqs["amount_over"]
    _edit_audit_line(copy / "audit_entries.jsonl", seq, '"amount":900', '"amount":90')
    ds = load(copy)  # does not raise
    assert not ds.integrity.valid
    result = check_integrity(ds)
    assert not result.passed
    assert seq in result.cited_seqs()
    located = result.evidence.loc[result.evidence["problem"] == "content_changed"]
    assert located["seq"].tolist() == [seq]
    assert f"seq {seq}" in result.summary


def test_tampered_bundle_with_a_resigned_manifest_fails_check_1(
    exported: tuple[Story, Path, Path], tmp_path: Path
) -> None:
    """Someone with the ledger's key rewrites the manifest: the bundle verifier raises ChainBroken
    for the edited entry, and check 1 reports it."""
    story, bundle, _ = exported
    copy = copy_of(bundle, tmp_path)
    seq = story.seqs["after_revocation"]
    audit_file = copy / "audit_entries.jsonl"
    _edit_audit_line(
        audit_file, seq, '"action":"calendar.read"', '"action":"calendar.peek"', action="calendar.peek"
    )
    manifest = json.loads((copy / "manifest.json").read_text())
    manifest["files"]["audit_entries.jsonl"].update(
        sha256=hashlib.sha256(audit_file.read_bytes()).hexdigest(), bytes=audit_file.stat().st_size
    )
    data = (json.dumps(manifest, indent=2, sort_keys=True, ensure_ascii=False) + "\n").encode()
    (copy / "manifest.json").write_bytes(data)
    name, signature = checkpoints.sign_bytes(story.gx.ledger, data)
    (copy / "manifest.sig").write_text(f"{name} {base64.b64encode(signature).decode()}\n")
    ds = load(copy, verifier_key=story.gx.audit.public_key())
    assert ds.integrity.errors[0]["kind"] == "ChainBroken" and ds.integrity.errors[0]["seq"] == seq
    result = check_integrity(ds)
    assert not result.passed
    assert result.evidence.loc[result.evidence["problem"] == "content_changed", "seq"].tolist() == [seq]
    assert f"seq {seq}" in result.summary


def test_tampered_parquet_entry_fails_check_1(exported: tuple[Story, Path, Path], tmp_path: Path) -> None:
    story, _, parquet = exported
    copy = copy_of(parquet, tmp_path)
    seq = story.seqs["scope_outside"]
    files = json.loads((copy / "manifest.json").read_text())["files"]
    part = next(  # the month partition of the main developer's chain that holds the entry
        name for name, f in files.items()
        if f.get("developerId") == story.ids["dev_main"] and f["firstSeq"] <= seq <= f["lastSeq"]
    )
    table = pq.read_table(copy / part)
    preimages = table.column("preimage").to_pylist()
    target = table.column("seq").to_pylist().index(seq)
    preimages[target] = preimages[target].replace("email:send", "email:read")
    table = table.set_column(table.column_names.index("preimage"), "preimage", pa.array(preimages))
    pq.write_table(table, copy / part)
    result = check_integrity(load(copy))
    assert not result.passed
    assert result.evidence.loc[result.evidence["problem"] == "content_changed", "seq"].tolist() == [seq]
    assert part in " ".join(result.evidence["detail"])  # its SHA-256 no longer matches


def test_tampered_ledger_file_loads_and_fails_check_1(
    exported: tuple[Story, Path, Path], tmp_path: Path
) -> None:
    story, _, _ = exported
    path = tmp_path / "copy.db"
    with sqlite3.connect(story.path) as source, sqlite3.connect(path) as target:
        source.backup(target)
    seq = story.seqs["ok_payment"]
    with sqlite3.connect(path) as conn:  # past the append-only triggers, as an attacker would
        conn.execute("DROP TRIGGER audit_entries_no_update")
        conn.execute(
            "UPDATE audit_entries SET preimage = replace(preimage, '\"amount\":100', '\"amount\":1') "
            "WHERE seq = ? AND developer_id = ?",
            (seq, story.ids["dev_main"]),
        )
    ds = load(path)
    assert (
        ds.audit.loc[
            (ds.audit["seq"] == seq) & (ds.audit["developer_id"] == story.ids["dev_main"]), "amount"
        ].item()
        == 1.0
    )  # the frame shows the bytes as they are now
    result = check_integrity(ds)
    assert not result.passed and seq in result.cited_seqs() and f"seq {seq}" in result.summary


def test_verifier_key_from_elsewhere(exported: tuple[Story, Path, Path], tmp_path: Path) -> None:
    story, bundle, parquet = exported
    key = story.gx.audit.public_key()
    for source in (bundle, parquet, story.path):
        ds = load(source, verifier_key=key)
        assert ds.integrity.valid and ds.integrity.key_source == "given" and not ds.integrity.warning
    assert load(bundle).integrity.warning  # the bundle's own key proves only self-consistency
    with Grantex(tmp_path / "other.db") as other:
        stranger = other.audit.public_key()
    for source in (bundle, parquet, story.path):
        result = check_integrity(load(source, verifier_key=stranger))
        assert not result.passed, source


# ── the parquet export itself ────────────────────────────────────────────────


def test_parquet_export_files_and_replacement(exported: tuple[Story, Path, Path], tmp_path: Path) -> None:
    story, _, parquet = exported
    manifest = json.loads((parquet / "manifest.json").read_text())
    assert manifest["format"] == "grantex-local-parquet"
    assert manifest["version"] == 2
    tables = sorted(name for name in manifest["files"] if not name.startswith("audit/"))
    assert tables == sorted(f"{t}.parquet" for t in SCHEMAS if t != "audit")
    parts = [name for name in manifest["files"] if name.startswith("audit/")]
    on_disk = sorted(p.relative_to(parquet).as_posix() for p in (parquet / "audit").rglob("*.parquet"))
    assert parts and sorted(parts) == on_disk
    assert all("preimage" in pq.read_schema(parquet / name).names for name in parts)
    assert sum(manifest["files"][name]["rows"] for name in parts) == len(load(story.path).audit)
    with pytest.raises(InvalidInput):
        export_parquet(story.gx.ledger, parquet)
    out = tmp_path / "again"
    export_parquet(story.path, out)  # a path works as well as a Ledger
    export_parquet(story.gx.ledger, out, force=True)
    (tmp_path / "home").mkdir()
    (tmp_path / "home" / "notes.txt").write_text("mine")
    with pytest.raises(InvalidInput):
        export_parquet(story.gx.ledger, tmp_path / "home", force=True)
    assert (tmp_path / "home" / "notes.txt").exists()


def test_pandas_stays_out_of_the_library_and_cli() -> None:
    code = (
        "import sys, grantex_local, grantex_local.cli, grantex_local.export, grantex_local.audit; "
        "assert 'pandas' not in sys.modules and 'pyarrow' not in sys.modules, 'pandas imported'"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_dataset_is_a_plain_dataclass(exported: tuple[Story, Path, Path]) -> None:
    story, _, _ = exported
    ds = load(story.path, as_of="2026-03-02T10:00:00Z")
    assert isinstance(ds, Dataset) and ds.as_of == AS_OF - pd.Timedelta(hours=26)
    statuses = ds.grants.set_index("grant_id")["status"]
    assert statuses[story.ids["g_pay"]] == "active" and statuses[story.ids["g_help"]] == "revoked"
    with Ledger(story.path, create=False):  # the file is still a normal ledger afterwards
        pass
