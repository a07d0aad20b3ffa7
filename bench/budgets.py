"""Budget debits per second (issue 13): one process, and 4 processes on the same file at once.

A debit is one ``BEGIN IMMEDIATE`` transaction: the grant and its allocations read, the checks,
the balances of the grant's allocation and its ancestor's updated, the ``btx_`` row inserted,
the hash-chained audit entry appended and (past 50 %) a threshold event written. The debits
here are on a delegated grant whose budget was carved from its parent's, so every debit walks
and updates two allocations.

The floor is the least such a debit could cost on the same machine and file settings (WAL,
``synchronous = FULL``): a raw ``sqlite3`` transaction per debit writing the same rows (two
allocation updates and one transaction row), with no checks, no audit entry and no event, in
the same number of processes. ``ours / floor`` is what the checks, the audit chain and the
event cost on top of the commit itself.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import time
from pathlib import Path

from grantex_local import ExchangeTokenParams, Grantex, budgets

from .common import Row

PROCESSES = 4

_OURS = textwrap.dedent("""
    import os, sys, time
    from grantex_local import Ledger, budgets
    path, grant_id, count, ready_dir, me, processes = sys.argv[1:7]
    with Ledger(path, create=False) as ledger:
        open(os.path.join(ready_dir, me), "w").close()
        while len(os.listdir(ready_dir)) < int(processes):
            time.sleep(0.0005)
        started = time.perf_counter()
        for i in range(int(count)):
            budgets.debit(ledger, None, grant_id, "0.0100", f"bench {me} {i}")
        print(started, time.perf_counter())
""")

_FLOOR = textwrap.dedent("""
    import os, sqlite3, sys, time
    path, child_alloc, parent_alloc, count, ready_dir, me, processes = sys.argv[1:8]
    conn = sqlite3.connect(path, isolation_level=None, timeout=15)
    conn.execute("PRAGMA synchronous = FULL")
    conn.execute("PRAGMA busy_timeout = 15000")
    open(os.path.join(ready_dir, me), "w").close()
    while len(os.listdir(ready_dir)) < int(processes):
        time.sleep(0.0005)
    started = time.perf_counter()
    for i in range(int(count)):
        conn.execute("BEGIN IMMEDIATE")
        conn.execute("UPDATE floor_allocations SET remaining = remaining - 100, spent = spent + 100, "
                     "subtree_spent = subtree_spent + 100 WHERE id = ?", (child_alloc,))
        conn.execute("UPDATE floor_allocations SET subtree_spent = subtree_spent + 100 WHERE id = ?",
                     (parent_alloc,))
        conn.execute("INSERT INTO floor_transactions (id, grant_id, allocation_id, amount, description, "
                     "metadata, created_at) VALUES (?, ?, ?, 100, ?, '{}', ?)",
                     (f"btx_{me}_{i}", "grant", child_alloc, f"bench {me} {i}", str(time.time())))
        conn.execute("COMMIT")
    print(started, time.perf_counter())
""")


def _setup(path: Path) -> tuple[str, str, str]:
    """A ledger with a root grant (budget 1e9) and a delegated child carved 1e8 out of it."""
    with Grantex(path) as gx:
        agent = gx.agents.register(name="bench-payer", scopes=["payments:initiate"])
        sub = gx.agents.register(name="bench-sub-payer", scopes=["payments:initiate"])
        auth = gx.authorize(agent_id=agent.id, user_id="user_bench", scopes=["payments:initiate"])
        assert auth.code is not None
        root = gx.tokens.exchange(ExchangeTokenParams(code=auth.code, agent_id=agent.id))
        child = gx.grants.delegate(parent_grant_token=root.grant_token, sub_agent_id=sub.id,
                                   scopes=["payments:initiate"])
        parent_alloc = budgets.allocate(gx.ledger, None, root.grant_id, "1000000000")
        child_alloc = budgets.allocate(gx.ledger, None, child.grant_id, "100000000")
        with gx.ledger.write() as conn:  # the floor's tables, in the same file
            conn.execute("CREATE TABLE floor_allocations (id TEXT PRIMARY KEY, remaining INTEGER, "
                         "spent INTEGER, subtree_spent INTEGER)")
            conn.execute("CREATE TABLE floor_transactions (seq INTEGER PRIMARY KEY AUTOINCREMENT, "
                         "id TEXT UNIQUE, grant_id TEXT, allocation_id TEXT, amount INTEGER, "
                         "description TEXT, metadata TEXT, created_at TEXT)")
            conn.executemany("INSERT INTO floor_allocations VALUES (?, 10000000000000, 0, 0)",
                             [(parent_alloc["id"],), (child_alloc["id"],)])
    return child.grant_id, child_alloc["id"], parent_alloc["id"]


def _run(script: str, args: list[str], processes: int, count: int, ready: Path) -> float:
    """Debits per second of ``processes`` processes doing ``count`` each, started together:
    from the first start to the last finish."""
    ready.mkdir()
    procs = [subprocess.Popen([sys.executable, "-c", script, *args, str(count), str(ready), str(n),
                               str(processes)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for n in range(processes)]
    spans = []
    for proc in procs:
        out, err = proc.communicate(timeout=600)
        if proc.returncode != 0:
            raise RuntimeError(f"a debit worker failed: {err.strip().splitlines()[-1:]}")
        spans.append(tuple(float(x) for x in out.split()))
    elapsed = max(end for _, end in spans) - min(start for start, _ in spans)
    return processes * count / elapsed


def debits(workdir: Path, count: int = 2_000, repeats: int = 2) -> list[Row]:
    """Two rows: single process and :data:`PROCESSES` processes, each next to its raw floor."""
    rows = []
    for processes in (1, PROCESSES):
        each = max(1, count // processes)
        ours = floor = 0.0
        for attempt in range(repeats):
            path = Path(workdir) / f"budgets-bench-{processes}-{attempt}.db"
            grant_id, child_alloc, parent_alloc = _setup(path)
            ours = max(ours, _run(_OURS, [str(path), grant_id], processes, each,
                                  Path(workdir) / f"ready-ours-{processes}-{attempt}"))
            floor = max(floor, _run(_FLOOR, [str(path), child_alloc, parent_alloc], processes, each,
                                    Path(workdir) / f"ready-floor-{processes}-{attempt}"))
            _check(path, grant_id, processes * each)
        who = "1 process" if processes == 1 else f"{processes} processes on one file"
        rows.append(Row(
            name=f"budget debit, {who}", unit="debits/s", ours=ours, floor=floor, target=">= 0.25",
            floor_what=f"raw sqlite3 BEGIN IMMEDIATE/COMMIT per debit writing the same 3 rows, "
                       f"{who}, same file and pragmas",
            extra=f"{processes * each} debits on a delegated grant (2 allocations each), best of {repeats}"))
    return rows


def _check(path: Path, grant_id: str, expected: int) -> None:
    """A benchmark that lost a debit would be measuring something else: refuse to report it."""
    with Grantex(path, create=False) as gx:
        found = budgets.transactions(gx.ledger, None, grant_id, 1, 1)["total"]
        balance = budgets.balance(gx.ledger, None, grant_id)
    if found != expected or balance["spent"] != budgets.format_units(expected * 100):
        raise RuntimeError(f"expected {expected} debits, found {found}: {json.dumps(balance)}")


if __name__ == "__main__":
    import tempfile

    from .common import print_table

    started = time.time()
    with tempfile.TemporaryDirectory(prefix="grantex-bench-budgets-") as tmp:
        print_table(debits(Path(tmp), int(sys.argv[1]) if len(sys.argv) > 1 else 2_000))
    print(f"{time.time() - started:.1f} s")
