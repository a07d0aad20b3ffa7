"""The audit table of a parquet export as a hive-partitioned dataset: where each part goes, how
the parts are written in bounded memory, and how they are checked and read back in chain order.

Why partitioned: one ``audit.parquet`` must be written and read whole by one process, and an
engine (DuckDB, Spark) can only skip what it can see. Partitioned by developer (one hash chain
each) and by month, a chain is verified on its own (in parallel with the others), a review of
one quarter reads three directories, and no file grows with the ledger's age. The layout::

    audit/developer_id=<id>/month=<YYYY-MM>/part-<n>.parquet

is the one ``pyarrow.dataset``, DuckDB (``read_parquet('OUT/audit/**/*.parquet',
hive_partitioning=true)``) and Spark (``spark.read.parquet('OUT/audit')``) discover by
themselves. As in any hive layout, the partition columns live in the paths, not in the files.

Escaping: a partition value is percent-encoded (RFC 3986: every byte of its UTF-8 but the
unreserved ``A-Z a-z 0-9 - . _ ~`` becomes ``%XX``), which is what the three engines decode, so
no value can hold a ``/``, a ``=`` or make ``..``; a missing month (a stamp that does not parse)
is Hive's ``__HIVE_DEFAULT_PARTITION__``, read as null (a value spelled like the marker gets its
first ``_`` encoded, so the two never share a directory). The signed manifest records each part's
developer and month as well, and the loader takes them from there, never from the path.

Bounded memory: the writer is fed one chunk of one chain at a time and keeps one file open; the
rows it holds are less than one row group of the open file. Within a chain the months only move
forward (the verifier refuses a time stamp that goes back), so a partition is never reopened;
should one be, the rows go to the next ``part-<n>`` rather than into a buffer.

Row groups of 65,536 rows: the unit engines parallelise and skip by (DuckDB gives each thread a
row group, Spark splits a file at row-group boundaries), with min/max statistics on ``seq`` and
``timestamp`` for pruning. At about a kilobyte per entry (the preimage is most of it) a group is
some 64 MB in memory while written, 10-20 MB compressed: big enough that per-group overhead and
statistics are noise for a scan, small enough that a writer (and each reading thread) holds one
without strain; 128k would double that for no gain in scan speed. A part file holds at most 16
row groups (1,048,576 entries), so a big chain-month is still several files engines can share.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import quote, unquote

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from ..export import ExportInvalid, file_sha256

AUDIT_DIR = "audit"
PARTITION_COLUMNS = ("developer_id", "month")
"""Columns the paths carry (hive partitions), absent from the part files themselves."""
NULL_PARTITION = "__HIVE_DEFAULT_PARTITION__"
ROW_GROUP_ROWS = 65_536
FILE_ROWS = 16 * ROW_GROUP_ROWS
BATCH_ROWS = 16_384
"""Rows converted (writing) and decoded (reading) at a time: a divisor of the row group."""
DICTIONARY_COLUMNS = (
    "agent_id",
    "agent_did",
    "grant_id",
    "principal_id",
    "action",
    "status",
    "scope",
    "offline_bundle_id",
)
"""Columns worth dictionary encoding (few distinct values); hashes and preimages are not."""
WRITE_OPTIONS: dict[str, Any] = {
    "compression": "zstd",
    "coerce_timestamps": "us",
    "allow_truncated_timestamps": True,
}
"""Microsecond instants: Spark cannot read parquet's nanosecond timestamps. The ledger writes
milliseconds, so nothing is lost; a device stamp with sub-microsecond digits keeps them only in
the preimage (the hashed bytes, which stay exact)."""
_NO_MONTH = np.iinfo(np.int64).min


def escape(value: str | None) -> str:
    """A partition value as a path segment's value (module docstring)."""
    if value is None or value == "":
        return NULL_PARTITION
    text = quote(value, safe="")
    return "%5F" + text[1:] if text == NULL_PARTITION else text  # the value, not the null marker


def unescape(segment: str) -> str | None:
    return None if segment == NULL_PARTITION else unquote(segment)


def part_path(developer_id: str, month: str | None, n: int) -> str:
    """The relative (POSIX) path of a part, as the manifest names it."""
    return f"{AUDIT_DIR}/developer_id={escape(developer_id)}/month={escape(month)}/part-{n}.parquet"


def months(stamps: pa.ChunkedArray | pa.Array) -> np.ndarray:
    """Months since 1970-01 (int64) of UTC instants; :data:`_NO_MONTH` where missing."""
    ns = stamps.cast(pa.int64()).to_numpy(zero_copy_only=False)
    missing = np.asarray(stamps.is_null().to_numpy(zero_copy_only=False), dtype=bool)
    ns = np.where(missing, 0, ns)
    out = ns.astype("datetime64[ns]").astype("datetime64[M]").astype(np.int64)
    out[missing] = _NO_MONTH
    return out


def month_text(code: int) -> str | None:
    return None if code == _NO_MONTH else str(np.datetime64(int(code), "M"))


@dataclass
class _Open:
    """The one part file being written."""

    key: tuple[str, str | None]
    path: str
    writer: pq.ParquetWriter
    rows: int = 0
    first_seq: int | None = None
    last_seq: int | None = None


class PartWriter:
    """Writes each chain's rows, in seq order, into its month partitions (one file open at a time).

    ``files`` collects each finished part's manifest record, keyed by relative path.
    """

    def __init__(self, root: Path, schema: pa.Schema) -> None:
        self.root = root
        self.schema = schema
        self.files: dict[str, dict[str, Any]] = {}
        self.rows = 0
        self._open: _Open | None = None
        self._pending: list[pa.Table] = []
        self._pending_rows = 0
        self._parts: dict[tuple[str, str | None], int] = {}

    @property
    def pending_rows(self) -> int:
        """Rows taken but not yet written (less than a row group)."""
        return self._pending_rows

    def add(self, developer_id: str, table: pa.Table) -> None:
        """One chunk of one chain (``timestamp`` typed, no partition columns), split by month."""
        codes = months(table.column("timestamp"))
        cuts = [0, *(np.flatnonzero(codes[1:] != codes[:-1]) + 1).tolist(), len(codes)]
        for start, end in itertools.pairwise(cuts):
            self._append((developer_id, month_text(int(codes[start]))), table.slice(start, end - start))

    def _append(self, key: tuple[str, str | None], piece: pa.Table) -> None:
        if self._open is None or self._open.key != key:
            self._close()
        while piece.num_rows:
            if self._open is None:
                self._start(key)
            assert self._open is not None
            room = FILE_ROWS - self._open.rows - self._pending_rows
            taken = piece.slice(0, room)
            piece = piece.slice(taken.num_rows)
            self._pending.append(taken)
            self._pending_rows += taken.num_rows
            while self._pending_rows >= ROW_GROUP_ROWS:
                self._write(ROW_GROUP_ROWS)
            if self._open.rows + self._pending_rows >= FILE_ROWS:
                self._close()

    def _start(self, key: tuple[str, str | None]) -> None:
        n = self._parts.get(key, 0)
        self._parts[key] = n + 1
        relative = part_path(key[0], key[1], n)
        target = self.root / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        writer = pq.ParquetWriter(
            target, self.schema, use_dictionary=list(DICTIONARY_COLUMNS), **WRITE_OPTIONS
        )
        self._open = _Open(key, relative, writer)

    def _write(self, rows: int) -> None:
        """The first ``rows`` pending rows as one row group of the open file."""
        assert self._open is not None
        table = pa.concat_tables(self._pending)
        group, rest = table.slice(0, rows), table.slice(rows)
        self._open.writer.write_table(group, row_group_size=ROW_GROUP_ROWS)
        seqs = group.column("seq")
        if self._open.first_seq is None:
            self._open.first_seq = int(seqs[0].as_py())
        self._open.last_seq = int(seqs[-1].as_py())
        self._open.rows += group.num_rows
        self.rows += group.num_rows
        self._pending = [rest] if rest.num_rows else []
        self._pending_rows = rest.num_rows

    def _close(self) -> None:
        current = self._open
        if current is None:
            return
        if self._pending_rows:
            self._write(self._pending_rows)
        current.writer.close()
        self._open = None
        path = self.root / current.path
        self.files[current.path] = {
            "sha256": file_sha256(path),
            "bytes": path.stat().st_size,
            "rows": current.rows,
            "developerId": current.key[0],
            "month": current.key[1],
            "firstSeq": current.first_seq,
            "lastSeq": current.last_seq,
        }

    def close(self) -> None:
        self._close()


# ── the manifest's parts, checked against the disk ───────────────────────────


@dataclass(frozen=True)
class Part:
    """One audit part as the signed manifest lists it."""

    path: str
    developer_id: str
    month: str | None
    rows: int
    first_seq: int
    sha256: str
    bytes: int


def listed_parts(files: Mapping[str, Any]) -> list[Part]:
    """The audit parts a v2 manifest lists, in chain order (developer, then first seq).

    Raises ExportInvalid for a record that does not say what a part is, or whose path is not the
    one its developer and month give (a part moved to another chain's directory).
    """
    parts = []
    for name, record in files.items():
        if not name.startswith(AUDIT_DIR + "/"):
            continue
        try:
            if not isinstance(record, dict):
                raise TypeError
            developer_id, month = record["developerId"], record["month"]
            rows, first, size = int(record["rows"]), int(record["firstSeq"]), int(record["bytes"])
            digest = str(record["sha256"])
            if not isinstance(developer_id, str) or not (month is None or isinstance(month, str)):
                raise TypeError
        except (KeyError, TypeError, ValueError):
            raise ExportInvalid("manifest.json", f"the record of {name} is incomplete") from None
        if not name.startswith(part_path(developer_id, month, 0).rsplit("/", 1)[0] + "/part-"):
            raise ExportInvalid(name, f"is not where developer {developer_id}, month {month} belong")
        parts.append(Part(name, developer_id, month, rows, first, digest, size))
    return sorted(parts, key=lambda p: (p.developer_id, p.first_seq))


def unlisted_files(directory: Path, listed: set[str]) -> list[str]:
    """Files under ``audit/`` the manifest does not list (a reader would count their rows)."""
    root = directory / AUDIT_DIR
    if not root.is_dir():
        return []
    found = (p.relative_to(directory) for p in root.rglob("*") if not p.is_dir())
    return sorted(PurePosixPath(p).as_posix() for p in found if PurePosixPath(p).as_posix() not in listed)


def schema_problem(path: Path, expected: pa.Schema) -> str | None:
    """What is wrong with a part's columns, or None (only the expected columns are judged)."""
    try:
        actual = pq.read_schema(path)
    except (OSError, pa.ArrowException) as exc:
        return f"is not a readable parquet file ({exc})"
    for field in expected:
        index = actual.get_field_index(field.name)
        if index < 0:
            return f"has no column {field.name}"
        found = actual.field(index).type
        if not _same_type(found, field.type):
            return f"column {field.name} is {found}, not {field.type}"
    return None


def _same_type(found: pa.DataType, wanted: pa.DataType) -> bool:
    if pa.types.is_timestamp(wanted):  # any unit, but an instant in UTC
        return pa.types.is_timestamp(found) and str(getattr(found, "tz", None)) in {"UTC", "+00:00"}
    if pa.types.is_string(wanted):
        return pa.types.is_string(found) or pa.types.is_large_string(found)
    return bool(found == wanted)


# ── reading a chain back ─────────────────────────────────────────────────────


def chain_batches(
    directory: Path, parts: Sequence[Part], columns: Sequence[str]
) -> Iterator[tuple[Part, pa.RecordBatch]]:
    """A chain's ``columns`` in seq order, a batch at a time, across its parts.

    Raises ExportInvalid naming the part when one cannot be read (never a partial chain).
    """
    for part in parts:
        try:
            source = pq.ParquetFile(directory / part.path)
            for batch in source.iter_batches(batch_size=BATCH_ROWS, columns=list(columns)):
                yield part, batch
        except (OSError, pa.ArrowException) as exc:
            raise ExportInvalid(part.path, f"cannot be read ({exc})") from None


def verifier_rows(
    batches: Iterator[tuple[Part, pa.RecordBatch]],
    seen: Callable[[Part, pa.RecordBatch], None] | None = None,
) -> Iterator[tuple[int, str, str]]:
    """``(seq, preimage, hash)`` for ``verify_rows``; ``seen`` gets each batch as it is read."""
    for part, batch in batches:
        if seen is not None:
            seen(part, batch)
        seqs = batch.column("seq").to_pylist()
        texts = batch.column("preimage").to_pylist()
        hashes = batch.column("hash").to_pylist()
        for seq, text, digest in zip(seqs, texts, hashes, strict=True):
            yield (seq if isinstance(seq, int) else -1, text or "", digest or "")
