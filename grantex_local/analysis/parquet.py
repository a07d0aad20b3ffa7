"""Parquet exports: every table as one ``.parquet`` file, for loading large ledgers fast.

Why a second export format: a bundle is JSON Lines, made to be verified and read by anyone,
and reading a million JSON lines takes a while. A parquet export holds the same tables with the
columns of :class:`~grantex_local.analysis.Dataset` (typed: text, integers, UTC instants; lists
and objects as JSON text), so pandas reads it column-wise. The audit table keeps each entry's
``preimage`` (the bytes that were hashed), so the chain is re-verified on loading with the
library's own :func:`~grantex_local.audit.chain.verify_rows`, and ``manifest.json`` (SHA-256,
size and rows of every file, each chain's head and root, the ledger's settings) is signed with
the ledger's Ed25519 checkpoint key in ``manifest.sig`` exactly as a bundle's manifest is.

Like a bundle, the export refuses to sign a chain that does not verify (ChainBroken).
"""

from __future__ import annotations

import base64
import contextlib
import gc
import itertools
import json
import os
import sqlite3
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from ..audit import chain as audit_chain
from ..audit import checkpoints as audit_checkpoints
from ..audit import note
from ..audit.note import CheckpointInvalid
from ..clock import iso
from ..errors import ChainBroken, LedgerCorrupt
from ..export import MANIFEST, SIGNATURE, file_sha256, write_signed_export
from ..founding import Ledger
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
from .sources import Loaded, ledger_frames, ledger_settings, problem, readonly_connection

VERSION = 1
AUDIT_FILE = "audit.parquet"
FILES = tuple(f"{table}.parquet" for table in SCHEMAS)


# ── arrow conversion ─────────────────────────────────────────────────────────


def _arrow_type(kind: str) -> pa.DataType:
    return {
        "str": pa.string(),
        "int": pa.int64(),
        "nint": pa.int64(),
        "float": pa.float64(),
        "bool": pa.bool_(),
        "nbool": pa.bool_(),
        "time": pa.timestamp("ns", tz="UTC"),
        "json": pa.string(),
    }[kind]


def _schema(table: str, with_preimage: bool = False) -> pa.Schema:
    fields = [pa.field(name, _arrow_type(kind)) for name, kind in SCHEMAS[table]]
    if with_preimage:
        fields.append(pa.field("preimage", pa.string()))
    return pa.schema(fields)


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
            arrays.append(pa.array(np.asarray(amounts, dtype=np.float64), type=pa.float64()))
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


class _AuditWriter:
    """Writes the rows the chain verifier walks past to ``audit.parquet``, a chunk at a time."""

    def __init__(self, writer: pq.ParquetWriter) -> None:
        self.writer = writer
        self.buffer: list[tuple[Any, ...]] = []
        self.rows = 0

    def passing(self, cursor: Iterable[tuple[Any, ...]]) -> Iterator[tuple[int, str, str]]:
        """``(seq, preimage, hash)`` for the verifier, buffering each full row for the file."""
        for row in cursor:
            self.buffer.append(row)
            if len(self.buffer) >= CHUNK_ROWS:
                self.flush()
            yield row[0], row[-1], row[1]

    def flush(self) -> None:
        if self.buffer:
            self.writer.write_table(_audit_chunk_table(self.buffer))
            self.rows += len(self.buffer)
            self.buffer = []


def _write_audit(
    ledger: Ledger, conn: Any, path: Path, stored: pd.DataFrame
) -> tuple[int, list[dict[str, Any]]]:
    """Stream every chain into ``audit.parquet`` while ``verify_rows`` walks it (one pass)."""
    reports = []
    developers = [
        r[0]
        for r in conn.execute(
            "SELECT id FROM developers UNION SELECT developer_id FROM audit_entries ORDER BY 1"
        )
    ]
    sql = AUDIT_SQL.format(extra=", preimage", where=" WHERE developer_id = ?")
    with pq.ParquetWriter(path, _schema("audit", with_preimage=True)) as writer:
        out = _AuditWriter(writer)
        for developer_id in developers:
            notes = [
                audit_checkpoints.verify_against(ledger, developer_id, text)
                for text in stored.loc[stored["developer_id"] == developer_id, "signed_checkpoint"]
            ]
            try:
                with contextlib.closing(conn.execute(sql, (developer_id,))) as cursor:
                    report = audit_chain.verify_rows(
                        out.passing(cursor),
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
            out.flush()
            reports.append(report.to_dict())
    return out.rows, reports


def export_parquet(
    ledger: Ledger | str | os.PathLike[str], out_dir: str | os.PathLike[str], *, force: bool = False
) -> dict[str, Any]:
    """Write a parquet export of ``ledger`` to the directory ``out_dir``; returns the manifest plus ``path``.

    Everything is read from one read-only snapshot and written to a temporary directory beside
    ``out_dir`` that is renamed into place at the end. ``force`` replaces an earlier parquet
    export (or an empty directory), nothing else. Raises ChainBroken rather than sign a broken chain.
    """
    if not isinstance(ledger, Ledger):
        with Ledger(ledger, create=False) as opened:
            return export_parquet(opened, out_dir, force=force)
    collecting = gc.isenabled()
    gc.disable()  # a million rows of new objects and no cycles: collections would only slow it
    try:
        return write_signed_export(ledger, out_dir, force=force, fmt=PARQUET_FORMAT, kind="parquet export",
                                   write=lambda tmp, key_text: _write_export(ledger, tmp, key_text))
    finally:
        if collecting:
            gc.enable()


def _write_export(ledger: Ledger, directory: Path, key_text: str) -> dict[str, Any]:
    conn = readonly_connection(ledger.path)
    try:
        conn.execute("BEGIN")
        created_at = iso(ledger.now())
        frames = ledger_frames(conn)
        settings = ledger_settings(conn)
        rows: dict[str, int] = {}
        for table, frame in frames.items():
            pq.write_table(frame_to_arrow(frame, table), directory / f"{table}.parquet")
            rows[table] = len(frame)
        rows["audit"], chains = _write_audit(ledger, conn, directory / AUDIT_FILE, frames["checkpoints"])
        conn.execute("COMMIT")
    finally:
        conn.close()
    files = {}
    for table in SCHEMAS:
        path = directory / f"{table}.parquet"
        files[path.name] = {"sha256": file_sha256(path), "bytes": path.stat().st_size, "rows": rows[table]}
    return {
        "format": PARQUET_FORMAT,
        "version": VERSION,
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


def _check_manifest(
    directory: Path, verifier_key: str | None
) -> tuple[dict[str, Any], list[dict[str, Any]], tuple[str, Any] | None]:
    """(manifest, problems, (key name, public key)) — the signature and every file's SHA-256."""
    problems: list[dict[str, Any]] = []
    try:
        manifest_bytes = (directory / MANIFEST).read_bytes()
        manifest = json.loads(manifest_bytes)
        if not isinstance(manifest, dict):
            raise ValueError
    except (OSError, ValueError):
        return (
            {},
            [
                problem(
                    "ExportInvalid",
                    None,
                    None,
                    "export_invalid",
                    f"{MANIFEST} is missing or not a JSON object",
                    file=MANIFEST,
                )
            ],
            None,
        )
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
            problem(
                "ExportInvalid",
                None,
                None,
                "export_invalid",
                f"{MANIFEST} does not match its signature in {SIGNATURE} ({exc or 'invalid'})",
                file=SIGNATURE,
            )
        )
    files = manifest.get("files")
    listed = files if isinstance(files, dict) else {}
    for name in FILES:
        path = directory / name
        expected = listed.get(name)
        if not path.is_file() or not isinstance(expected, dict):
            problems.append(
                problem(
                    "ExportInvalid",
                    None,
                    None,
                    "export_invalid",
                    f"{name} is missing from the export or its manifest",
                    file=name,
                )
            )
        elif path.stat().st_size != expected.get("bytes") or file_sha256(path) != expected.get("sha256"):
            problems.append(
                problem(
                    "ExportInvalid",
                    None,
                    None,
                    "export_invalid",
                    f"{name} does not match the SHA-256 and size in {MANIFEST} (altered)",
                    file=name,
                )
            )
    return manifest, problems, key


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


def _preimage_rows(path: Path) -> Iterator[tuple[str, tuple[int, str, str]]]:
    """(developer, (seq, preimage, hash)) for every entry of ``audit.parquet``, a batch at a time."""
    source = pq.ParquetFile(path)
    for batch in source.iter_batches(
        batch_size=CHUNK_ROWS, columns=["developer_id", "seq", "preimage", "hash"]
    ):
        developers, seqs, texts, hashes = (batch.column(i).to_pylist() for i in range(4))
        for developer_id, seq, text, digest in zip(developers, seqs, texts, hashes, strict=True):
            yield str(developer_id), (seq if isinstance(seq, int) else -1, text or "", digest or "")


def verify_parquet(directory: Path, verifier_key: str | None, checkpoints: pd.DataFrame) -> Integrity:
    """The signed manifest, every file's hash, and each chain through ``verify_rows`` with its
    signed checkpoints."""
    manifest, problems, key = _check_manifest(directory, verifier_key)
    stored = _stored_checkpoints(checkpoints, key, problems)
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
    declared = {c.get("developerId"): c for c in manifest.get("chains", []) if isinstance(c, dict)}
    for developer_id, chain in reports.items():
        claim = declared.get(developer_id, {})
        if (claim.get("entries"), claim.get("headHash")) != (chain["entries"], chain["headHash"]):
            problems.append(
                problem(
                    "ExportInvalid",
                    developer_id,
                    None,
                    "export_invalid",
                    f"chain of developer {developer_id} is recorded as {claim} in {MANIFEST}, "
                    f"the entries give {chain['entries']} entries, head {chain['headHash']}",
                    file=MANIFEST,
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


def load_parquet(path: Path, verifier_key: str | None) -> Loaded:
    """Read a parquet export (``load`` calls this) and verify it."""
    directory = path.parent if path.is_file() else path
    frames = {}
    for table in SCHEMAS:
        file = directory / f"{table}.parquet"
        if not file.is_file():
            frames[table] = tidy({}, table)
            continue
        names = [name for name, _ in SCHEMAS[table]]
        available = set(pq.read_schema(file).names)
        frames[table] = arrow_to_frame(
            pq.read_table(file, columns=[n for n in names if n in available]), table
        )
        if table == "audit" and not set(OFFLINE_COLUMNS) <= available:  # written before they were stored
            for name, values in offline_frame(frames[table]["metadata"]).items():
                frames[table][name] = values
    integrity = verify_parquet(directory, verifier_key, frames["checkpoints"])
    manifest: dict[str, Any] = {}
    with contextlib.suppress(OSError, ValueError):
        manifest = json.loads((directory / MANIFEST).read_text(encoding="utf-8"))
    settings = dict(manifest.get("settings") or {})
    settings.setdefault("issuer", manifest.get("issuer"))
    as_of = None
    with contextlib.suppress(ValueError, TypeError):
        as_of = to_utc(manifest["createdAt"]) if manifest.get("createdAt") else None
    return frames, settings, integrity, as_of
