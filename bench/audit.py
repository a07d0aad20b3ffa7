"""Audit-trail benchmarks (issue 3): appends and chain verification against their floors.

Floors, measured in the same run on the same machine:
- single append: the same rows inserted one transaction each (BEGIN IMMEDIATE … COMMIT) into a
  table with the same schema and indexes, same WAL + synchronous=FULL settings, no hashing;
- bulk append: the same rows inserted in one transaction with executemany, plus SHA-256 of the
  same bytes (the work an append cannot avoid);
- chain verification: iterating the same rows in seq order plus SHA-256 of the stored bytes, in a
  fresh process, with its peak resident memory.
"""

from __future__ import annotations

import hashlib
import json
import resource
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

from grantex_local import Grantex

from .common import Row, best_rate

CHUNK = 10_000


def _setup(path: Path) -> tuple[Grantex, dict[str, str]]:
    gx = Grantex(path)
    agent = gx.agents.register(name="bench-agent", scopes=["calendar:read"])
    auth = gx.authorize(agent_id=agent.id, user_id="user_bench", scopes=["calendar:read"])
    token = gx.tokens.exchange(code=auth.code, agent_id=agent.id)
    return gx, {"agent_id": agent.id, "grant_id": token.grant_id}


def _item(ids: dict[str, str], i: int) -> dict[str, object]:
    return {**ids, "action": "calendar.read", "status": "success",
            "metadata": {"i": i, "calendar": "work", "query": "meetings this week", "count": i % 17}}


def _floor_db(path: Path, ledger_path: Path) -> sqlite3.Connection:
    """An empty copy of the ledger's audit_entries table (same DDL, same indexes, same pragmas)."""
    src = sqlite3.connect(ledger_path)
    ddl = [r[0] for r in src.execute(
        "SELECT sql FROM sqlite_master WHERE tbl_name = 'audit_entries' AND sql IS NOT NULL "
        "AND type IN ('table', 'index')")]
    src.close()
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA synchronous = FULL")
    for statement in ddl:
        conn.execute(statement)
    return conn


def _rows(ledger_path: Path, action: str) -> list[tuple[int, str, str]]:
    conn = sqlite3.connect(ledger_path)
    rows = conn.execute("SELECT seq, preimage, hash FROM audit_entries WHERE action = ? ORDER BY seq",
                        (action,)).fetchall()
    conn.close()
    return rows


def single_append(workdir: Path, n: int) -> Row:
    path = workdir / "single.db"
    gx, ids = _setup(path)

    def ours() -> int:
        for i in range(n):
            gx.audit.log(**_item(ids, i))  # type: ignore[arg-type]
        return n

    ours_rate = best_rate(ours, 1)
    rows = _rows(path, "calendar.read")[:n]
    floor_conn = _floor_db(workdir / "single-floor.db", path)

    def floor() -> int:
        floor_conn.execute("DELETE FROM audit_entries")
        for row in rows:
            floor_conn.execute("BEGIN IMMEDIATE")
            floor_conn.execute("INSERT INTO audit_entries (seq, preimage, hash) VALUES (?, ?, ?)", row)
            floor_conn.execute("COMMIT")
        return len(rows)

    floor_rate = best_rate(floor, 1)
    gx.close()
    return Row("audit append, single (committed each)", "entries/s", ours_rate, floor_rate, ">= 0.50",
               "raw single-row insert, same schema and durability", f"n={n}")


def bulk_append(workdir: Path, n: int) -> Row:
    path = workdir / "bulk.db"
    gx, ids = _setup(path)
    items = [_item(ids, i) for i in range(n)]

    def ours() -> int:
        for start in range(0, n, CHUNK):
            gx.audit.log_many(items[start:start + CHUNK])
        return n

    ours_rate = best_rate(ours, 2)  # the second run appends after the first: the chain grows
    rows = _rows(path, "calendar.read")[:n]
    floor_conn = _floor_db(workdir / "bulk-floor.db", path)

    def floor() -> int:
        floor_conn.execute("DELETE FROM audit_entries")
        for start in range(0, len(rows), CHUNK):
            chunk = rows[start:start + CHUNK]
            for _, text, _ in chunk:
                hashlib.sha256(text.encode()).hexdigest()
            floor_conn.execute("BEGIN IMMEDIATE")
            floor_conn.executemany("INSERT INTO audit_entries (seq, preimage, hash) VALUES (?, ?, ?)", chunk)
            floor_conn.execute("COMMIT")
        return len(rows)

    floor_rate = best_rate(floor, 2)
    gx.close()
    return Row("audit append, bulk (10,000 per transaction)", "entries/s", ours_rate, floor_rate,
               ">= 0.50", "executemany of the same rows + SHA-256 of the same bytes",
               f"n={n}; best of 2 for both")


def build_ledger(path: Path, n: int) -> None:
    gx, ids = _setup(path)
    done = gx.audit.list(page_size=10_000)[-1].seq
    i = 0
    while done < n:
        take = min(CHUNK, n - done)
        gx.audit.log_many([_item(ids, i + k) for k in range(take)])
        done += take
        i += take
    gx.close()


def rss_mb() -> float:
    """This process's resident memory now (VmRSS): the baseline a peak is compared with."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def peak_rss_mb() -> float:
    """This process's peak resident memory since exec (VmHWM).

    ``getrusage().ru_maxrss`` is not used: on Linux it survives execve, so a
    child started by a large parent would report the parent's size.
    """
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _child(mode: str, path: Path) -> dict[str, float]:
    out = subprocess.run([sys.executable, "-m", "bench.audit", mode, str(path)], check=True,
                         capture_output=True, text=True, cwd=Path(__file__).resolve().parents[1])
    return json.loads(out.stdout)


def verify(workdir: Path, n: int, repeats: int = 2) -> list[Row]:
    path = workdir / "verify.db"
    started = time.perf_counter()
    build_ledger(path, n)
    built = time.perf_counter() - started
    ours = [_child("verify-ours", path) for _ in range(repeats)]
    floor = [_child("verify-floor", path) for _ in range(repeats)]
    best_ours = min(ours, key=lambda r: r["seconds"])
    best_floor = min(floor, key=lambda r: r["seconds"])
    entries = best_ours["entries"]
    return [
        Row("audit chain verification", "entries/s", entries / best_ours["seconds"],
            entries / best_floor["seconds"], ">= 0.50", "iterate the same rows + SHA-256 of the stored bytes",
            f"n={int(entries)}; ledger built in {built:.0f} s"),
        Row("audit chain verification, peak memory", "MB", best_ours["maxrss_mb"], best_floor["maxrss_mb"],
            "< 200 MB", "peak RSS of the floor process", "ratio here is memory ours/floor"),
    ]


def _verify_ours(path: str) -> dict[str, float]:
    from grantex_local import Ledger
    from grantex_local.audit.chain import chain_developers, verify_chain

    with Ledger(path, create=False) as ledger:
        start = time.perf_counter()
        entries = sum(verify_chain(ledger, dev).entries for dev in chain_developers(ledger))
        seconds = time.perf_counter() - start
    return {"seconds": seconds, "entries": entries}


def _verify_floor(path: str) -> dict[str, float]:
    conn = sqlite3.connect(path)
    start = time.perf_counter()
    entries = 0
    devs = [r[0] for r in conn.execute("SELECT id FROM developers")]
    for dev in devs:
        for _seq, text, _digest in conn.execute(
                "SELECT seq, preimage, hash FROM audit_entries WHERE developer_id = ? ORDER BY seq", (dev,)):
            hashlib.sha256(text.encode()).hexdigest()
            entries += 1
    return {"seconds": time.perf_counter() - start, "entries": entries}


if __name__ == "__main__":
    mode, target = sys.argv[1], sys.argv[2]
    result = _verify_ours(target) if mode == "verify-ours" else _verify_floor(target)
    result["maxrss_mb"] = peak_rss_mb()
    print(json.dumps(result))
