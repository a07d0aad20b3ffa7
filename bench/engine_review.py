"""The review on DuckDB at auditor scale (issue 17): a parquet export of 1M, 3M and 10M entries
loaded with ``load(..., engine="duckdb")`` (manifest checked, every chain walked by the streaming
verifier, the audit parts left on disk) and reviewed by ``run_all``, each size in a fresh process.

Floors, measured in the same run on the same machine:
- time: DuckDB scanning the same audit parts once with one GROUP BY (developer, action, status:
  count, first and last instant, sum of amounts), with the same memory limit: what reading the
  dataset at all costs, so the ratio says how many such scans the twelve checks are worth (the
  issue sets no bar; ours is at most 500, ``>= 0.002``: the checks make a few dozen scans, joins
  and windows, and the anomaly detectors' per-agent windows sort the whole log);
- memory: the peak resident size of that scan's process.

The ledgers and their exports are cached (``--cache``, as :mod:`bench.parquet_export`): the 10M
ledger takes about 15 minutes to build and 7 to export.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from .audit import peak_rss_mb, rss_mb
from .common import Row
from .parquet_export import BUILDER_VERSION, cached_ledger, default_cache

DEFAULT_ENTRIES = (1_000_000, 3_000_000)
SMOKE_ENTRIES = (3_000, 6_000)


def cached_export(cache: Path, entries: int) -> Path:
    """A parquet export of the cached ledger of ``entries`` entries, made when missing (in a
    temporary directory renamed into place, so an interrupted export is never reused)."""
    from grantex_local.analysis import export_parquet

    home = cache / f"parquet-v{BUILDER_VERSION}-{entries}"
    if (home / "manifest.json").is_file():
        return home
    ledger, _, _ = cached_ledger(cache, entries)
    building = Path(tempfile.mkdtemp(prefix=f".exporting-{entries}-", dir=cache))
    try:
        export_parquet(ledger, building / "export")
        (building / "export").rename(home)
    finally:
        shutil.rmtree(building, ignore_errors=True)
    return home


def _ours(directory: str) -> dict[str, Any]:
    import pandas  # noqa: F401  (the baseline includes pandas, as any analysis session does)

    from grantex_local.analysis import load, run_all

    baseline = rss_mb()
    start = time.perf_counter()
    with load(directory, engine="duckdb") as ds:
        load_seconds = time.perf_counter() - start
        load_peak = peak_rss_mb()
        start = time.perf_counter()
        results = run_all(ds)
        checks_seconds = time.perf_counter() - start
        entries = ds.audit.count()
        limit = getattr(ds.engine, "memory_limit", "")
        return {"entries": entries, "baseline_mb": baseline, "load_seconds": load_seconds,
                "load_peak_mb": load_peak, "checks_seconds": checks_seconds, "peak_mb": peak_rss_mb(),
                "verified": ds.integrity.valid, "memory_limit": limit,
                "failed": [r.id for r in results if not r.passed],
                "evidence": {r.id: [len(r.evidence), r.evidence_rows] for r in results}}


def _floor(directory: str) -> dict[str, Any]:
    from grantex_local.analysis.engines import DuckDBEngine

    baseline = rss_mb()
    with DuckDBEngine() as engine:
        pattern = str(Path(directory) / "audit" / "**" / "*.parquet")
        start = time.perf_counter()
        groups = engine.arrow(
            f"SELECT developer_id, action, status, COUNT(*) AS n, MIN(timestamp) AS first, "
            f"MAX(timestamp) AS last, SUM(amount) AS amount "
            f"FROM read_parquet('{pattern}', hive_partitioning = true) GROUP BY developer_id, action, status"
        )
        seconds = time.perf_counter() - start
        entries = sum(groups.column("n").to_pylist())
    return {"entries": entries, "seconds": seconds, "baseline_mb": baseline, "peak_mb": peak_rss_mb()}


def _child(mode: str, directory: Path) -> dict[str, Any]:
    done = subprocess.run([sys.executable, "-m", "bench.engine_review", mode, str(directory)],
                          capture_output=True, text=True, cwd=Path(__file__).resolve().parents[1])
    if done.returncode != 0:
        raise RuntimeError(
            f"the engine review benchmark's {mode} child failed on {directory}:\n{done.stderr}"
        )
    result: dict[str, Any] = json.loads(done.stdout)
    return result


def review(sizes: tuple[int, ...] = DEFAULT_ENTRIES, cache: Path | None = None) -> list[Row]:
    """Each size: the review and the floor scan, each in its own process."""
    cache = default_cache() if cache is None else cache
    measured = []
    for n in sorted(sizes):
        directory = cached_export(cache, n)
        ours, floor = _child("ours", directory), _child("floor", directory)
        if ours["entries"] != n or floor["entries"] != n:
            raise AssertionError(f"{n} entries exported, the review read {ours['entries']}, "
                                 f"the floor {floor['entries']}")
        measured.append((n, ours, floor))
    rows = []
    for n, ours, floor in measured:
        rows.append(Row(
            f"review on DuckDB, all checks, {n:,} entries", "entries/s", n / ours["checks_seconds"],
            n / floor["seconds"], ">= 0.002",
            "DuckDB scanning the same audit parts once: one GROUP BY (developer, action, status)",
            f"checks {ours['checks_seconds']:.1f} s, floor {floor['seconds']:.2f} s; load (manifest + "
            f"every chain walked) {ours['load_seconds']:.1f} s; failed checks {ours['failed']}; "
            f"chain {'verified' if ours['verified'] else 'BROKEN'}; DuckDB memory limit "
            f"{ours['memory_limit']}; evidence rows kept/found "
            + ", ".join(f"{k}: {v[0]}/{v[1]}" for k, v in ours["evidence"].items() if v[1])))
        rows.append(Row(
            f"review on DuckDB, load + all checks, peak memory, {n:,} entries", "MB", ours["peak_mb"],
            floor["peak_mb"], "< 2048 MB", "peak RSS of the floor scan's process",
            f"load alone peaks at {ours['load_peak_mb']:.0f} MB; interpreter with the library imported "
            f"{ours['baseline_mb']:.0f} MB; ratio here is memory ours/floor"))
    (small, s_ours, _), (large, l_ours, _) = measured[0], measured[-1]
    rows.append(Row(
        "review on DuckDB, peak memory flat", "MB", l_ours["peak_mb"], s_ours["peak_mb"], "<= 1.25",
        f"peak RSS of the same review at {small:,} entries",
        f"{large:,} vs {small:,} entries ({large / small:.1f}x); peaks "
        + ", ".join(f"{o['peak_mb']:.0f}" for _, o, _ in measured) + " MB; ratio here is memory ours/floor"))
    return rows


if __name__ == "__main__":
    mode, target = sys.argv[1], sys.argv[2]
    print(json.dumps(_ours(target) if mode == "ours" else _floor(target)))
