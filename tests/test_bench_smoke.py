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
    names = {r["name"] for r in rows}
    assert {"audit append, single (committed each)", "audit chain verification"} <= names
    for row in rows:
        assert row["ours"] > 0 and row["floor"] > 0 and row["target"]
