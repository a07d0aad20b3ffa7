"""CLI cold start benchmark (issue 7): ``grantex-local tokens verify TOKEN`` in a fresh process.

Ours: the installed ``grantex-local`` console script (``python -m grantex_local`` where it is
missing) verifying a real token online against a small ledger, start to exit. Floor: the same
interpreter running ``python -c "import jwt, sqlite3"``, the two libraries verification cannot do
without, so the ratio says what click, the CLI, the library and the work itself cost on top of
starting Python with them. Runs alternate ours/floor so load on a shared machine hits both alike;
each figure is the median.

Bytecode: the headline runs both commands with a warm bytecode cache in the work directory
(``PYTHONPYCACHEPREFIX``, written by one untimed run of each), which is what an installed CLI
pays on every start (pip compiles the package at install). Under ``PYTHONDONTWRITEBYTECODE`` an
editable install recompiles the package's sources on every start while the floor's site-packages
stay compiled; that figure, in the inherited environment, is reported in ``extra``.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from grantex_local import Grantex

from .common import Row, print_table

FLOOR = [sys.executable, "-c", "import jwt, sqlite3"]


def console_script() -> list[str]:
    """The ``grantex-local`` command next to this interpreter, else ``python -m grantex_local``."""
    script = Path(sys.executable).with_name("grantex-local")
    return [str(script)] if script.is_file() else [sys.executable, "-m", "grantex_local"]


def ledger_and_token(workdir: Path) -> tuple[Path, str]:
    """A fresh ledger with one agent and a live grant token for it, made through the library."""
    path = workdir / "cold-start.db"
    for stale in (path, Path(f"{path}-wal"), Path(f"{path}-shm")):
        stale.unlink(missing_ok=True)
    gx = Grantex(path)
    try:
        agent = gx.agents.register(name="cold-start", scopes=["calendar:read"])
        auth = gx.authorize(agent_id=agent.id, user_id="user_bench", scopes=["calendar:read"])
        token = gx.tokens.exchange(code=auth.code, agent_id=agent.id).grant_token
    finally:
        gx.close()
    return path, token


def _run(args: list[str], env: dict[str, str], cwd: Path) -> float:
    """Milliseconds from spawn to exit; the command must succeed."""
    start = time.perf_counter()
    done = subprocess.run(args, env=env, cwd=cwd, capture_output=True, text=True)
    elapsed = (time.perf_counter() - start) * 1000
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(args[:4])} ... exited {done.returncode}: {done.stderr.strip()}")
    return elapsed


def _interleaved(ours: list[str], env: dict[str, str], cwd: Path,
                 repeats: int) -> tuple[list[float], list[float]]:
    """One untimed run of each (warms the file cache, writes bytecode if allowed), then ``repeats``
    alternating timed runs of ours and the floor."""
    _run(ours, env, cwd)
    _run(FLOOR, env, cwd)
    times: tuple[list[float], list[float]] = ([], [])
    for _ in range(repeats):
        times[0].append(_run(ours, env, cwd))
        times[1].append(_run(FLOOR, env, cwd))
    return times


def cold_start(workdir: Path, repeats: int = 15) -> Row:
    """Median wall time of ``tokens verify`` in a fresh process against ``import jwt, sqlite3``."""
    path, token = ledger_and_token(workdir)
    ours = [*console_script(), "tokens", "verify", token, "--ledger", str(path)]
    check = subprocess.run(ours, capture_output=True, text=True, cwd=workdir)
    if check.returncode != 0 or not check.stdout.startswith("valid"):
        raise RuntimeError(f"tokens verify did not verify the token: {check.stderr.strip()}")

    inherited = dict(os.environ)
    cached = {k: v for k, v in inherited.items() if k != "PYTHONDONTWRITEBYTECODE"}
    cached["PYTHONPYCACHEPREFIX"] = str(workdir / "pycache")
    warm_ours, warm_floor = _interleaved(ours, cached, workdir, repeats)
    plain_ours, plain_floor = _interleaved(ours, inherited, workdir, repeats)

    median = statistics.median
    flag = inherited.get("PYTHONDONTWRITEBYTECODE") or "unset"
    extra = (f"median of {repeats} interleaved runs each, warm bytecode cache (best: ours "
             f"{min(warm_ours):.0f} ms, floor {min(warm_floor):.0f} ms); inherited environment "
             f"(PYTHONDONTWRITEBYTECODE={flag}): ours {median(plain_ours):.0f} ms, floor "
             f"{median(plain_floor):.0f} ms, {median(plain_ours) / median(plain_floor):.2f}x; "
             f"ours runs {Path(ours[0]).name}{' -m grantex_local' if ours[0] == sys.executable else ''}")
    return Row("CLI cold start, tokens verify", "ms", median(warm_ours), median(warm_floor), "<= 1.50x",
               'python -c "import jwt, sqlite3"', extra)


if __name__ == "__main__":  # python -m bench.cold_start [REPEATS]
    with tempfile.TemporaryDirectory(prefix="grantex-cold-start-") as tmp:
        print_table([cold_start(Path(tmp), int(sys.argv[1]) if len(sys.argv) > 1 else 15)])
