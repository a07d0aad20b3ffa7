"""TUI benchmark (issue 4): time to a usable first screen on a 100,000-grant ledger.

"Usable" means drawn with data: the overview counts and the tree's first level
(the principals) are on screen and the cursor is on the first one, so keys
work. Measured in a fresh process from before Textual is imported, with the
app running headless at 120x36, so it includes everything a user waits for
after ``grantex-local tui`` starts (the chain verification goes on in the
background and is not waited for).

Floor: the same measurement on the small demo ledger (14 grants), in the same
run on the same machine. The ratio says what the 100,000 grants cost on top of
starting the app at all.

The big ledger is built fast: agents and one real delegation chain through the
library, then grant and token rows inserted with SQL in the shape the library
writes them (1 root → 2 children → 1 grandchild each, over 800 principals, a
few revoked or expired), and 100,000 audit entries appended through the
library's ``log_many``. Building it through ``authorize``/``exchange`` one by
one would take many minutes and measure signing, not the TUI.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

from grantex_local import Grantex, Ledger
from grantex_local.clock import iso
from grantex_local.demo import run_demo

from .common import Row

ROOTS_PER_PRINCIPAL = 25
GRANTS_PER_ROOT = 5  # root, two children, one grandchild under each child


def build_ledger(path: Path, grants: int, audit_entries: int) -> dict[str, float]:
    """A ledger with ``grants`` grants (and a token each) and ``audit_entries`` more audit entries."""
    started = time.perf_counter()
    gx = Grantex(path)
    names = ("planner", "booker", "searcher", "checker")
    agents = [gx.agents.register(name=n, scopes=["calendar:read", "files:read"]) for n in names]
    auth = gx.authorize(agent_id=agents[0].id, user_id="user_bench", scopes=["calendar:read"])
    real = gx.tokens.exchange(code=auth.code, agent_id=agents[0].id)
    ledger, developer = gx.ledger, gx.developer_id
    now = ledger.now()
    principals = max(1, grants // (ROOTS_PER_PRINCIPAL * GRANTS_PER_ROOT))
    grant_rows, token_rows = [], []
    serial = 0

    def add(principal: str, agent_index: int, parent: str | None, depth: int, n: int) -> str:
        nonlocal serial
        serial += 1
        grant_id = f"grnt_BENCH{serial:021d}"
        revoked = iso(now - 60) if n % 97 == 0 else None
        expires = iso(now - 30) if n % 89 == 0 else iso(now + 86400)
        grant_rows.append((grant_id, developer, agents[agent_index].id, principal,
                           json.dumps(["calendar:read", "files:read"][: 1 + depth % 2]), parent, depth,
                           iso(now - 3600 + serial / 1000), expires, revoked))
        token_rows.append((f"tok_BENCH{serial:022d}", grant_id, "bench", iso(now - 3600), expires))
        return grant_id

    n = 0
    for p in range(principals):
        principal = f"user_{p:05d}"
        for _ in range(ROOTS_PER_PRINCIPAL):
            n += 1
            root = add(principal, 0, None, 0, n)
            for c in range(2):
                child = add(principal, 1 + c, root, 1, n)
                add(principal, 3, child, 2, n)
            if len(grant_rows) >= grants:
                break
        if len(grant_rows) >= grants:
            break
    with ledger.write() as conn:
        conn.executemany(
            "INSERT INTO grants (id, developer_id, agent_id, principal_id, scopes, parent_grant_id, "
            "delegation_depth, issued_at, expires_at, revoked_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            grant_rows[:grants])
        conn.executemany("INSERT INTO tokens (jti, grant_id, kid, issued_at, expires_at) "
                         "VALUES (?, ?, ?, ?, ?)", token_rows[:grants])
    item = {"agent_id": agents[0].id, "grant_id": real.grant_id, "action": "calendar.read",
            "metadata": {"calendar": "work"}}
    for start in range(0, audit_entries, 10_000):
        gx.audit.log_many([item] * min(10_000, audit_entries - start))
    ledger.conn.execute("ANALYZE")
    gx.close()
    return {"seconds": time.perf_counter() - started, "principals": principals}


def _child(path: Path) -> dict[str, float]:
    out = subprocess.run([sys.executable, "-m", "bench.tui", str(path)], check=True, capture_output=True,
                         text=True, cwd=Path(__file__).resolve().parents[1])
    return json.loads(out.stdout.strip().splitlines()[-1])


def first_screen(workdir: Path, grants: int = 100_000, audit_entries: int = 100_000,
                 repeats: int = 3) -> list[Row]:
    """Seconds to a usable first screen: a ``grants``-grant ledger against the demo ledger (the floor)."""
    big, small = workdir / "tui-big.db", workdir / "tui-demo.db"
    built = build_ledger(big, grants, audit_entries)
    run_demo(small, seed=0)
    ours = min((_child(big) for _ in range(repeats)), key=lambda r: r["seconds"])
    floor = min((_child(small) for _ in range(repeats)), key=lambda r: r["seconds"])
    with Ledger(big, create=False) as ledger:
        count = ledger.query_one("SELECT count(*) FROM grants")[0]  # type: ignore[index]
    return [Row(f"tui first screen, {count:,} grants", "s", ours["seconds"], floor["seconds"], "about 1 s",
                "the same on the demo ledger (14 grants)",
                f"ratio here is time ours/floor; {int(built['principals']):,} principals; of which Textual "
                f"and the app import {ours['import']:.2f} s; ledger built in {built['seconds']:.0f} s")]


def _measure(path: str) -> dict[str, float]:
    """Run in a fresh process: import, open, start headless, wait for the first screen with data."""
    import asyncio

    started = time.perf_counter()
    from grantex_local.tui.app import GrantexApp
    from grantex_local.tui.data import TuiData

    imported = time.perf_counter()

    async def run() -> float:
        data = TuiData.open(path)
        app = GrantexApp(data, poll_seconds=0)
        async with app.run_test(size=(120, 36)) as pilot:
            tree = app.main.tree
            while not (tree.loaded_once and app.overview is not None and tree.cursor_node is not None):
                await asyncio.sleep(0.005)
            await pilot.pause()  # one more refresh: the data is drawn
            seconds = time.perf_counter() - started
        data.close()
        return seconds

    seconds = asyncio.run(run())
    return {"seconds": seconds, "import": imported - started}


if __name__ == "__main__":
    print(json.dumps(_measure(sys.argv[1])))
