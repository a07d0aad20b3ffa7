"""Parquet exports as a hive-partitioned dataset (layout version 2): where the parts go, what the
signed manifest lists, that loading one gives the ledger's own frames, that a version 1 export
still loads, that chains verify alike in one process or several, several exports read as one
dataset, and that a missing, unlisted or mistyped part is refused naming the file.

Every ledger here is a real SQLite file under tmp_path; odd developer ids are written the way the
library writes any chain (its ``record``), so the chains verify.
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import json
import shutil
import sqlite3
from collections import Counter
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import pandas as pd
import pyarrow as pa
import pyarrow.dataset as pads
import pyarrow.parquet as pq
import pytest
from helpers import MovableClock, grant_for

from grantex_local import Grantex, InvalidInput, Ledger
from grantex_local.analysis import SCHEMAS, export_parquet, load, partitions
from grantex_local.analysis import parquet as parquet_module
from grantex_local.audit import checkpoints
from grantex_local.clock import iso
from grantex_local.developers import record
from grantex_local.export import ExportInvalid

ODD_IDS = ["dev/slash", "dev=eq %25 ü", "..", "__HIVE_DEFAULT_PARTITION__", "", "Dev space"]
"""Developer ids a path could misread: a separator, hive's '=', a percent sign, non-ASCII, a parent
directory, hive's null marker, the empty id (hive's null), a space."""
JAN_2026 = 1767225600.0
MONTHS = ["2026-01", "2026-02", "2026-03"]
PER_MONTH = 5
AS_OF = pd.Timestamp("2026-04-01T00:00:00Z")


def build(path: Path, *, odd: bool = True, name: str = "main") -> Path:
    """Chains of the default developer (agents, grants, scopes, amounts) and of ``ODD_IDS``, each
    with ``PER_MONTH`` entries in each of three months, checkpointed."""
    clock = MovableClock()
    clock.now = JAN_2026
    with Ledger(path, clock=clock) as ledger:
        others = ODD_IDS if odd else []
        with ledger.write() as conn:
            for developer_id in others:
                conn.execute(
                    "INSERT INTO developers (id, name, sandbox, is_default, created_at)"
                    " VALUES (?, ?, 1, 0, ?)",
                    (developer_id, f"{name} {developer_id}", iso(ledger.now())),
                )
        gx = Grantex(ledger)
        grant = gx.grants.get(grant_for(gx, ["payments:initiate"]).grant_id)
        for month in range(len(MONTHS)):
            clock.now = JAN_2026 + month * 31 * 86400 + 3600
            for i in range(PER_MONTH):
                gx.audit.log(agent_id=grant.agent_id, grant_id=grant.id, action="payment",
                             metadata={"scope": "payments:initiate", "amount": 10 * i + month})
                for developer_id in others:
                    with ledger.write() as conn:
                        record(ledger, conn, developer_id, "thing.done", metadata={"n": i})
                clock.advance(60)
        gx.audit.checkpoint()
    return path


def resign(directory: Path, ledger_path: Path, manifest: dict[str, object]) -> None:
    """Write ``manifest`` and sign it with the ledger's key, as the export does."""
    data = (json.dumps(manifest, indent=2, sort_keys=True, ensure_ascii=False) + "\n").encode()
    with Ledger(ledger_path, create=False) as ledger:
        key_name, raw = checkpoints.sign_bytes(ledger, data)
    (directory / "manifest.json").write_bytes(data)
    (directory / "manifest.sig").write_text(f"{key_name} {base64.b64encode(raw).decode()}\n")


def writable_copy(source: Path, target: Path) -> Path:
    shutil.copytree(source, target)
    for path in target.rglob("*"):
        path.chmod(0o755 if path.is_dir() else 0o644)
    return target


def manifest_of(directory: Path) -> dict[str, object]:
    data = json.loads((directory / "manifest.json").read_text())
    assert isinstance(data, dict)
    return data


def parts_of(directory: Path) -> dict[str, dict[str, Any]]:
    files = manifest_of(directory)["files"]
    assert isinstance(files, dict)
    return {name: record for name, record in files.items() if name.startswith("audit/")}


def ledger_counts(path: Path) -> Counter[tuple[str, str]]:
    """Entries per (developer, month) as the ledger's own SQL counts them."""
    with sqlite3.connect(path) as conn:
        rows = conn.execute(
            "SELECT developer_id, substr(timestamp, 1, 7), count(*) FROM audit_entries GROUP BY 1, 2"
        ).fetchall()
    return Counter({(d, m): n for d, m, n in rows})


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("dataset")
    ledger = build(root / "main.db")
    export_parquet(ledger, root / "parquet")
    return ledger, root / "parquet"


@pytest.fixture
def tiny(monkeypatch: pytest.MonkeyPatch) -> None:
    """Row groups of 2 rows, files of 4 and batches of 2, so a few entries cross every boundary."""
    monkeypatch.setattr(partitions, "ROW_GROUP_ROWS", 2)
    monkeypatch.setattr(partitions, "FILE_ROWS", 4)
    monkeypatch.setattr(partitions, "BATCH_ROWS", 2)
    monkeypatch.setattr(parquet_module, "BATCH_ROWS", 2)


# ── layout and manifest ──────────────────────────────────────────────────────


def test_partitions_are_hive_paths_that_decode_to_each_developer_and_month(
    exported: tuple[Path, Path],
) -> None:
    ledger, out = exported
    counts = ledger_counts(ledger)
    developers = {d for d, _ in counts}
    assert set(ODD_IDS) <= developers
    parts = parts_of(out)
    for name, part in parts.items():
        segments = name.split("/")
        assert len(segments) == 4 and segments[0] == "audit", name
        assert segments[1].startswith("developer_id=") and segments[2].startswith("month=")
        value = segments[1].split("=", 1)[1]  # hive's null marker, else percent-encoded UTF-8
        decoded = None if value == "__HIVE_DEFAULT_PARTITION__" else unquote(value)
        assert decoded == (part["developerId"] or None), name
        assert segments[2] == f"month={part['month']}" and segments[3].startswith("part-")
        assert (out / name).resolve().is_relative_to((out / "audit").resolve())
    # what an engine sees when it discovers the directory by itself (pyarrow, as DuckDB and Spark do)
    found = pads.dataset(out / "audit", format="parquet", partitioning="hive").to_table(
        columns=["developer_id", "month"]
    )
    seen = Counter(
        zip(found.column("developer_id").to_pylist(), found.column("month").to_pylist(), strict=True)
    )
    # the empty id is hive's null; pyarrow also reads a value spelled like the null marker as null
    # though escaped (Spark does not): each has a directory of its own (below), and open_dataset
    # takes the ids from the manifest
    expected: Counter[tuple[str | None, str]] = Counter()
    for (d, m), n in counts.items():
        expected[(None if d in ("", "__HIVE_DEFAULT_PARTITION__") else d, m)] += n
    assert seen == expected
    assert len({name.split("/")[1] for name in parts}) == len(developers)
    assert {m for _, m in seen} == set(MONTHS)


def test_a_missing_amount_is_null_on_disk_not_nan(exported: tuple[Path, Path]) -> None:
    """Engines (DuckDB, Spark) count a NaN in COUNT(amount) and compare it as a number: an entry
    with no amount must be a null cell, and one with an amount its value."""
    ledger, out = exported
    table = pads.dataset(out / "audit", format="parquet", partitioning="hive").to_table(columns=["amount"])
    amounts = table.column("amount")
    conn = sqlite3.connect(ledger)
    try:
        query = ("SELECT count(*) FROM audit_entries "
                 "WHERE json_extract(preimage, '$.metadata.amount') IS NOT NULL")
        with_amount = conn.execute(query).fetchone()[0]
    finally:
        conn.close()
    assert 0 < with_amount < len(amounts)
    assert amounts.null_count == len(amounts) - with_amount
    assert not any(v != v for v in amounts.drop_null().to_pylist())  # no NaN among the values


def test_the_signed_manifest_lists_every_file_with_hash_size_and_rows(exported: tuple[Path, Path]) -> None:
    ledger, out = exported
    manifest = manifest_of(out)
    assert manifest["version"] == parquet_module.VERSION == 2
    files = manifest["files"]
    assert isinstance(files, dict)
    on_disk = {p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()}
    assert on_disk - {"manifest.json", "manifest.sig"} == set(files)
    for name, entry in files.items():
        data = (out / name).read_bytes()
        assert entry["sha256"] == hashlib.sha256(data).hexdigest(), name
        assert entry["bytes"] == len(data), name
        assert entry["rows"] == pq.ParquetFile(out / name).metadata.num_rows, name
    assert {f"{t}.parquet" for t in SCHEMAS if t != "audit"} <= set(files)
    assert sum(int(p["rows"]) for p in parts_of(out).values()) == sum(ledger_counts(ledger).values())
    for name in parts_of(out):  # the stored columns leave out what the path carries
        names = pq.read_schema(out / name).names
        assert "developer_id" not in names and "preimage" in names


def test_parts_roll_over_by_row_group_and_file_size(tmp_path: Path, tiny: None) -> None:
    ledger = build(tmp_path / "l.db", odd=False)
    out = tmp_path / "parquet"
    export_parquet(ledger, out)
    parts = parts_of(out)
    by_month: dict[str, list[str]] = {}
    for name, part in parts.items():
        by_month.setdefault(str(part["month"]), []).append(name)
        meta = pq.ParquetFile(out / name).metadata
        assert meta.num_rows <= 4 and all(meta.row_group(i).num_rows <= 2 for i in range(meta.num_row_groups))
    counts = ledger_counts(ledger)
    for (_, month), n in counts.items():  # each month of the one chain: ceil(n / 4) files
        assert len(by_month[month]) == -(-n // 4), month
    frames = load(out, as_of=AS_OF)
    assert frames.integrity.valid, frames.integrity.errors
    assert frames.audit["seq"].tolist() == sorted(frames.audit["seq"].tolist())
    assert len(frames.audit) == sum(counts.values())


# ── loading and verifying ────────────────────────────────────────────────────


def assert_same_frames(expected: object, got: object) -> None:
    for table in SCHEMAS:
        pd.testing.assert_frame_equal(getattr(expected, table), getattr(got, table), obj=table)


@pytest.mark.parametrize("sizes", ["default", "tiny"])
def test_loading_an_export_gives_the_ledgers_frames(
    exported: tuple[Path, Path], tmp_path: Path, request: pytest.FixtureRequest, sizes: str
) -> None:
    ledger, out = exported
    if sizes == "tiny":
        request.getfixturevalue("tiny")
        out = tmp_path / "parquet"
        export_parquet(ledger, out)
    from_ledger, from_export = load(ledger, as_of=AS_OF), load(out, as_of=AS_OF)
    assert from_export.kind == "parquet" and from_export.integrity.valid, from_export.integrity.errors
    audit = from_export.audit
    assert list(zip(audit["developer_id"], audit["seq"], strict=True)) == sorted(
        zip(audit["developer_id"], audit["seq"], strict=True)
    )
    assert_same_frames(from_ledger, from_export)


def version_1_copy(source: Path, ledger: Path, target: Path) -> Path:
    """The export as version 1 wrote it: one audit.parquet (developer_id stored, nanosecond
    stamps), listed and signed."""
    writable_copy(source, target)
    shutil.rmtree(target / "audit")
    manifest = manifest_of(source)
    files = manifest["files"]
    assert isinstance(files, dict)
    ordered = sorted((f["developerId"], f["firstSeq"], n) for n, f in files.items() if n.startswith("audit/"))
    tables = []
    for developer_id, _, name in ordered:
        table = pq.read_table(source / name)
        tables.append(table.append_column("developer_id", pa.array([developer_id] * table.num_rows)))
    audit = pa.concat_tables(tables)
    audit = audit.select([n for n, _ in SCHEMAS["audit"]] + ["preimage"])
    pq.write_table(audit, target / "audit.parquet")
    data = (target / "audit.parquet").read_bytes()
    files = {n: f for n, f in files.items() if not n.startswith("audit/")}
    files["audit.parquet"] = {
        "sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data), "rows": audit.num_rows
    }
    manifest.update(files=files, version=1)
    manifest.pop("layout", None)
    resign(target, ledger, manifest)
    return target


def test_a_version_1_export_still_loads(exported: tuple[Path, Path], tmp_path: Path) -> None:
    ledger, out = exported
    old = version_1_copy(out, ledger, tmp_path / "v1")
    assert parquet_module.layout_version(old) == 1
    from_v1 = load(old, as_of=AS_OF)
    assert from_v1.integrity.valid, from_v1.integrity.errors
    assert len(from_v1.integrity.chains) == len({d for d, _ in ledger_counts(ledger)})
    assert_same_frames(load(ledger, as_of=AS_OF), from_v1)


def broken_copy(out: Path, tmp_path: Path) -> tuple[Path, int]:
    """A copy with one entry of one odd developer's chain altered (its part's hash stale too)."""
    copy = writable_copy(out, tmp_path / "broken")
    name = next(n for n, p in parts_of(copy).items() if p["developerId"] == "dev/slash")
    table = pq.read_table(copy / name)
    preimages = table.column("preimage").to_pylist()
    preimages[1] = preimages[1].replace('"n":1', '"n":7')
    table = table.set_column(table.column_names.index("preimage"), "preimage", pa.array(preimages))
    pq.write_table(table, copy / name)
    return copy, int(table.column("seq")[1].as_py())


def test_verifying_in_two_processes_gives_the_same_record(
    exported: tuple[Path, Path], tmp_path: Path
) -> None:
    ledger, out = exported
    with Ledger(ledger, create=False) as opened:
        key = checkpoints.verifier_key(opened)
    broken, seq = broken_copy(out, tmp_path)
    for directory, valid in ((out, True), (broken, False)):
        one = parquet_module.verify_parquet(directory, key)
        two = parquet_module.verify_parquet(directory, key, workers=2)
        assert one.valid is valid and dataclasses.asdict(one) == dataclasses.asdict(two)
        assert len(one.chains) + (0 if valid else 1) == len({d for d, _ in ledger_counts(ledger)})
    assert any(e.get("seq") == seq and e.get("developerId") == "dev/slash" for e in one.errors)
    with pytest.raises(InvalidInput, match="workers"):
        parquet_module.verify_parquet(out, key, workers=0)


def test_progress_counts_entries_up_to_the_total(exported: tuple[Path, Path], tmp_path: Path) -> None:
    ledger, out = exported
    entries = sum(ledger_counts(ledger).values())
    for run in (
        lambda p: export_parquet(ledger, tmp_path / "again", progress=p),
        lambda p: parquet_module.load_parquet(out, None, progress=p),
        lambda p: parquet_module.verify_parquet(out, None, progress=p),
    ):
        calls: list[tuple[int, int | None]] = []
        run(lambda done, total, calls=calls: calls.append((done, total)))
        assert calls and calls[-1] == (entries, entries)
        assert [d for d, _ in calls] == sorted(d for d, _ in calls)


# ── several exports as one dataset ───────────────────────────────────────────


def test_several_exports_read_as_one_dataset_told_apart_by_ledger(
    exported: tuple[Path, Path], tmp_path: Path
) -> None:
    ledger, out = exported
    other_ledger = build(tmp_path / "other.db", odd=False, name="other")
    other = tmp_path / "other"
    export_parquet(other_ledger, other)
    ids = [manifest_of(out)["ledgerId"], manifest_of(other)["ledgerId"]]
    assert ids[0] != ids[1]
    dataset = parquet_module.open_dataset([out, other])
    assert isinstance(dataset, pads.Dataset)
    table = dataset.to_table(columns=["ledger_id", "developer_id", "month", "seq", "hash"])
    counted = Counter(zip(table.column("ledger_id").to_pylist(), table.column("developer_id").to_pylist(),
                          table.column("month").to_pylist(), strict=True))
    expected = Counter({(ids[0], d, m): n for (d, m), n in ledger_counts(ledger).items()})
    expected.update({(ids[1], d, m): n for (d, m), n in ledger_counts(other_ledger).items()})
    assert counted == expected
    only_other = dataset.to_table(filter=pads.field("ledger_id") == ids[1], columns=["hash"])
    assert only_other.num_rows == sum(ledger_counts(other_ledger).values())
    with pytest.raises(InvalidInput, match="same ledger"):
        parquet_module.open_dataset([out, out])
    with pytest.raises(InvalidInput, match="version 1"):
        parquet_module.open_dataset([version_1_copy(out, ledger, tmp_path / "v1")])


# ── bad input: refused, naming the file ──────────────────────────────────────


def missing_part(out: Path, tmp_path: Path, ledger: Path) -> tuple[Path, str]:
    copy = writable_copy(out, tmp_path / "missing")
    name = next(n for n, p in parts_of(copy).items() if p["month"] == MONTHS[1])
    (copy / name).unlink()
    return copy, name


def unlisted_part(out: Path, tmp_path: Path, ledger: Path) -> tuple[Path, str]:
    copy = writable_copy(out, tmp_path / "unlisted")
    listed = next(n for n in parts_of(copy))
    name = listed.rsplit("/", 1)[0] + "/part-9.parquet"
    shutil.copyfile(copy / listed, copy / name)
    return copy, name


def mistyped_column(out: Path, tmp_path: Path, ledger: Path) -> tuple[Path, str]:
    """``seq`` as text in one part, the manifest rewritten and re-signed to match: only the column
    type is wrong, so the type check (not a stale hash) must catch it."""
    copy = writable_copy(out, tmp_path / "mistyped")
    name = next(n for n, p in parts_of(copy).items() if p["developerId"] == "..")
    table = pq.read_table(copy / name)
    table = table.set_column(table.column_names.index("seq"), "seq", table.column("seq").cast(pa.string()))
    pq.write_table(table, copy / name)
    manifest = manifest_of(copy)
    files = manifest["files"]
    assert isinstance(files, dict)
    data = (copy / name).read_bytes()
    files[name].update(sha256=hashlib.sha256(data).hexdigest(), bytes=len(data))
    resign(copy, ledger, manifest)
    return copy, name


@pytest.mark.parametrize(
    ("spoil", "words"),
    [(missing_part, "missing"), (unlisted_part, "not listed"), (mistyped_column, "column seq")],
    ids=["missing", "unlisted", "mistyped"],
)
def test_bad_datasets_are_refused_naming_the_file(
    exported: tuple[Path, Path], tmp_path: Path, spoil: object, words: str
) -> None:
    ledger, out = exported
    assert callable(spoil)
    bad, name = spoil(out, tmp_path, ledger)
    with pytest.raises(ExportInvalid, match=words) as caught:
        load(bad)
    assert caught.value.file == name and name in str(caught.value)
    with pytest.raises(ExportInvalid, match=words) as caught:  # nor reviewed in an engine
        load(bad, engine="duckdb")
    assert caught.value.file == name
    with pytest.raises(ExportInvalid) as caught:
        parquet_module.open_dataset([bad])
    assert name in str(caught.value)
    with Ledger(ledger, create=False) as opened:
        key = checkpoints.verifier_key(opened)
    record = parquet_module.verify_parquet(bad, key)
    assert not record.valid and any(e.get("file") == name for e in record.errors)
