"""Cascade revocation benchmark (issue 7): revoke a whole delegation subtree with its audit events.

The tree (branching ``fanout``, ``levels`` below the root: 11,111 grants for 10 and 4) is written
straight into the ledger's tables with the library's own row writer (building it through 11,110
delegations would only time issuance again). Each run starts from a byte copy of that file.

Floor, on an identical copy of the file: the same recursive CTE UPDATE over the same indexed
``parent_grant_id`` column, plus ``executemany`` of the very audit rows our revocation wrote
(precomputed, no hashing), in one ``BEGIN IMMEDIATE`` transaction with the ledger's WAL and
``synchronous = FULL``.
"""

from __future__ import annotations

import shutil
import sqlite3
import time
from pathlib import Path

from grantex_local import Grantex
from grantex_local.clock import iso
from grantex_local.ids import new_id
from grantex_local.tokens import insert_grant

from .common import Row

_CTE_UPDATE = (
    "WITH RECURSIVE tree(id) AS (SELECT ? UNION SELECT g.id FROM grants g JOIN tree t "
    "ON g.parent_grant_id = t.id) UPDATE grants SET revoked_at = ? WHERE id IN tree AND revoked_at IS NULL"
)


def build_tree(path: Path, fanout: int, levels: int) -> tuple[str, int]:
    """A ledger whose one root grant has ``fanout`` children per grant, ``levels`` deep."""
    gx = Grantex(path)
    gx.ledger.set_setting("max_delegation_depth", str(max(levels, 1)))
    agent_ids = [gx.agents.register(name=f"cascade-{i}", scopes=["calendar:read"]).id for i in range(8)]
    now = gx.ledger.now()
    issued, expires = iso(now), iso(now + 86400)
    root = new_id("grant")
    level: list[tuple[str, str | None]] = [(root, None)]  # (grant, its parent)
    count = 0
    with gx.ledger.write() as conn:
        for depth in range(levels + 1):
            below: list[tuple[str, str | None]] = []
            for grant_id, parent in level:
                insert_grant(conn, {
                    "id": grant_id, "developer_id": gx.developer_id,
                    "agent_id": agent_ids[depth % len(agent_ids)], "principal_id": "user_cascade",
                    "scopes": ["calendar:read"], "audience": None, "parent_grant_id": parent,
                    "parent_token_id": None, "delegation_depth": depth, "auth_request_id": None,
                    "issued_at": issued, "expires_at": expires,
                })
                count += 1
                below.extend((new_id("grant"), grant_id) for _ in range(fanout))
            level = below if depth < levels else []
    gx.ledger.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    gx.close()
    return root, count


def _copy(source: Path, target: Path) -> Path:
    for suffix in ("", "-wal", "-shm"):
        Path(f"{target}{suffix}").unlink(missing_ok=True)
    shutil.copyfile(source, target)
    return target


def run(workdir: Path, fanout: int = 10, levels: int = 4, repeats: int = 3) -> Row:
    base = workdir / "cascade.db"
    started = time.perf_counter()
    root, size = build_tree(base, fanout, levels)
    built = time.perf_counter() - started
    ours_times, floor_times = [], []
    revoked = 0
    for _ in range(repeats):
        path = _copy(base, workdir / "cascade-ours.db")
        with Grantex(path) as gx:
            gx.ledger.signing_key()  # parsed once in any running process
            start = time.perf_counter()
            result = gx.grants.revoke(root)
            ours_times.append(time.perf_counter() - start)
            revoked = len(result.revoked_grant_ids)
            revoked_at = result.revoked_at
            events = gx.ledger.conn.execute(
                "SELECT seq, preimage, hash FROM audit_entries WHERE action = 'grantex.grant.revoked' "
                "ORDER BY seq").fetchall()
        events = [tuple(e) for e in events]
        floor_path = _copy(base, workdir / "cascade-floor.db")
        conn = sqlite3.connect(floor_path, isolation_level=None)
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("PRAGMA synchronous = FULL")
        conn.execute("PRAGMA foreign_keys = ON")
        start = time.perf_counter()
        conn.execute("BEGIN IMMEDIATE")
        conn.execute(_CTE_UPDATE, (root, revoked_at))
        conn.executemany("INSERT INTO audit_entries (seq, preimage, hash) VALUES (?, ?, ?)", events)
        conn.execute("COMMIT")
        floor_times.append(time.perf_counter() - start)
        conn.close()
    if revoked != size:
        raise AssertionError(f"revocation covered {revoked} of {size} grants")
    best_ours, best_floor = min(ours_times), min(floor_times)
    return Row(f"cascade revocation, {size:,}-grant subtree", "ms", best_ours * 1000, best_floor * 1000,
               "<= 2.00 (time)", "recursive CTE UPDATE + executemany of the same audit rows, one commit",
               f"{revoked:,} grants revoked and {len(events):,} audit entries written in one transaction; "
               f"best of {repeats}; tree built in {built:.1f} s")
