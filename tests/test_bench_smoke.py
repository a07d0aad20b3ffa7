"""The benchmarks still run (tiny sizes); timings are never asserted."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


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
                   "pytest fixture grantex_server", "offline sync"):
        assert any(n.startswith(prefix) for n in names), (prefix, names)
    for row in rows:
        assert row["ours"] > 0 and row["floor"] > 0 and row["target"], row
        assert row["met"] in (True, False, None)
    assert sum(row["met"] is None for row in rows) == 0, [r["name"] for r in rows if r["met"] is None]
    assert "met" in result.stdout and "ratio" in result.stdout
