"""``python -m bench [--smoke] [--json FILE]``: every benchmark, each next to its floor.

Builds its own data in a temporary directory. ``--smoke`` runs tiny sizes so CI keeps the
benchmarks working without asserting any timing.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import os
import platform
import sqlite3
import tempfile
import time
from pathlib import Path

from . import (
    analysis,
    audit,
    budgets,
    bundles,
    cascade,
    cold_start,
    concurrent_writes,
    engine_review,
    events,
    load,
    mcp_cold_start,
    parquet_export,
    pytest_fixtures,
    revocations,
    server,
    tokens,
    tui,
)
from .common import Row, print_table, write_json


def _cpu() -> str:
    try:
        with open("/proc/cpuinfo") as info:
            for line in info:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _versions() -> dict[str, str]:
    found = {}
    for name in ("cryptography", "PyJWT", "python-ulid", "click", "textual", "fastapi", "uvicorn",
                 "pandas", "pyarrow", "duckdb", "pyspark"):
        try:
            found[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            found[name] = "not installed"
    return found


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--smoke", action="store_true", help="tiny sizes, to check the benchmarks run")
    parser.add_argument("--json", metavar="FILE", default="bench-results.json",
                        help="where to write the table")
    parser.add_argument("--verify-entries", type=int, default=1_000_000,
                        help="size of the ledger for chain verification")
    parser.add_argument("--analysis-entries", type=int, default=1_000_000,
                        help="size of the ledger for the analysis benchmark")
    parser.add_argument("--export-entries", type=parquet_export.parse_sizes, default=None,
                        metavar="N,N,...",
                        help="ledger sizes for the parquet export benchmark, comma-separated (default "
                             f"{','.join(map(str, parquet_export.DEFAULT_ENTRIES))}; the issue's are "
                             "1000000,3000000,10000000)")
    parser.add_argument("--review-entries", type=parquet_export.parse_sizes, default=None,
                        metavar="N,N,...",
                        help="export sizes for the review on DuckDB, comma-separated (default "
                             f"{','.join(map(str, engine_review.DEFAULT_ENTRIES))}; the issue's are "
                             "1000000,3000000,10000000)")
    parser.add_argument("--cache", metavar="DIR", type=Path, default=None,
                        help="where built parquet export ledgers are kept between runs (default "
                             f"{parquet_export.default_cache()}; --smoke builds its own)")
    args = parser.parse_args()
    sizes = {"single": 30, "bulk": 2_000, "verify": 3_000} if args.smoke else {
        "single": 2_000, "bulk": 100_000, "verify": args.verify_entries}
    started = time.time()
    rows: list[Row] = []
    with tempfile.TemporaryDirectory(prefix="grantex-bench-") as tmp:
        work = Path(tmp)
        if args.smoke:
            rows.extend(tokens.run(work, 20, repeats=1))
            rows.append(cascade.run(work, fanout=3, levels=3, repeats=1))
            rows.append(cold_start.cold_start(work, repeats=2))
            rows.append(mcp_cold_start.mcp_cold_start(work, repeats=2))
        else:
            rows.extend(tokens.run(work, 1_000))
            rows.append(cascade.run(work))
            rows.append(cold_start.cold_start(work))
            rows.append(mcp_cold_start.mcp_cold_start(work))
        rows.append(audit.single_append(work, sizes["single"]))
        rows.append(audit.bulk_append(work, sizes["bulk"]))
        rows.extend(audit.verify(work, sizes["verify"], repeats=1 if args.smoke else 2))
        if args.smoke:
            rows.extend(tui.first_screen(work, grants=500, audit_entries=500, repeats=1))
            rows.extend(server.load(work, requests=60))
            rows.extend(load.rows(work, clients=(1, 4), workers=(1, 2), seconds=0.25, requests=40))
            rows.extend(concurrent_writes.run(work, n=64, threads=4, rounds=1))
            rows.append(events.fanout(work, count=200, repeats=1))
            rows.append(revocations.propagation(work, samples=5))
            rows.extend(budgets.debits(work, count=40, repeats=1))
            rows.extend(analysis.load_and_check(work, 5_000))
            rows.extend(pytest_fixtures.run(work, count=5, servers=3))
            rows.append(bundles.sync(work, 300))
            rows.extend(parquet_export.export(work, args.export_entries or parquet_export.SMOKE_ENTRIES,
                                              args.cache or work / "ledgers"))
            rows.extend(engine_review.review(args.review_entries or engine_review.SMOKE_ENTRIES,
                                             args.cache or work / "ledgers"))
        else:
            rows.extend(tui.first_screen(work))
            rows.extend(server.load(work))
            rows.extend(load.rows(work))
            rows.extend(concurrent_writes.run(work))
            rows.append(events.fanout(work))
            rows.append(revocations.propagation(work))
            rows.extend(budgets.debits(work))
            rows.extend(analysis.load_and_check(work, args.analysis_entries))
            rows.extend(pytest_fixtures.run(work))
            rows.append(bundles.sync(work, 100_000))
            rows.extend(parquet_export.export(work, args.export_entries or parquet_export.DEFAULT_ENTRIES,
                                              args.cache))
            rows.extend(engine_review.review(args.review_entries or engine_review.DEFAULT_ENTRIES,
                                             args.cache))
    print_table(rows)
    meta = {"date": time.strftime("%Y-%m-%d %H:%M:%S %Z"), "smoke": args.smoke,
            "python": platform.python_version(), "sqlite": sqlite3.sqlite_version,
            "machine": platform.machine(), "cpu": _cpu(), "cores": os.cpu_count(),
            "platform": platform.platform(), "libraries": _versions(),
            "seconds": round(time.time() - started, 1)}
    write_json(rows, args.json, meta)
    met = [r.met for r in rows]
    print(f"\n{met.count(True)} of {len(rows)} targets met; written to {args.json} in {meta['seconds']} s")
    print(f"{meta['cpu']}, {meta['cores']} cores, Python {meta['python']}, SQLite {meta['sqlite']}")


if __name__ == "__main__":
    main()
