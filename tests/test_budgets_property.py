"""Budgets under concurrency (issue 13 acceptance): random delegation trees (depth <= 3), random
allocations, then random debits from 4 processes at once on the same file. Afterwards, computed
from the rows themselves (not from the stored counters): no grant's tree spends more than the
grant was allocated, no tree more than its root, the balances moved by exactly the sum of the
transactions (exact Decimal), and every debit a worker saw succeed is there, once."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
import tempfile
import textwrap
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from helpers import grant_for
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from grantex_local import Grantex, budgets

SCOPES = ["payments:initiate"]
PROCESSES = 4

WORKER = textwrap.dedent("""
    import json, os, sys, time
    from grantex_local import Ledger, budgets, errors
    path, plan_file, ready_dir, me = sys.argv[1:5]
    plan = json.load(open(plan_file))[int(me)]
    results = []
    with Ledger(path, create=False) as ledger:
        open(os.path.join(ready_dir, me), "w").close()
        while len(os.listdir(ready_dir)) < 4:   # start together
            time.sleep(0.001)
        for grant_id, amount in plan:
            try:
                done = budgets.debit(ledger, None, grant_id, amount, "w" + me)
                results.append(["ok", done["transactionId"], grant_id, amount])
            except budgets.InsufficientBudget:
                results.append(["insufficient", None, grant_id, amount])
            except errors.NotFound:
                results.append(["unbudgeted", None, grant_id, amount])
    print(json.dumps(results))
""")

amounts = st.integers(min_value=1, max_value=400_000)  # units of 0.0001: up to 40.0000


@st.composite
def scenarios(draw: st.DrawFn) -> dict[str, Any]:
    """Grants as parent indexes (-1: a root; at most 2 roots, depth <= 3), an optional allocation
    per grant, and each process's debits as (grant index, units)."""
    size = draw(st.integers(min_value=2, max_value=7))
    parents, depths = [-1], [0]
    for _ in range(1, size):
        choices = [i for i, d in enumerate(depths) if d < 3]
        parent = draw(st.sampled_from([-1, *choices]) if parents.count(-1) < 2 else st.sampled_from(choices))
        parents.append(parent)
        depths.append(0 if parent == -1 else depths[parent] + 1)
    allocations = [draw(st.one_of(st.none(), amounts)) for _ in range(size)]
    plans = [draw(st.lists(st.tuples(st.integers(0, size - 1), st.integers(1, 150_000)),
                           min_size=3, max_size=8)) for _ in range(PROCESSES)]
    return {"parents": parents, "allocations": allocations, "plans": plans}


def _money(units: int) -> str:
    return budgets.format_units(units)


def _build(path: Path, parents: list[int], allocations: list[int | None]) -> tuple[list[str], dict[str, int]]:
    """The grants (in index order, parents first) and the allocations that were accepted."""
    ids: list[str] = []
    tokens: list[str] = []
    accepted: dict[str, int] = {}
    with Grantex(path) as gx:
        sub = gx.agents.register(name="sub-agent", scopes=SCOPES)
        for i, parent in enumerate(parents):
            if parent == -1:
                issued = grant_for(gx, SCOPES, principal=f"user_{i}")
            else:
                issued = gx.grants.delegate(parent_grant_token=tokens[parent], sub_agent_id=sub.id,
                                            scopes=SCOPES)
            ids.append(issued.grant_id)
            tokens.append(issued.grant_token)
        for grant_id, units in zip(ids, allocations, strict=True):
            if units is None:
                continue
            try:
                budgets.allocate(gx.ledger, None, grant_id, _money(units))
                accepted[grant_id] = units
            except budgets.InsufficientBudget:
                pass
    return ids, accepted


def _race(path: Path, plans: list[list[list[str]]], workdir: Path) -> list[list[Any]]:
    """Run each plan of (grant id, amount) debits in its own process, all started together;
    every result of every process: ``[outcome, transaction id, grant id, amount]``."""
    plan_file = workdir / "plan.json"
    plan_file.write_text(json.dumps(plans))
    ready = workdir / "ready"
    ready.mkdir()
    procs = [subprocess.Popen([sys.executable, "-c", WORKER, str(path), str(plan_file), str(ready), str(n)],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for n in range(PROCESSES)]
    results: list[list[Any]] = []
    for proc in procs:
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
        results.extend(json.loads(out))
    return results


def _rows(path: Path, sql: str) -> list[sqlite3.Row]:
    conn = sqlite3.connect(path)
    conn.row_factory = sqlite3.Row
    try:
        return list(conn.execute(sql))
    finally:
        conn.close()


def _remaining_total(path: Path) -> Decimal:
    """The sum of every allocation's remaining, read through the library's wire form."""
    with Grantex(path, create=False) as gx:
        return sum((Decimal(a["remainingBudget"]) for a in budgets.list_allocations(gx.ledger, None)),
                   Decimal(0))


@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(scenarios())
def test_concurrent_debits_never_overspend_any_tree(scenario: dict[str, Any]) -> None:
    with tempfile.TemporaryDirectory(prefix="budgets-property-") as tmp:
        path = Path(tmp) / "grantex.db"
        ids, accepted = _build(path, scenario["parents"], scenario["allocations"])
        before = _remaining_total(path)
        results = _race(path, [[[ids[i], _money(units)] for i, units in plan] for plan in scenario["plans"]],
                        Path(tmp))
        after = _remaining_total(path)

        grants = {r["id"]: r["parent_grant_id"]
                  for r in _rows(path, "SELECT id, parent_grant_id FROM grants")}
        txs = _rows(path, "SELECT id, grant_id, allocation_id, amount_units FROM budget_transactions")
        allocs = {r["grant_id"]: r for r in _rows(path, "SELECT * FROM budget_allocations")}

        # every debit a worker saw succeed is there exactly once, and nothing else is
        succeeded = sorted(r[1] for r in results if r[0] == "ok")
        assert succeeded == sorted(t["id"] for t in txs)
        assert sum(Decimal(r[3]) for r in results if r[0] == "ok") == sum(
            budgets.to_decimal(t["amount_units"]) for t in txs)
        debited = _rows(path, "SELECT count(*) AS n FROM audit_entries "
                              "WHERE action = 'grantex.budget.debited'")
        assert debited[0]["n"] == len(txs)

        def under(grant_id: str) -> set[str]:
            found = {grant_id}
            while True:
                more = {g for g, p in grants.items() if p in found} - found
                if not more:
                    return found
                found |= more

        # no grant's tree spends more than it was allocated; no tree more than its root
        for grant_id, units in accepted.items():
            spent = sum(t["amount_units"] for t in txs if t["grant_id"] in under(grant_id))
            assert spent <= units, (grant_id, spent, units)
            row = allocs[grant_id]
            assert row["subtree_spent_units"] == spent
            assert row["initial_units"] == units
            assert row["remaining_units"] + row["spent_units"] + row["carved_units"] == units
        # a debit with no allocated grant on its path up was refused, never written
        for r in results:
            chain, cursor = set(), r[2]
            while cursor is not None:
                chain.add(cursor)
                cursor = grants[cursor]
            assert (r[0] == "unbudgeted") == (not chain & set(accepted)), r

        # the balances moved by exactly the sum of the transactions, to the ten-thousandth
        total = sum((budgets.to_decimal(t["amount_units"]) for t in txs), Decimal(0))
        assert before - after == total
        assert isinstance(total, Decimal) and total == total.quantize(Decimal("0.0001"))


def test_a_refused_debit_leaves_the_other_processes_debits_alone(tmp_path: Path) -> None:
    """The whole budget spent by 4 processes racing for it: exactly what fits is written."""
    path = tmp_path / "grantex.db"
    ids, accepted = _build(path, [-1, 0], [1_000_000, None])  # 100.0000 on the root, none on the child
    assert accepted == {ids[0]: 1_000_000}
    plans = [[[ids[n % 2], "7.0000"] for _ in range(6)] for n in range(PROCESSES)]  # 24 x 7 > 100
    results = _race(path, plans, tmp_path)
    assert [r[0] for r in results].count("ok") == 14  # 14 x 7 = 98; the 15th would be 105
    with Grantex(path, create=False) as gx:
        assert budgets.balance(gx.ledger, None, ids[0])["remainingBudget"] == "2.0000"
        with pytest.raises(budgets.InsufficientBudget):
            budgets.debit(gx.ledger, None, ids[1], "2.0001")
