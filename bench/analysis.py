"""Analysis benchmark (issue 5): load a 1,000,000-entry ledger and run every compliance check.

The ledger is the sample generator's ``size="large"`` (realistic entries: a few months of dozens
of agents, delegation trees, revocations and the planted problems), built through the library.
Each measurement runs in a fresh process, so one's memory cannot hide in another's.

Floors, measured in the same run on the same machine:
- load: ``pd.read_sql_query`` of the bare audit table (its stored columns ``seq, preimage,
  hash``), which decodes, verifies and types nothing; the ratio says what verification, parsing
  and typing cost on top of reading the rows at all;
- all checks: the same read, so the ratio says how many bare reads of the table the eleven checks
  cost (loading not included);
- peak memory: the interpreter with pandas and the library imported (its resident size before
  loading) plus one copy of the loaded audit DataFrame (``memory_usage(deep=True)``);
- peak over what stays loaded: the peak during loading next to the resident size once the frames
  are built (what loading cannot avoid). Loading must not hold more than one copy of the audit
  table: a second copy at any moment would lift the peak by at least one copy of the frame over
  that floor, which is the target. (``memory_usage(deep=True)`` does not count what the metadata
  dicts hold, so the resident size is above baseline + one copy.)

Peak resident sizes are read from ``/proc/self/status`` (VmHWM) in the child, as in
:mod:`bench.audit`.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from .audit import peak_rss_mb, rss_mb
from .common import Row

MB = 1024 * 1024


def build_ledger(path: Path, entries: int) -> dict[str, Any]:
    """The sample generator's large ledger with exactly ``entries`` audit entries; its manifest."""
    from grantex_local.sample import generate

    return generate(path, size="large", entries=entries, force=True)


def _child(mode: str, path: Path, review: dict[str, Any] | None = None) -> dict[str, Any]:
    args = [sys.executable, "-m", "bench.analysis", mode, str(path), json.dumps(review or {})]
    out = subprocess.run(args, check=True, capture_output=True, text=True,
                         cwd=Path(__file__).resolve().parents[1])
    return json.loads(out.stdout)


def _ours(path: str, review: dict[str, Any]) -> dict[str, Any]:
    """Load, then every check: times, the audit frame's size, resident memory before and peaks."""
    import pandas  # noqa: F401  (the baseline includes pandas, as any analysis session does)

    from grantex_local.analysis import load, run_all

    baseline = rss_mb()
    start = time.perf_counter()
    ds = load(path, as_of=review.pop("as_of", None))
    load_seconds = time.perf_counter() - start
    load_peak = peak_rss_mb()
    resident = rss_mb()
    one_copy = float(ds.audit.memory_usage(deep=True).sum()) / MB
    if "off_hours" in review:
        review["off_hours"] = tuple(review["off_hours"])
    start = time.perf_counter()
    results = run_all(ds, **review)
    checks_seconds = time.perf_counter() - start
    return {"entries": len(ds.audit), "baseline_mb": baseline, "load_seconds": load_seconds,
            "load_peak_mb": load_peak, "resident_after_load_mb": resident,
            "audit_frame_mb": one_copy, "checks_seconds": checks_seconds,
            "peak_mb": peak_rss_mb(), "verified": ds.integrity.valid,
            "failed": [r.id for r in results if not r.passed]}


def _floor(path: str) -> dict[str, Any]:
    import sqlite3

    import pandas as pd

    baseline = rss_mb()
    conn = sqlite3.connect(path)
    start = time.perf_counter()
    frame = pd.read_sql_query("SELECT seq, preimage, hash FROM audit_entries", conn)
    seconds = time.perf_counter() - start
    return {"entries": len(frame), "seconds": seconds, "baseline_mb": baseline, "peak_mb": peak_rss_mb(),
            "frame_mb": float(frame.memory_usage(deep=True).sum()) / MB}


def load_and_check(workdir: Path, entries: int = 1_000_000, repeats: int = 1) -> list[Row]:
    """Build the ledger, then time loading and all checks against their floors (best of ``repeats``)."""
    path = workdir / "analysis.db"
    started = time.perf_counter()
    manifest = build_ledger(path, entries)
    built = time.perf_counter() - started
    review = dict(manifest["reviewParameters"], as_of=manifest["period"]["end"])
    ours = [_child("ours", path, review) for _ in range(repeats)]
    floors = [_child("floor", path) for _ in range(repeats)]
    best_load = min(ours, key=lambda r: r["load_seconds"])
    best_checks = min(ours, key=lambda r: r["checks_seconds"])
    floor = min(floors, key=lambda r: r["seconds"])
    n = best_load["entries"]
    one_copy = best_load["audit_frame_mb"]
    memory_floor = best_load["baseline_mb"] + one_copy
    resident = best_load["resident_after_load_mb"]
    expected = sorted({int(c) for p in manifest["planted"].values() for c in p["foundBy"]})
    findings = "planted problems found" if best_checks["failed"] == expected else (
        f"failed checks {best_checks['failed']}, expected {expected}")
    floor_rate = n / floor["seconds"]
    return [
        Row("analysis load, ledger file (verify + frames)", "entries/s", n / best_load["load_seconds"],
            floor_rate, ">= 0.10", "pd.read_sql_query of the bare audit table (seq, preimage, hash)",
            f"n={n}; load {best_load['load_seconds']:.1f} s, floor {floor['seconds']:.1f} s; "
            f"ledger built in {built:.0f} s; chain {'verified' if best_load['verified'] else 'BROKEN'}"),
        Row("analysis, all eleven checks", "entries/s", n / best_checks["checks_seconds"], floor_rate,
            ">= 0.10", "one bare read of the audit table (as above)",
            f"checks {best_checks['checks_seconds']:.1f} s; {findings}"),
        Row("analysis load, peak memory", "MB", best_load["load_peak_mb"], memory_floor, "<= 2x floor",
            "resident size with pandas imported + one copy of the audit frame (memory_usage deep)",
            f"one copy {one_copy:.0f} MB, baseline {best_load['baseline_mb']:.0f} MB; the bare read alone "
            f"peaks at {floor['peak_mb']:.0f} MB; ratio here is memory ours/floor"),
        Row("analysis load, peak over what stays loaded", "MB", best_load["load_peak_mb"], resident,
            f"< {(resident + one_copy) / resident:.2f} (no second copy)",
            "resident size once the frames are built (they must all be in memory)",
            f"a second copy of the audit frame at any moment of the load would put the peak at "
            f"{resident + one_copy:.0f} MB or more; ratio here is memory ours/floor"),
        Row("analysis load + all checks, peak memory", "MB", best_checks["peak_mb"], memory_floor,
            "<= 3x floor", "as for the load peak", "ratio here is memory ours/floor"),
    ]


if __name__ == "__main__":
    mode, target = sys.argv[1], sys.argv[2]
    result = _ours(target, json.loads(sys.argv[3])) if mode == "ours" else _floor(target)
    result.setdefault("peak_mb", peak_rss_mb())
    print(json.dumps(result))
