"""Loading a ledger file, an export bundle or a parquet export into pandas DataFrames.

Why one loader for three sources: an auditor may be handed any of them, and
every check must judge the same frames whatever the source, so the three
paths end in the same tidy schema (:data:`SCHEMAS`): snake_case columns,
time stamps as ``datetime64[ns, UTC]``, text as pandas' ``str`` dtype, lists
and objects as Python values.

Integrity is never re-implemented here. A ledger is checked with
:func:`grantex_local.audit.chain.verify_chain` (what ``grantex-local audit
verify`` runs) against its latest signed checkpoint, a bundle with
:func:`grantex_local.export.verify_bundle` (what ``verify-export`` runs), a
parquet export with :func:`grantex_local.audit.chain.verify_rows` over the
stored preimages. A failure is recorded in :class:`Integrity`, not raised:
a broken log is exactly what an auditor needs to look at, so it still loads.

The tidy schema, the :class:`Dataset` and the pieces the readers share live one floor down, in
:mod:`.frames` (the names the package exported from here are importable from here still).
"""

from __future__ import annotations

import contextlib
import gc
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, overload

import pandas as pd

from .. import errors
from ..progress import Progress
from .frames import BUNDLE_FORMAT, PARQUET_FORMAT, SCHEMAS, Dataset, Integrity, derive_grants, to_utc

if TYPE_CHECKING:
    from .engines import EngineDataset
    from .sources import Loaded

__all__ = ["SCHEMAS", "Dataset", "Integrity", "detect_kind", "load"]


# ── the public entry point ───────────────────────────────────────────────────


@overload
def load(source: Any, *, verifier_key: str | None = None, as_of: Any = None,
         progress: Progress | None = None, engine: None = None, workers: int = 1) -> Dataset: ...


@overload
def load(source: Any, *, verifier_key: str | None = None, as_of: Any = None,
         progress: Progress | None = None, engine: Any, workers: int = 1) -> Dataset | EngineDataset: ...


def load(source: Any, *, verifier_key: str | None = None, as_of: Any = None,
         progress: Progress | None = None, engine: Any = None, workers: int = 1) -> Dataset | EngineDataset:
    """Load a ledger file, an export bundle directory or a parquet export directory.

    ``source`` may also be a :class:`~grantex_local.Ledger` or a :class:`~grantex_local.Grantex`
    (its file is read). ``verifier_key`` is the ledger's public checkpoint key obtained out of
    band (``grantex-local audit public-key``); without it a bundle or parquet export is checked
    with the key it carries itself, which only proves self-consistency (the integrity record says
    so). ``as_of`` overrides the instant grant statuses are computed at.

    ``progress`` (see :mod:`grantex_local.progress`) is told the work as it goes: a ledger's
    audit entries verified, then read (the total is twice the entries); a bundle's rows checked
    by the export verifier, then its audit entries read; a parquet export's rows verified, then read.

    ``engine`` (``"duckdb"``, ``"spark"``, a SparkSession or an open
    :class:`~grantex_local.analysis.engines.Engine`) gives an
    :class:`~grantex_local.analysis.engines.EngineDataset` instead: the small tables as pandas,
    the audit log left in the engine (a parquet export scanned where it lies, a ledger streamed
    into a temporary parquet export first), so its size is bounded by disk, not memory; close it
    (or use it in a ``with``) when done. ``None`` or ``"pandas"`` loads every table as pandas, as
    small ledgers and hand-edited frames want. ``workers`` walks a parquet export's chains in that
    many processes.
    """
    path = _source_path(source)
    kind = detect_kind(path)
    if engine is not None and engine != "pandas":
        from .engines import load_into

        return load_into(
            path, kind, engine, verifier_key=verifier_key, as_of=as_of, workers=workers, progress=progress,
            read_frames=lambda: load(path, verifier_key=verifier_key, as_of=as_of, progress=progress),
        )
    reader: Callable[..., Loaded]
    if kind == "ledger":
        from .sources import load_ledger as reader
    elif kind == "bundle":
        from .sources import load_bundle as reader
    else:
        from .parquet import load_parquet as reader
    collecting = gc.isenabled()
    gc.disable()  # loading makes millions of objects and no cycles: collections would only slow it
    try:
        frames, settings, integrity, default_as_of = reader(path, verifier_key, progress=progress)
    finally:
        if collecting:
            gc.enable()
    when = _as_of(as_of, default_as_of, frames["audit"])
    frames["grants"] = derive_grants(frames["grants"], frames["auth_requests"], when)
    return Dataset(**frames, kind=kind, path=str(path), settings=settings, integrity=integrity, as_of=when)


def _source_path(source: Any) -> Path:
    ledger = getattr(source, "ledger", source)  # a Grantex client holds its Ledger
    path = getattr(ledger, "path", ledger)
    if not isinstance(path, str | os.PathLike):
        raise errors.InvalidInput(
            f"cannot load {type(source).__name__}: give a path to a ledger or an export"
        )
    return Path(path)


def detect_kind(path: Path) -> str:
    """``ledger``, ``bundle`` or ``parquet``, from what is at ``path`` (never from the name alone)."""
    if path.is_file() and path.name == "manifest.json":
        path = path.parent
    if path.is_dir():
        manifest = path / "manifest.json"
        fmt = None
        if manifest.is_file():
            with contextlib.suppress(OSError, ValueError, AttributeError):
                fmt = json.loads(manifest.read_text(encoding="utf-8")).get("format")
        if fmt == PARQUET_FORMAT or (fmt is None and any(path.glob("*.parquet"))):
            return "parquet"
        if fmt == BUNDLE_FORMAT or (fmt is None and (path / "audit_entries.jsonl").is_file()):
            return "bundle"
        raise errors.InvalidInput(f"{path} is neither an export bundle nor a parquet export")
    if path.is_file():
        with open(path, "rb") as handle:
            if handle.read(16) == b"SQLite format 3\x00":
                return "ledger"
        raise errors.InvalidInput(f"{path} is not a ledger file (not SQLite) nor an export directory")
    raise errors.InvalidInput(f"{path} does not exist")


def _as_of(given: Any, default: pd.Timestamp | None, audit: pd.DataFrame) -> pd.Timestamp:
    if given is not None:
        return to_utc(given)
    when = default if default is not None else pd.Timestamp.now(tz="UTC")
    if default is None and len(audit):
        last = audit["timestamp"].max()
        if pd.notna(last) and last > when:
            when = last
    return when.as_unit("ns")
