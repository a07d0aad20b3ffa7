"""Parquet exports: the audit table as a hive-partitioned dataset, every other table one file.

Why a second export format: a bundle is JSON Lines, made to be verified and read by anyone,
and reading a million JSON lines takes a while. A parquet export holds the same tables with the
columns of :class:`~grantex_local.analysis.Dataset` (typed: text, integers, UTC instants; lists
and objects as JSON text), so pandas, DuckDB and Spark read it column-wise. The audit table keeps
each entry's ``preimage`` (the bytes that were hashed) next to typed columns for what the checks
read, so the chain is re-verified on loading with the library's own
:func:`~grantex_local.audit.chain.verify_rows`, and ``manifest.json`` (SHA-256, size and rows of
every file, each chain's head and root, the ledger's settings) is signed with the ledger's
Ed25519 checkpoint key in ``manifest.sig`` exactly as a bundle's manifest is.

Layout version 2 (``VERSION``) writes the audit table under ``audit/`` partitioned by developer
and month (:mod:`.partitions` says how and why), streamed while the verifier walks each chain,
so an export's memory does not grow with the ledger. Version 1 (one ``audit.parquet``) still
loads. Like a bundle, the export refuses to sign a chain that does not verify (ChainBroken).

Loading a version 2 export refuses (ExportInvalid, naming the file) a part the manifest lists
but the directory lacks, a file under ``audit/`` the manifest does not list and a column of the
wrong type: each would make a review silently partial. An altered file that still reads is
loaded and recorded in the integrity record instead (the chain walk names the entry), as a
broken log is exactly what an auditor needs to look at.
"""

from __future__ import annotations

import base64
import contextlib
import gc
import itertools
import json
import os
import sqlite3
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.dataset as pads
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from ..audit import chain as audit_chain
from ..audit import checkpoints as audit_checkpoints
from ..audit import note
from ..audit.note import CheckpointInvalid
from ..clock import iso
from ..errors import ChainBroken, InvalidInput, LedgerCorrupt
from ..export import MANIFEST, SIGNATURE, ExportInvalid, file_sha256, write_signed_export
from ..founding import Ledger
from ..progress import Progress, Tally
from .frames import (
    AUDIT_SQL,
    CHUNK_ROWS,
    OFFLINE_COLUMNS,
    PARQUET_FORMAT,
    SCHEMAS,
    TIME,
    Integrity,
    chunks_from_sql,
    column,
    flatten_metadata,
    flatten_offline,
    offline_frame,
    tidy,
    to_utc,
)
from .partitions import (
    AUDIT_DIR,
    BATCH_ROWS,
    NULL_PARTITION,
    PARTITION_COLUMNS,
    ROW_GROUP_ROWS,
    WRITE_OPTIONS,
    Part,
    PartWriter,
    chain_batches,
    listed_parts,
    schema_problem,
    unlisted_files,
    verifier_rows,
)
from .sources import Loaded, ledger_frames, ledger_settings, problem, readonly_connection

VERSION = 2
AUDIT_FILE = "audit.parquet"
"""The audit table of a version 1 export (one file)."""
FILES = tuple(f"{table}.parquet" for table in SCHEMAS)
"""Every file of a version 1 export."""
TABLE_FILES = tuple(f"{table}.parquet" for table in SCHEMAS if table != "audit")
"""The one-file tables of a version 2 export."""
REFUSED = ("file_missing", "file_unlisted", "column_type", "file_misplaced")
"""Problems of a version 2 export that loading refuses rather than review part of it."""
LAYOUT = {
    "audit": f"{AUDIT_DIR}/developer_id={{developerId}}/month={{YYYY-MM}}/part-{{n}}.parquet",
    "partitioning": "hive",
    "escaping": f"percent-encoded UTF-8 (all but A-Z a-z 0-9 - . _ ~); null is {NULL_PARTITION}",
    "rowGroupRows": ROW_GROUP_ROWS,
    "timestamps": "UTC instants, microseconds",
}


# ── arrow conversion ─────────────────────────────────────────────────────────


def _arrow_type(kind: str, unit: str = "ns") -> pa.DataType:
    return {
        "str": pa.string(),
        "int": pa.int64(),
        "nint": pa.int64(),
        "float": pa.float64(),
        "bool": pa.bool_(),
        "nbool": pa.bool_(),
        "time": pa.timestamp(unit, tz="UTC"),
        "json": pa.string(),
    }[kind]


def _schema(
    table: str, with_preimage: bool = False, *, partitioned: bool = False, unit: str = "ns"
) -> pa.Schema:
    """A table's Arrow schema; ``partitioned`` leaves out what a part's path carries."""
    fields = [
        pa.field(name, _arrow_type(kind, unit))
        for name, kind in SCHEMAS[table]
        if not (partitioned and name in PARTITION_COLUMNS)
    ]
    if with_preimage:
        fields.append(pa.field("preimage", pa.string()))
    return pa.schema(fields)


PART_SCHEMA = _schema("audit", with_preimage=True, partitioned=True, unit="us")
"""The columns (and their types, as stored) of every audit part of a version 2 export."""


def _json_text(value: Any) -> str | None:
    """JSON text for a parquet cell; ASCII-escaped so a lone surrogate stays valid UTF-8."""
    return None if value is None else json.dumps(value, separators=(",", ":"), sort_keys=True)


def frame_to_arrow(frame: pd.DataFrame, table: str) -> pa.Table:
    """A tidy frame as an Arrow table with the export's schema (JSON columns as text)."""
    arrays = []
    for name, kind in SCHEMAS[table]:
        values = frame[name]
        if kind == "json":
            arrays.append(pa.array([_json_text(v) for v in values], type=pa.string()))
        elif kind == "str":
            arrays.append(
                pa.array(values.astype(object).where(values.notna(), None).tolist(), type=pa.string())
            )
        else:
            arrays.append(pa.array(values, type=_arrow_type(kind), from_pandas=True))
    return pa.Table.from_arrays(arrays, schema=_schema(table))


def arrow_to_frame(data: pa.Table, table: str) -> pd.DataFrame:
    """The reverse of :func:`frame_to_arrow`, one column at a time (each Arrow column is
    released once converted)."""
    out: dict[str, Any] = {}
    for name, kind in SCHEMAS[table]:
        if name not in data.column_names:
            out[name] = [None] * data.num_rows
            continue
        values = data.column(name)
        data = data.drop_columns([name])
        if kind == "json":
            decoded: list[Any] = []
            for chunk in values.chunks:
                decoded.extend(json.loads(v) if v is not None else None for v in chunk.to_pylist())
            out[name] = pd.Series(decoded, dtype=object)
        elif kind == "time":
            out[name] = values.to_pandas().astype(TIME)
        elif kind == "str":
            out[name] = values
        else:
            out[name] = values.to_pandas()
    return tidy(out, table)


# ── writing ──────────────────────────────────────────────────────────────────


def _audit_chunk_table(rows: list[tuple[Any, ...]]) -> pa.Table:
    """One chunk of :data:`AUDIT_SQL` rows (with the preimage last) as an Arrow table."""
    columns = chunks_from_sql([r[:-1] for r in rows])
    scopes, amounts = flatten_metadata(columns["metadata"])
    offline = flatten_offline(columns["metadata"]).arrow()
    arrays: list[pa.Array] = []
    for name, kind in SCHEMAS["audit"]:
        if name in offline:
            arrays.append(offline[name])
        elif name == "scope":
            arrays.append(pa.array(scopes, type=pa.string()))
        elif name == "amount":
            # a missing amount is NaN in pandas but must be null on disk: engines count and
            # compare NaN as a number (DuckDB and Spark both count it in COUNT(amount))
            values = np.asarray(amounts, dtype=np.float64)
            arrays.append(pa.array(values, type=pa.float64(), from_pandas=True))
        elif name == "metadata":
            arrays.append(pa.array([_json_text(m) for m in columns["metadata"]], type=pa.string()))
        elif kind == "time":
            stamps = column(list(columns[name]), "time")
            arrays.append(pa.array(stamps, type=_arrow_type("time"), from_pandas=True))
        elif kind == "int":
            arrays.append(pa.array(columns[name], type=pa.int64()))
        else:
            arrays.append(_safe_strings(list(columns[name])))
    arrays.append(_safe_strings([r[-1] for r in rows]))
    return pa.Table.from_arrays(arrays, schema=_schema("audit", with_preimage=True))


def _safe_strings(values: list[Any]) -> pa.Array:
    try:
        return pa.array(values, type=pa.string())
    except (pa.ArrowInvalid, pa.ArrowTypeError, UnicodeEncodeError):
        return pa.array(
            [
                v.encode("utf-8", "surrogatepass").decode("utf-8", "replace") if isinstance(v, str) else v
                for v in values
            ],
            type=pa.string(),
        )


class _ChainFeed:
    """Hands the chain verifier its rows while the same rows go, a chunk at a time, to the parts.

    The verifier pulls ``(seq, preimage, hash)``; each full row is kept until :data:`BATCH_ROWS`
    are held, then converted and written, so at most one chunk of rows exists as Python objects.
    """

    def __init__(self, parts: PartWriter, tally: Tally) -> None:
        self.parts = parts
        self.tally = tally
        self.buffer: list[tuple[Any, ...]] = []
        self.developer_id = ""

    def passing(self, developer_id: str, cursor: Iterable[tuple[Any, ...]]) -> Iterator[tuple[int, str, str]]:
        self.developer_id = developer_id
        for row in cursor:
            self.buffer.append(row)
            if len(self.buffer) >= BATCH_ROWS:
                self.flush()
            yield row[0], row[-1], row[1]

    def flush(self) -> None:
        if self.buffer:
            chunk = _audit_chunk_table(self.buffer).drop_columns(list(PARTITION_COLUMNS[:1]))
            self.buffer = []
            self.parts.add(self.developer_id, chunk)
            self.tally.reach(self.parts.rows + self.parts.pending_rows)


def _write_audit(
    ledger: Ledger, conn: Any, directory: Path, stored: pd.DataFrame, progress: Progress | None
) -> tuple[int, list[dict[str, Any]], dict[str, dict[str, Any]]]:
    """Stream every chain into its partitions while ``verify_rows`` walks it (one pass)."""
    reports = []
    developers = [
        r[0]
        for r in conn.execute(
            "SELECT id FROM developers UNION SELECT developer_id FROM audit_entries ORDER BY 1"
        )
    ]
    total = int(conn.execute("SELECT count(*) FROM audit_entries").fetchone()[0])
    sql = AUDIT_SQL.format(extra=", preimage", where=" WHERE developer_id = ?")
    parts = PartWriter(directory, _schema("audit", with_preimage=True, partitioned=True))
    tally = Tally(progress, total)
    feed = _ChainFeed(parts, tally)
    try:
        for developer_id in developers:
            notes = [
                audit_checkpoints.verify_against(ledger, developer_id, text)
                for text in stored.loc[stored["developer_id"] == developer_id, "signed_checkpoint"]
            ]
            try:
                with contextlib.closing(conn.execute(sql, (developer_id,))) as cursor:
                    report = audit_chain.verify_rows(
                        feed.passing(developer_id, cursor),
                        developer_id=developer_id,
                        checkpoints=notes,
                        with_root=bool(notes),
                    )
            except sqlite3.OperationalError as exc:  # stored bytes that are not JSON: find the seq
                with contextlib.closing(
                    conn.execute(
                        "SELECT seq, preimage, hash FROM audit_entries WHERE developer_id = ? ORDER BY seq",
                        (developer_id,),
                    )
                ) as cursor:
                    audit_chain.verify_rows(cursor, developer_id=developer_id, checkpoints=notes)
                raise LedgerCorrupt(f"ledger {ledger.path}: {exc}") from None
            feed.flush()
            reports.append(report.to_dict())
    finally:
        parts.close()
    tally.finish()
    return parts.rows, reports, parts.files


def export_parquet(
    ledger: Ledger | str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    *,
    force: bool = False,
    progress: Progress | None = None,
) -> dict[str, Any]:
    """Write a parquet export of ``ledger`` to the directory ``out_dir``; returns the manifest plus ``path``.

    Everything is read from one read-only snapshot and written to a temporary directory beside
    ``out_dir`` that is renamed into place at the end. ``force`` replaces an earlier parquet
    export (or an empty directory), nothing else. Raises ChainBroken rather than sign a broken
    chain. ``progress(done, total)`` counts audit entries written.
    """
    if not isinstance(ledger, Ledger):
        with Ledger(ledger, create=False) as opened:
            return export_parquet(opened, out_dir, force=force, progress=progress)
    collecting = gc.isenabled()
    gc.disable()  # a million rows of new objects and no cycles: collections would only slow it
    try:
        written = write_signed_export(
            ledger,
            out_dir,
            force=force,
            fmt=PARQUET_FORMAT,
            kind="parquet export",
            write=lambda tmp, key_text: _write_export(ledger, tmp, key_text, progress),
        )
    finally:
        if collecting:
            gc.enable()
    _traversable(Path(written["path"]) / AUDIT_DIR)
    return written


def _traversable(root: Path) -> None:
    """Directories others can enter: the shared signing step sets every top-level entry to 0644,
    which suits files, not the ``audit`` directory."""
    if root.is_dir():
        for path in [root, *root.rglob("*")]:
            if path.is_dir():
                path.chmod(0o755)


def _write_export(
    ledger: Ledger, directory: Path, key_text: str, progress: Progress | None
) -> dict[str, Any]:
    conn = readonly_connection(ledger.path)
    try:
        conn.execute("BEGIN")
        created_at = iso(ledger.now())
        frames = ledger_frames(conn)
        settings = ledger_settings(conn)
        files: dict[str, dict[str, Any]] = {}
        for table, frame in frames.items():
            path = directory / f"{table}.parquet"
            pq.write_table(frame_to_arrow(frame, table), path, **WRITE_OPTIONS)
            files[path.name] = {"sha256": file_sha256(path), "bytes": path.stat().st_size, "rows": len(frame)}
        _, chains, parts = _write_audit(ledger, conn, directory, frames["checkpoints"], progress)
        files.update(parts)
        conn.execute("COMMIT")
    finally:
        conn.close()
    return {
        "format": PARQUET_FORMAT,
        "version": VERSION,
        "layout": LAYOUT,
        "createdAt": created_at,
        "ledgerId": settings.get("ledger_id"),
        "issuer": settings.get("issuer"),
        "settings": {k: v for k, v in settings.items() if k != "created_at"},
        "checkpointKey": key_text,
        "files": files,
        "chains": [
            {
                "developerId": c["developerId"],
                "entries": c["entries"],
                "headHash": c["headHash"],
                "rootHash": c["rootHash"],
            }
            for c in chains
        ],
    }


# ── reading and verifying ────────────────────────────────────────────────────


def _read_manifest(directory: Path) -> tuple[bytes, dict[str, Any]] | None:
    try:
        manifest_bytes = (directory / MANIFEST).read_bytes()
        manifest = json.loads(manifest_bytes)
    except (OSError, ValueError):
        return None
    return (manifest_bytes, manifest) if isinstance(manifest, dict) else None


def layout_version(directory: Path, manifest: dict[str, Any] | None = None) -> int:
    """1 (one ``audit.parquet``) or 2 (``audit/`` partitioned), from the manifest, else the disk."""
    if manifest is None:
        read = _read_manifest(directory)
        manifest = read[1] if read else {}
    version = manifest.get("version")
    if isinstance(version, int) and not isinstance(version, bool):
        return 2 if version >= 2 else 1
    return 2 if (directory / AUDIT_DIR).is_dir() else 1


class CheckedManifest:
    """What the manifest check found: the manifest, its problems, the key, the audit parts."""

    def __init__(
        self,
        manifest: dict[str, Any],
        problems: list[dict[str, Any]],
        key: tuple[str, Any] | None,
        version: int,
        parts: list[Part],
    ) -> None:
        self.manifest = manifest
        self.problems = problems
        self.key = key
        self.version = version
        self.parts = parts

    def refused(self) -> list[dict[str, Any]]:
        return [p for p in self.problems if p.get("reason") in REFUSED]


def _export_problem(
    message: str, file: str, reason: str = "export_invalid", developer_id: str | None = None
) -> dict[str, Any]:
    return problem("ExportInvalid", developer_id, None, reason, message, file=file)


def check_manifest(directory: Path, verifier_key: str | None) -> CheckedManifest:
    """The signature, every file's SHA-256 and size, and (version 2) that the audit parts on the
    disk are exactly those listed, with the columns they should have."""
    problems: list[dict[str, Any]] = []
    read = _read_manifest(directory)
    if read is None:
        version = layout_version(directory, {})
        problems.append(_export_problem(f"{MANIFEST} is missing or not a JSON object", MANIFEST))
        parts: list[Part] = []
        if version >= 2:
            for name in unlisted_files(directory, set()):
                problems.append(
                    _export_problem(f"{name} is not listed in a signed {MANIFEST}", name, "file_unlisted")
                )
        return CheckedManifest({}, problems, None, version, parts)
    manifest_bytes, manifest = read
    version = layout_version(directory, manifest)
    key_text = verifier_key if verifier_key is not None else manifest.get("checkpointKey")
    key = None
    try:
        key = audit_checkpoints.parse_verifier_key(str(key_text))
        name, raw = (directory / SIGNATURE).read_text(encoding="utf-8").rstrip("\n").split(" ")
        if name != key[0]:
            raise ValueError(f"signed by key {name!r}, not {key[0]!r}")
        key[1].verify(base64.b64decode(raw, validate=True), manifest_bytes)
    except CheckpointInvalid as exc:
        problems.append(problem("CheckpointInvalid", None, None, "checkpoint_invalid", exc.message))
    except Exception as exc:
        problems.append(
            _export_problem(
                f"{MANIFEST} does not match its signature in {SIGNATURE} ({exc or 'invalid'})", SIGNATURE
            )
        )
    files = manifest.get("files")
    listed = files if isinstance(files, dict) else {}
    missing = "file_missing" if version >= 2 else "export_invalid"
    for name in TABLE_FILES if version >= 2 else FILES:
        path = directory / name
        expected = listed.get(name)
        if not path.is_file() or not isinstance(expected, dict):
            problems.append(
                _export_problem(f"{name} is missing from the export or its manifest", name, missing)
            )
        elif path.stat().st_size != expected.get("bytes") or file_sha256(path) != expected.get("sha256"):
            problems.append(
                _export_problem(f"{name} does not match the SHA-256 and size in {MANIFEST} (altered)", name)
            )
    parts = []
    if version >= 2:
        try:
            parts = listed_parts(listed)
        except ExportInvalid as exc:
            problems.append(_export_problem(exc.message, exc.file, "file_misplaced"))
        problems.extend(_part_problems(directory, parts))
        for name in unlisted_files(directory, {p.path for p in parts}):
            problems.append(
                _export_problem(
                    f"{name} is under {AUDIT_DIR}/ but not listed in {MANIFEST} (not part of this export)",
                    name,
                    "file_unlisted",
                )
            )
    return CheckedManifest(manifest, problems, key, version, parts)


def _part_problems(directory: Path, parts: Sequence[Part]) -> list[dict[str, Any]]:
    problems = []
    for part in parts:
        path = directory / part.path
        if not path.is_file():
            problems.append(
                _export_problem(
                    f"{part.path} is listed in {MANIFEST} but missing from the export "
                    f"(entries from seq {part.first_seq} of developer {part.developer_id})",
                    part.path,
                    "file_missing",
                    part.developer_id,
                )
            )
            continue
        if path.stat().st_size != part.bytes or file_sha256(path) != part.sha256:
            problems.append(
                _export_problem(
                    f"{part.path} does not match the SHA-256 and size in {MANIFEST} (altered)",
                    part.path,
                    developer_id=part.developer_id,
                )
            )
        wrong = schema_problem(path, PART_SCHEMA)
        if wrong is not None:
            problems.append(
                _export_problem(f"{part.path} {wrong}", part.path, "column_type", part.developer_id)
            )
    return problems


def _stored_checkpoints(
    checkpoints: pd.DataFrame, key: tuple[str, Any] | None, problems: list[dict[str, Any]]
) -> dict[str, list[note.Checkpoint]]:
    out: dict[str, list[note.Checkpoint]] = {}
    if key is None:
        return out
    name, public = key
    for row in checkpoints.itertuples(index=False):
        try:
            parsed = note.verify(str(row.signed_checkpoint), name, public)
            if parsed.origin != f"{name}/{row.developer_id}":
                raise CheckpointInvalid(f"checkpoint is signed for {parsed.origin}, not this chain")
            if parsed.size != row.entry_count or parsed.root_hash.hex() != row.root_hash:
                raise CheckpointInvalid("entry_count or root_hash differ from the signed note")
        except CheckpointInvalid as exc:
            problems.append(
                problem(
                    "CheckpointInvalid",
                    str(row.developer_id),
                    None,
                    "checkpoint_invalid",
                    f"checkpoint {row.checkpoint_id}: {exc.message}",
                )
            )
            continue
        out.setdefault(str(row.developer_id), []).append(parsed)
    return out


def _chains(parts: Sequence[Part]) -> list[tuple[str, list[Part]]]:
    """Each developer's parts in seq order, developers in order (the frames' row order)."""
    return [
        (developer_id, list(group))
        for developer_id, group in itertools.groupby(parts, key=lambda p: p.developer_id)
    ]


def _walk_chain(
    directory: Path,
    developer_id: str,
    parts: Sequence[Part],
    marks: Sequence[note.Checkpoint],
    columns: Sequence[str] = ("seq", "preimage", "hash"),
    seen: Callable[[Part, pa.RecordBatch], None] | None = None,
) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
    """(report, None) or (None, problem) for one chain, streamed a batch at a time across its parts.

    After a break the rest of the chain is still read, so ``seen`` gets every batch: the entries
    after a break still load (an auditor needs to see them).
    """
    rows = verifier_rows(chain_batches(directory, parts, columns), seen)
    try:
        report = audit_chain.verify_rows(
            rows, developer_id=developer_id, checkpoints=list(marks), with_root=bool(marks)
        )
    except ChainBroken as exc:
        for _ in rows:
            pass
        return None, problem("ChainBroken", developer_id, exc.seq, exc.reason, exc.message)
    return report.to_dict(), None


def _walk_task(
    directory: str,
    developer_id: str,
    parts: list[Part],
    marks: list[note.Checkpoint],
    seen: Callable[[Part, pa.RecordBatch], None] | None = None,
) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
    """One chain, a part that cannot be read recorded as a problem (module level, so a spawned
    worker process can import it)."""
    try:
        return _walk_chain(Path(directory), developer_id, parts, marks, seen=seen)
    except ExportInvalid as exc:
        return None, _export_problem(exc.message, exc.file, "column_type", developer_id)


def _integrity(
    checked: CheckedManifest,
    problems: list[dict[str, Any]],
    reports: dict[str, dict[str, Any]],
    stored: dict[str, list[note.Checkpoint]],
    verifier_key: str | None,
) -> Integrity:
    """The record: problems found, a checkpointed chain with no entries, the manifest's claims."""
    for developer_id, marks in stored.items():  # a checkpoint with no entries left: the tail is gone
        if (
            developer_id not in reports
            and any(c.size for c in marks)
            and not any(p.get("developerId") == developer_id for p in problems)
        ):
            problems.append(
                problem(
                    "ChainBroken",
                    developer_id,
                    1,
                    "tail_deleted",
                    "the checkpoints commit to entries the export does not hold",
                )
            )
    declared = {c.get("developerId"): c for c in checked.manifest.get("chains", []) if isinstance(c, dict)}
    for developer_id, chain in reports.items():
        claim = declared.get(developer_id, {})
        if (claim.get("entries"), claim.get("headHash")) != (chain["entries"], chain["headHash"]):
            problems.append(
                _export_problem(
                    f"chain of developer {developer_id} is recorded as {claim} in {MANIFEST}, "
                    f"the entries give {chain['entries']} entries, head {chain['headHash']}",
                    MANIFEST,
                    developer_id=developer_id,
                )
            )
    for claimed, claim in declared.items():
        if (
            isinstance(claimed, str)
            and claim.get("entries")
            and claimed not in reports
            and not any(p.get("developerId") == claimed for p in problems)
        ):
            problems.append(
                _export_problem(
                    f"chain of developer {claimed} is recorded with {claim.get('entries')} entries in "
                    f"{MANIFEST}, the export holds none",
                    MANIFEST,
                    developer_id=claimed,
                )
            )
    source = "given" if verifier_key is not None else "export"
    warning = (
        None
        if verifier_key is not None
        else (
            "the signature was checked with the key the export itself carries, which proves only that it is "
            "self-consistent; pass the ledger's key (grantex-local audit public-key) as verifier_key"
        )
    )
    return Integrity(
        valid=not problems,
        method="audit.chain.verify_rows",
        chains=tuple(reports.values()),
        errors=tuple(problems),
        key_source=source,
        warning=warning,
        checkpoints_checked=sum(len(v) for v in stored.values()),
    )


def _preimage_rows(path: Path) -> Iterator[tuple[str, tuple[int, str, str]]]:
    """(developer, (seq, preimage, hash)) for every entry of a version 1 ``audit.parquet``."""
    source = pq.ParquetFile(path)
    for batch in source.iter_batches(
        batch_size=CHUNK_ROWS, columns=["developer_id", "seq", "preimage", "hash"]
    ):
        developers, seqs, texts, hashes = (batch.column(i).to_pylist() for i in range(4))
        for developer_id, seq, text, digest in zip(developers, seqs, texts, hashes, strict=True):
            yield str(developer_id), (seq if isinstance(seq, int) else -1, text or "", digest or "")


def _walk_v1(
    directory: Path, stored: dict[str, list[note.Checkpoint]], problems: list[dict[str, Any]]
) -> dict[str, dict[str, Any]]:
    reports: dict[str, dict[str, Any]] = {}
    if (directory / AUDIT_FILE).is_file():
        for developer_id, group in itertools.groupby(
            _preimage_rows(directory / AUDIT_FILE), key=lambda r: r[0]
        ):
            try:
                marks = stored.get(developer_id, [])
                report = audit_chain.verify_rows(
                    (r[1] for r in group), developer_id=developer_id, checkpoints=marks, with_root=bool(marks)
                )
                reports[developer_id] = report.to_dict()
            except ChainBroken as exc:  # groupby skips the rest of this chain
                problems.append(problem("ChainBroken", developer_id, exc.seq, exc.reason, exc.message))
    return reports


def verify_parquet(
    directory: Path,
    verifier_key: str | None,
    checkpoints: pd.DataFrame | None = None,
    *,
    workers: int = 1,
    progress: Progress | None = None,
) -> Integrity:
    """The signed manifest, every file's hash, and each chain through ``verify_rows`` with its
    signed checkpoints, streamed: a batch at a time, per developer, across its month partitions.

    ``checkpoints`` is the export's checkpoints frame (read from the export when None).
    ``workers`` > 1 walks the chains of a version 2 export in that many processes, one chain per
    task; the record is the same as with one. ``progress(done, total)`` counts entries walked
    (per finished chain when ``workers`` > 1).
    """
    directory = Path(directory)
    if workers < 1:
        raise InvalidInput(f"workers must be at least 1, not {workers}")
    if checkpoints is None:
        checkpoints = read_table(directory, "checkpoints")
    checked = check_manifest(directory, verifier_key)
    problems = list(checked.problems)
    stored = _stored_checkpoints(checkpoints, checked.key, problems)
    if checked.version < 2:
        return _integrity(checked, problems, _walk_v1(directory, stored, problems), stored, verifier_key)
    unreadable = {p.get("developerId") for p in checked.refused()}
    chains = [(d, parts) for d, parts in _chains(checked.parts) if d not in unreadable]
    total = sum(p.rows for _, parts in chains for p in parts)
    results: dict[str, tuple[dict[str, Any] | None, dict[str, Any] | None]] = {}
    tally = Tally(progress, total)

    def seen(part: Part, batch: pa.RecordBatch) -> None:
        tally.advance(batch.num_rows)

    if workers == 1 or len(chains) < 2:
        for developer_id, parts in chains:
            results[developer_id] = _walk_task(
                str(directory), developer_id, parts, stored.get(developer_id, []), seen
            )
    else:
        with ProcessPoolExecutor(
            max_workers=min(workers, len(chains)), mp_context=get_context("spawn")
        ) as pool:
            futures = {
                developer_id: pool.submit(
                    _walk_task, str(directory), developer_id, parts, stored.get(developer_id, [])
                )
                for developer_id, parts in chains
            }
            for developer_id, parts in chains:
                results[developer_id] = futures[developer_id].result()
                tally.advance(sum(p.rows for p in parts))
    tally.finish()
    reports: dict[str, dict[str, Any]] = {}
    for developer_id, (report, found) in results.items():
        if report is not None:
            reports[developer_id] = report
        if found is not None:
            problems.append(found)
    return _integrity(checked, problems, reports, stored, verifier_key)


def reviewable_manifest(directory: Path, verifier_key: str | None) -> CheckedManifest:
    """:func:`check_manifest`, refusing (ExportInvalid naming the first file) an export with a
    listed part missing, a file under ``audit/`` not listed or a column of the wrong type: each
    would make a review silently partial. Other problems (a bad hash) are the integrity record's."""
    checked = check_manifest(directory, verifier_key)
    refused = checked.refused()
    if refused:
        more = f" (and {len(refused) - 1} more problems)" if len(refused) > 1 else ""
        raise ExportInvalid(
            refused[0]["file"], f"{refused[0]['message']}{more}; the export cannot be reviewed"
        )
    return checked


def read_table(directory: Path, table: str) -> pd.DataFrame:
    file = directory / f"{table}.parquet"
    if not file.is_file():
        return tidy({}, table)
    names = [name for name, _ in SCHEMAS[table]]
    try:
        available = set(pq.read_schema(file).names)
        data = pq.read_table(file, columns=[n for n in names if n in available])
    except (OSError, pa.ArrowException) as exc:
        raise ExportInvalid(file.name, f"cannot be read ({exc})") from None
    return arrow_to_frame(data, table)


def load_parquet(path: Path, verifier_key: str | None, *, progress: Progress | None = None) -> Loaded:
    """Read a parquet export (``load`` calls this) and verify it.

    A version 2 export is read and verified in one pass, a chain at a time. ExportInvalid
    (naming the file) when a listed part is missing, a file under ``audit/`` is not listed or a
    column has the wrong type. ``progress(done, total)`` counts audit entries read.
    """
    directory = path.parent if path.is_file() else path
    if layout_version(directory) < 2:
        return _load_v1(directory, verifier_key, progress)
    checked = reviewable_manifest(directory, verifier_key)
    frames = {table: read_table(directory, table) for table in SCHEMAS if table != "audit"}
    problems = list(checked.problems)
    stored = _stored_checkpoints(frames["checkpoints"], checked.key, problems)
    total = sum(p.rows for p in checked.parts)
    pieces: list[pa.Table] = []
    reports: dict[str, dict[str, Any]] = {}
    columns = [*[name for name, _ in SCHEMAS["audit"] if name not in PARTITION_COLUMNS], "preimage"]
    tally = Tally(progress, total)
    for developer_id, parts in _chains(checked.parts):
        batches: list[pa.RecordBatch] = []

        def seen(part: Part, batch: pa.RecordBatch, into: list[pa.RecordBatch] = batches) -> None:
            into.append(batch.drop_columns(["preimage"]))
            tally.advance(batch.num_rows)

        report, found = _walk_chain(
            directory, developer_id, parts, stored.get(developer_id, []), columns, seen
        )
        if report is not None:
            reports[developer_id] = report
        if found is not None:
            problems.append(found)
        if batches:
            table = pa.Table.from_batches(batches)
            pieces.append(
                table.append_column("developer_id", pa.repeat(pa.scalar(developer_id), table.num_rows))
            )
    tally.finish()
    audit = pa.concat_tables(pieces) if pieces else pa.table({})
    frames["audit"] = arrow_to_frame(audit, "audit") if pieces else tidy({}, "audit")
    integrity = _integrity(checked, problems, reports, stored, verifier_key)
    return frames, *manifest_settings(checked.manifest), integrity, manifest_created(checked.manifest)


def manifest_settings(manifest: dict[str, Any]) -> tuple[dict[str, Any]]:
    settings = dict(manifest.get("settings") or {})
    settings.setdefault("issuer", manifest.get("issuer"))
    return (settings,)


def manifest_created(manifest: dict[str, Any]) -> pd.Timestamp | None:
    with contextlib.suppress(ValueError, TypeError):
        return to_utc(manifest["createdAt"]) if manifest.get("createdAt") else None
    return None


def _load_v1(directory: Path, verifier_key: str | None, progress: Progress | None) -> Loaded:
    """A version 1 export: every table, the audit table too, one file."""
    frames = {table: read_table(directory, table) for table in SCHEMAS}
    audit_file = directory / AUDIT_FILE
    if audit_file.is_file() and not set(OFFLINE_COLUMNS) <= set(pq.read_schema(audit_file).names):
        # written before the offline origin was stored: derived from the metadata, as loading did
        for name, values in offline_frame(frames["audit"]["metadata"]).items():
            frames["audit"][name] = values
    integrity = verify_parquet(directory, verifier_key, frames["checkpoints"])
    Tally(progress, len(frames["audit"])).finish()
    manifest = (_read_manifest(directory) or (b"", {}))[1]
    return frames, *manifest_settings(manifest), integrity, manifest_created(manifest)


# ── several exports as one dataset ───────────────────────────────────────────


def open_dataset(
    paths: Sequence[str | os.PathLike[str]], *, verifier_keys: Sequence[str | None] | None = None
) -> pads.Dataset:
    """The audit parts of several version 2 exports as one ``pyarrow.dataset.Dataset``.

    Each export's manifest is checked first (signature, every file's SHA-256 and size, no part
    missing or unlisted, the columns' types): ExportInvalid naming the export and the file on the
    first problem. The dataset has the parts' columns plus ``ledger_id`` (from each signed
    manifest), ``developer_id`` and ``month``, taken from the manifest, not parsed from paths;
    DuckDB scans it as it is (``duckdb.sql("... FROM ds")``), Spark reads the directories
    themselves. Chains are not walked here: that is :func:`verify_parquet` (per export).
    ``verifier_keys``: one per path, the ledger's public checkpoint key obtained out of band.
    """
    directories = [Path(p) for p in paths]
    if not directories:
        raise InvalidInput("open_dataset needs at least one parquet export")
    keys = list(verifier_keys) if verifier_keys is not None else [None] * len(directories)
    if len(keys) != len(directories):
        raise InvalidInput(f"{len(keys)} verifier keys for {len(directories)} exports: give one per export")
    fmt = pads.ParquetFileFormat()
    filesystem = pafs.LocalFileSystem()
    fragments = []
    seen: dict[str, Path] = {}
    for directory, key in zip(directories, keys, strict=True):
        if not directory.is_dir():
            raise InvalidInput(f"{directory} is not a parquet export directory")
        checked = check_manifest(directory, key)
        if checked.problems:
            first = checked.problems[0]
            raise ExportInvalid(str(directory / str(first.get("file") or MANIFEST)), str(first["message"]))
        if checked.version < 2:
            raise InvalidInput(
                f"{directory} is a version 1 parquet export (one {AUDIT_FILE}); "
                "export the ledger again to read it as a dataset"
            )
        ledger_id = checked.manifest.get("ledgerId")
        if not isinstance(ledger_id, str):
            raise ExportInvalid(str(directory / MANIFEST), "names no ledgerId")
        if ledger_id in seen:
            raise InvalidInput(
                f"{seen[ledger_id]} and {directory} are exports of the same ledger {ledger_id}: "
                "their entries overlap, read one of them"
            )
        seen[ledger_id] = directory
        for part in checked.parts:
            where = (pads.field("ledger_id") == ledger_id) & (pads.field("developer_id") == part.developer_id)
            if part.month is not None:
                where = where & (pads.field("month") == part.month)
            fragments.append(
                fmt.make_fragment(str(directory / part.path), filesystem, partition_expression=where)
            )
    schema = PART_SCHEMA
    for name in ("ledger_id", *PARTITION_COLUMNS):
        schema = schema.append(pa.field(name, pa.string()))
    return pads.FileSystemDataset(fragments, schema, fmt, filesystem)
