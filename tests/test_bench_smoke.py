"""The benchmarks still run (tiny sizes); timings are never asserted."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from grantex_local.audit.chain import verify_chain
from grantex_local.founding import Ledger

ROOT = Path(__file__).resolve().parents[1]


def _cached_ledger(cache: Path, entries: int) -> tuple[Path, float, dict[str, Any]]:
    """``bench.parquet_export.cached_ledger`` in a child (bench is not importable from the tests)."""
    code = ("import json, sys; from pathlib import Path; from bench.parquet_export import cached_ledger; "
            "p, s, h = cached_ledger(Path(sys.argv[1]), int(sys.argv[2])); print(json.dumps([str(p), s, h]))")
    result = subprocess.run([sys.executable, "-c", code, str(cache), str(entries)], cwd=ROOT,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    path, seconds, held = json.loads(result.stdout)
    return Path(path), seconds, held


def test_bench_smoke(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    result = subprocess.run([sys.executable, "-m", "bench", "--smoke", "--json", str(out)], cwd=ROOT,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    rows = json.loads(out.read_text())["rows"]
    names = [r["name"] for r in rows]
    # every hot path of issue 7, each with a figure, a floor, a ratio and a target
    for prefix in ("offline verify, distinct tokens", "offline verify, same token again",
                   "online verify, distinct tokens", "token issuance, exchange", "token issuance, delegate",
                   "audit append, single", "audit append, bulk", "audit chain verification",
                   "audit chain verification, peak memory", "cascade revocation", "CLI cold start",
                   "MCP cold start",
                   "server POST /v1/tokens/verify", "load exchange", "load audit log, ",
                   "load audit log p99", "load verify", "audit append, 4 writer threads",
                   "token exchange, 4 writer threads", "tui first screen", "event stream fan-out",
                   "revocation feed propagation", "budget debit, 1 process", "budget debit, 4 processes",
                   "pytest fixture grantex_ledger",
                   "pytest fixture grantex_server", "offline sync", "parquet export",
                   "parquet export, peak memory, ", "parquet export, peak memory flat"):
        assert any(n.startswith(prefix) for n in names), (prefix, names)
    for row in rows:
        assert row["ours"] > 0 and row["floor"] > 0 and row["target"], row
        assert row["met"] in (True, False, None)
    assert sum(row["met"] is None for row in rows) == 0, [r["name"] for r in rows if r["met"] is None]
    assert "met" in result.stdout and "ratio" in result.stdout


def test_export_ledger_builder_is_exact_spread_and_cached(tmp_path: Path) -> None:
    """The export benchmark's ledgers: the size asked for, several chains over several months (so
    many partitions), every chain intact, and built once per size and builder version."""
    path, built, held = _cached_ledger(tmp_path, 2_500)
    assert built > 0 and held["entries"] == 2_500
    conn = sqlite3.connect(path)
    try:
        assert conn.execute("SELECT count(*) FROM audit_entries").fetchone()[0] == 2_500
        chains = conn.execute("SELECT developer_id, count(*) FROM audit_entries GROUP BY 1").fetchall()
        months = conn.execute("SELECT count(DISTINCT developer_id || substr(timestamp, 1, 7)) "
                              "FROM audit_entries").fetchone()[0]
        amounts = conn.execute("SELECT count(*) FROM audit_entries "
                               "WHERE json_extract(preimage, '$.metadata.amount') IS NOT NULL").fetchone()[0]
    finally:
        conn.close()
    assert len(chains) == held["developers"] > 1
    assert months >= held["developers"] * 2
    assert amounts > 0
    with Ledger(path, create=False) as ledger:
        for developer_id, count in chains:
            assert verify_chain(ledger, developer_id).entries == count
    stamp = path.stat().st_mtime_ns
    again, rebuilt, held_again = _cached_ledger(tmp_path, 2_500)
    assert (again, rebuilt, held_again) == (path, 0.0, held) and again.stat().st_mtime_ns == stamp
    assert [p.name for p in tmp_path.iterdir()] == [path.parent.name]  # no half-built leftovers


@pytest.mark.parametrize("given", ["1000", "1000000,x"])
def test_export_entries_refuses_bad_sizes(given: str) -> None:
    result = subprocess.run([sys.executable, "-m", "bench", "--export-entries", given], cwd=ROOT,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert "--export-entries" in result.stderr and "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()[-1]) < 200
