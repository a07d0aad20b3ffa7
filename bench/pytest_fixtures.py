"""What the pytest plugin's fixtures cost per test (issue 19).

Ours: setup + teardown of ``grantex_ledger`` (a template copy, its identity rewritten, opened,
closed, its chain verified after the body) and of ``grantex_server`` (that plus a server on a
loopback port, started and stopped), the median over many tests of one real pytest run in a
subprocess (the plugin loaded through its entry point, as users get it). Each figure is what
pytest reports for the setup and teardown phases plus the call phase (the chain check runs
there); the body itself is empty.

Floors, measured in the same run: copying a file of the template's size (what a ledger per test
cannot avoid) and the setup + call + teardown of an empty pytest test (what pytest costs anyway).
Target (issue 19): a fresh ledger per test under 20 ms.
"""

from __future__ import annotations

import json
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

from .common import Row, print_table

_TESTS = '''
import pytest

N = {count}

@pytest.mark.parametrize("i", range(N))
def test_empty(i):
    pass

@pytest.mark.parametrize("i", range(N))
def test_ledger(i, grantex_ledger):
    pass

@pytest.mark.parametrize("i", range({servers}))
def test_server(i, grantex_server):
    pass
'''

_CONFTEST = '''
import json, os
from collections import defaultdict

_times = defaultdict(float)

def pytest_runtest_logreport(report):
    _times[report.nodeid] += report.duration

def pytest_sessionfinish(session):
    with open(os.environ["GRANTEX_BENCH_OUT"], "w") as fh:
        json.dump(_times, fh)
'''


def run(workdir: Path, count: int = 200, servers: int = 50) -> list[Row]:
    """Two rows: ``grantex_ledger`` and ``grantex_server`` per test, ms (median)."""
    suite = workdir / "pytest-fixtures"
    suite.mkdir(exist_ok=True)
    (suite / "test_fixtures.py").write_text(_TESTS.format(count=count, servers=servers))
    (suite / "conftest.py").write_text(_CONFTEST)
    out = suite / "times.json"
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
         "--basetemp", str(suite / "tmp"), str(suite / "test_fixtures.py")],
        cwd=suite, capture_output=True, text=True,
        env={**_env(), "GRANTEX_BENCH_OUT": str(out)}, timeout=1200)
    if done.returncode != 0:
        raise RuntimeError(f"the fixture benchmark's pytest run failed:\n{done.stdout[-3000:]}")
    times: dict[str, float] = json.loads(out.read_text())

    def median_ms(name: str) -> float:
        picked = [t for node, t in times.items() if f"::{name}[" in node]
        return statistics.median(picked) * 1000

    template = next((suite / "tmp").glob("grantex-template*/template.db"))
    copies = []
    for i in range(max(count, 5)):
        target = suite / f"copy-{i % 2}.db"
        start = time.perf_counter()
        shutil.copyfile(template, target)
        copies.append(time.perf_counter() - start)
    copy_ms = statistics.median(copies) * 1000
    empty_ms = median_ms("test_empty")
    size_kb = template.stat().st_size / 1024
    extra = f"empty pytest test {empty_ms:.2f} ms; {count} ledger tests, {servers} server tests; " \
            f"template {size_kb:.0f} KiB"
    return [
        Row("pytest fixture grantex_ledger, setup+teardown", "ms per test (median)",
            median_ms("test_ledger"), copy_ms, "< 20 ms",
            f"copying a {size_kb:.0f} KiB file (shutil.copyfile), same run", extra),
        Row("pytest fixture grantex_server, setup+teardown", "ms per test (median)",
            median_ms("test_server"), max(empty_ms, 0.001), "< 500 ms",
            "an empty pytest test (setup + call + teardown), same run", extra),
    ]


def _env() -> dict[str, str]:
    import os

    env = dict(os.environ)
    env.pop("PYTEST_ADDOPTS", None)
    env.pop("PYTEST_XDIST_WORKER", None)
    return env


if __name__ == "__main__":  # python -m bench.pytest_fixtures [COUNT]
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        print_table(run(Path(tmp), int(sys.argv[1]) if len(sys.argv) > 1 else 200))
