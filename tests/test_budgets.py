"""Budgets (issue 13, SDK-SURFACE §8): the official SDK against a real server, the error shapes
with nothing written, budgets held across delegation, events and audit, ``bdg``, CLI and TUI."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import grantex
import httpx
import jwt
import pytest
from cli_helpers import fails, ok_json
from grantex import AllocateBudgetParams, DebitBudgetParams, GrantexApiError
from helpers import grant_for
from rich.console import Console

from grantex_local import Grantex, budgets, developers, errors, events
from grantex_local.server.testing import running_server
from grantex_local.tui.data import TuiData
from grantex_local.tui.widgets.grant_detail import render_grant

SCOPES = ["payments:initiate"]


@dataclass
class World:
    path: Path
    key: str
    other_key: str
    root: str
    root_refresh: str
    root_agent: str
    child: str
    grandchild: str
    sibling: str
    """Delegated from the root like ``child``; never given a budget of its own."""


@pytest.fixture
def world(tmp_path: Path) -> World:
    path = tmp_path / "grantex.db"
    with Grantex(path) as gx:
        root = grant_for(gx, SCOPES)
        sub = gx.agents.register(name="sub-agent", scopes=SCOPES)
        subsub = gx.agents.register(name="sub-sub-agent", scopes=SCOPES)
        child = gx.grants.delegate(parent_grant_token=root.grant_token, sub_agent_id=sub.id, scopes=SCOPES)
        grandchild = gx.grants.delegate(parent_grant_token=child.grant_token, sub_agent_id=subsub.id,
                                        scopes=SCOPES)
        sibling = gx.grants.delegate(parent_grant_token=root.grant_token, sub_agent_id=sub.id, scopes=SCOPES)
        key = developers.create_api_key(gx.ledger, gx.developer_id, "sdk").key
        other = developers.create_developer(gx.ledger, "Other", sandbox=True)
        other_key = developers.create_api_key(gx.ledger, other.id, "sdk").key
        root_agent = gx.grants.get(root.grant_id).agent_id
    return World(path, key, other_key, root.grant_id, root.refresh_token, root_agent, child.grant_id,
                 grandchild.grant_id, sibling.grant_id)


@pytest.fixture
def server(world: World) -> Iterator[str]:
    with running_server(world.path) as running:
        yield running.base_url


def _sdk(base_url: str, key: str) -> grantex.Grantex:
    return grantex.Grantex(api_key=key, base_url=base_url, max_retries=0)


def _http(base_url: str, key: str) -> httpx.Client:
    return httpx.Client(base_url=base_url, headers={"Authorization": f"Bearer {key}"}, timeout=30)


def _budget_state(path: Path) -> list[Any]:
    """Everything a budget write touches: its two tables, the audit log and the event outbox."""
    conn = sqlite3.connect(path)
    try:
        return [list(conn.execute(f"SELECT * FROM {table} ORDER BY rowid"))
                for table in ("budget_allocations", "budget_transactions", "audit_entries", "events")]
    finally:
        conn.close()


def _allocate(path: Path, grant_id: str, amount: str, currency: str | None = None) -> dict[str, Any]:
    with Grantex(path, create=False) as gx:
        return budgets.allocate(gx.ledger, None, grant_id, amount, currency)


def _debit(path: Path, grant_id: str, amount: str) -> dict[str, Any]:
    with Grantex(path, create=False) as gx:
        return budgets.debit(gx.ledger, None, grant_id, amount)


def _balance(path: Path, grant_id: str) -> dict[str, Any]:
    with Grantex(path, create=False) as gx:
        return budgets.balance(gx.ledger, None, grant_id)


# ── the official SDK ─────────────────────────────────────────────────────────

def test_the_sdk_allocates_debits_and_reads_back(world: World, server: str) -> None:
    sdk = _sdk(server, world.key)
    allocation = sdk.budgets.allocate(AllocateBudgetParams(grant_id=world.root, initial_budget=100))
    assert allocation.id.startswith("bdg_") and allocation.grant_id == world.root
    assert (allocation.initial_budget, allocation.remaining_budget, allocation.currency) == (
        "100.0000", "100.0000", "USD")
    debit = sdk.budgets.debit(DebitBudgetParams(grant_id=world.root, amount=12.34, description="flight",
                                                metadata={"order": "A-1"}))
    assert debit.transaction_id.startswith("btx_") and debit.remaining == "87.6600"
    sdk.budgets.debit(DebitBudgetParams(grant_id=world.root, amount=0.66))
    balance = sdk.budgets.balance(world.root)
    assert balance.remaining_budget == "87.0000" and balance.id == allocation.id
    page = sdk.budgets.transactions(world.root)
    assert page.total == 2
    newest, oldest = page.transactions
    assert (newest.amount, newest.description, newest.metadata) == ("0.6600", None, {})
    assert (oldest.amount, oldest.description, oldest.metadata) == ("12.3400", "flight", {"order": "A-1"})
    assert oldest.allocation_id == allocation.id and oldest.grant_id == world.root
    second = sdk.budgets.transactions(world.root, page=2, page_size=1)
    assert second.total == 2 and [t.id for t in second.transactions] == [oldest.id]
    with _http(server, world.key) as http:
        listed = http.get("/v1/budget/allocations").json()["allocations"]
        assert [a["id"] for a in listed] == [allocation.id]
        # a decimal string keeps every digit a double would lose
        assert http.post("/v1/budget/debit", json={"grantId": world.root, "amount": "0.0001"}).json()[
            "remaining"] == "86.9999"


def test_error_shapes_and_nothing_written(world: World, server: str) -> None:
    sdk = _sdk(server, world.key)
    sdk.budgets.allocate(AllocateBudgetParams(grant_id=world.root, initial_budget=10))
    before = _budget_state(world.path)

    def refused(status: int, code: str, call: Any) -> None:
        with pytest.raises(GrantexApiError) as caught:
            call()
        assert (caught.value.status_code, caught.value.code) == (status, code), caught.value
        assert _budget_state(world.path) == before

    refused(402, "INSUFFICIENT_BUDGET",
            lambda: sdk.budgets.debit(DebitBudgetParams(grant_id=world.root, amount=10.0001)))
    refused(409, "CONFLICT", lambda: sdk.budgets.allocate(AllocateBudgetParams(grant_id=world.root,
                                                                               initial_budget=1)))
    refused(404, "NOT_FOUND", lambda: sdk.budgets.balance("grnt_nope"))
    refused(404, "NOT_FOUND", lambda: sdk.budgets.balance(world.child))  # no allocation of its own
    refused(404, "NOT_FOUND", lambda: sdk.budgets.debit(DebitBudgetParams(grant_id="grnt_nope", amount=1)))
    other = _sdk(server, world.other_key)
    refused(404, "NOT_FOUND", lambda: other.budgets.balance(world.root))
    refused(404, "NOT_FOUND", lambda: other.budgets.debit(DebitBudgetParams(grant_id=world.root, amount=1)))
    refused(404, "NOT_FOUND", lambda: other.budgets.transactions(world.root))
    with _http(server, world.key) as http:
        for body in ({"grantId": world.root, "amount": 0}, {"grantId": world.root, "amount": -1},
                     {"grantId": world.root, "amount": "1.00001"}, {"grantId": world.root, "amount": "abc"},
                     {"grantId": world.root, "amount": "NaN"}, {"grantId": world.root, "amount": 1e20},
                     {"grantId": world.root, "amount": True}, {"grantId": world.root},
                     {"grantId": world.root, "amount": 1, "metadata": []},
                     {"grantId": world.root, "amount": 1, "surprise": 1}):
            answer = http.post("/v1/budget/debit", json=body)
            assert answer.status_code == 400, (body, answer.text)
            assert set(answer.json()) >= {"message", "code", "requestId"}
        assert "amount" in http.post("/v1/budget/debit", json={"grantId": world.root, "amount": 0}).json()[
            "message"]
        for body in ({"grantId": world.child, "initialBudget": 1, "currency": "usd"},
                     {"grantId": world.child, "initialBudget": 1, "currency": "EUR"},  # parent's is USD
                     {"grantId": world.child, "initialBudget": "0.00001"}):
            answer = http.post("/v1/budget/allocate", json=body)
            assert answer.status_code == 400, (body, answer.text)
        for query in ("page=0", "pageSize=201", "pageSize=0", "page=x"):
            answer = http.get(f"/v1/budget/transactions/{world.root}?{query}")
            assert answer.status_code == 400, (query, answer.text)
        answer = http.post("/v1/budget/debit", json={"grantId": world.root, "amount": 11})
        assert answer.status_code == 402 and answer.json()["code"] == "INSUFFICIENT_BUDGET"
    assert _budget_state(world.path) == before
    with Grantex(world.path, create=False) as gx:
        gx.grants.revoke(world.root)
    before = _budget_state(world.path)
    refused(409, "GRANT_INACTIVE",
            lambda: sdk.budgets.debit(DebitBudgetParams(grant_id=world.root, amount=1)))
    refused(409, "GRANT_INACTIVE", lambda: sdk.budgets.allocate(AllocateBudgetParams(grant_id=world.child,
                                                                                     initial_budget=1)))


# ── across delegation ────────────────────────────────────────────────────────

def test_carve_out_and_a_grandchild_debit_reduce_every_ancestor(world: World) -> None:
    root = _allocate(world.path, world.root, "100")
    child = _allocate(world.path, world.child, "40")
    assert child["parentAllocationId"] == root["id"] and child["currency"] == "USD"
    assert _balance(world.path, world.root)["remainingBudget"] == "60.0000"
    grandchild = _allocate(world.path, world.grandchild, "10")
    assert grandchild["parentAllocationId"] == child["id"]
    assert _balance(world.path, world.child)["remainingBudget"] == "30.0000"

    assert _debit(world.path, world.grandchild, "4.25")["remaining"] == "5.7500"
    after = {g: _balance(world.path, g) for g in (world.root, world.child, world.grandchild)}
    assert [after[g]["subtreeSpent"] for g in (world.root, world.child, world.grandchild)] == ["4.2500"] * 3
    assert after[world.grandchild]["spent"] == "4.2500" and after[world.child]["spent"] == "0.0000"

    # a grant with no budget of its own draws on its nearest allocated ancestor
    drawn = _debit(world.path, world.sibling, "5")
    assert drawn["allocationId"] == root["id"] and drawn["remaining"] == "55.0000"
    assert _balance(world.path, world.root)["subtreeSpent"] == "9.2500"

    # the grandchild spends all it was carved: no ancestor is charged twice for it
    assert _debit(world.path, world.grandchild, "5.75")["remaining"] == "0.0000"
    assert _balance(world.path, world.child)["remainingBudget"] == "30.0000"
    with pytest.raises(budgets.InsufficientBudget):
        _debit(world.path, world.grandchild, "0.0001")
    assert _debit(world.path, world.child, "30")["remaining"] == "0.0000"
    assert _debit(world.path, world.root, "55")["remaining"] == "0.0000"
    assert _balance(world.path, world.root)["subtreeSpent"] == "100.0000"  # exactly what the root was given
    with pytest.raises(budgets.InsufficientBudget):
        _debit(world.path, world.sibling, "0.0001")


def test_a_sub_agent_cannot_be_handed_a_fresh_budget(world: World) -> None:
    _allocate(world.path, world.root, "100")
    _debit(world.path, world.root, "70")
    before = _budget_state(world.path)
    with pytest.raises(budgets.InsufficientBudget, match=r"30\.0000 remaining"):
        _allocate(world.path, world.child, "500")
    with pytest.raises(budgets.InsufficientBudget):
        _allocate(world.path, world.child, "30.0001")
    assert _budget_state(world.path) == before
    _allocate(world.path, world.child, "30")
    with pytest.raises(budgets.InsufficientBudget):  # the grandchild's comes out of the child's 30
        _allocate(world.path, world.grandchild, "31")
    assert _balance(world.path, world.root)["remainingBudget"] == "0.0000"


def test_budgets_are_given_from_the_top_down(world: World) -> None:
    _allocate(world.path, world.grandchild, "5")  # the first budget in the tree: nothing to carve from
    before = _budget_state(world.path)
    for grant in (world.root, world.child):
        with pytest.raises(budgets.BudgetConflict, match="top of a delegation tree"):
            _allocate(world.path, grant, "1000")
    assert _budget_state(world.path) == before


# ── events, audit, bdg ───────────────────────────────────────────────────────

def test_threshold_and_exhaustion_events_and_audit_entries(world: World) -> None:
    with Grantex(world.path, create=False) as gx:
        mark = events.last_seq(gx.ledger)
        budgets.allocate(gx.ledger, None, world.root, "100")
        seen = [budgets.debit(gx.ledger, None, world.root, amount)["transactionId"]
                for amount in ("49", "1", "30", "20")]
        found = [(e.type, e.data) for e in events.read_events(gx.ledger, None, after=mark)
                 if e.type.startswith("budget.")]
        entries = gx.audit.list(grant_id=world.root)
    assert found == [
        ("budget.threshold", {"grantId": world.root, "pct": 50, "remaining": "50.0000"}),
        ("budget.threshold", {"grantId": world.root, "pct": 80, "remaining": "20.0000"}),
        ("budget.exhausted", {"grantId": world.root, "remaining": "0"}),
    ]
    debited = [e.metadata for e in entries if e.action == "grantex.budget.debited"]
    assert sorted(m["transactionId"] for m in debited) == sorted(seen)
    assert {(m["amount"], m["remaining"]) for m in debited} == {
        ("49.0000", "51.0000"), ("1.0000", "50.0000"), ("30.0000", "20.0000"), ("20.0000", "0.0000")}
    assert [e.action for e in entries].count("grantex.budget.allocated") == 1


def test_bdg_is_the_remaining_budget_on_refresh_only(world: World) -> None:
    with Grantex(world.path, create=False) as gx:
        plain = gx.tokens.refresh(refresh_token=world.root_refresh, agent_id=world.root_agent)
        assert "bdg" not in jwt.decode(plain.grant_token, options={"verify_signature": False})
        budgets.allocate(gx.ledger, None, world.root, "100")
        budgets.debit(gx.ledger, None, world.root, "0.5")
        again = gx.tokens.refresh(refresh_token=plain.refresh_token, agent_id=world.root_agent)
        claims = jwt.decode(again.grant_token, options={"verify_signature": False})
        assert claims["bdg"] == 99.5 and isinstance(claims["bdg"], float)
        assert gx.tokens.verify(again.grant_token).valid  # the extra claim changes nothing else


def test_amounts_are_exact_decimals(world: World) -> None:
    _allocate(world.path, world.root, "1")
    for _ in range(10):
        _debit(world.path, world.root, "0.1")
    assert _balance(world.path, world.root)["remainingBudget"] == "0.0000"
    assert budgets.parse_amount(0.1, "x") == 1000 and budgets.parse_amount("99999999999999.9999", "x")
    for bad in (0.00001, float("inf"), float("nan"), "1e-5", "100000000000000", "", " ", None, [1], "1,5"):
        with pytest.raises(errors.InvalidInput):
            budgets.parse_amount(bad, "amount")
    assert Decimal(budgets.format_units(123456789)) == Decimal("12345.6789")


# ── CLI and TUI ──────────────────────────────────────────────────────────────

def test_cli(world: World) -> None:
    ledger = ["--ledger", str(world.path)]
    made = ok_json("budgets", "allocate", world.root, "25.50", "--currency", "EUR", *ledger)
    assert (made["initialBudget"], made["currency"]) == ("25.5000", "EUR")
    debit = ok_json("budgets", "debit", world.root, "0.5", "--description", "coffee", *ledger)
    assert debit["remaining"] == "25.0000"
    assert ok_json("budgets", "show", world.root, *ledger)["remainingBudget"] == "25.0000"
    listed = ok_json("budgets", "transactions", world.root, *ledger)
    assert listed["total"] == 1 and listed["transactions"][0]["description"] == "coffee"
    before = _budget_state(world.path)
    assert "insufficient budget" in fails(2, "budgets", "debit", world.root, "26", *ledger).stderr
    assert "already has a budget" in fails(2, "budgets", "allocate", world.root, "1", *ledger).stderr
    assert "at most 4 decimals" in fails(2, "budgets", "debit", world.root, "0.00001", *ledger).stderr
    assert "currency must be EUR" in fails(2, "budgets", "allocate", world.child, "1", "--currency", "USD",
                                           *ledger).stderr
    fails(2, "budgets", "show", world.child, *ledger)
    fails(2, "budgets", "transactions", world.root, "--page-size", "201", *ledger)
    assert _budget_state(world.path) == before


def test_tui_grant_detail_shows_the_budget(world: World) -> None:
    _allocate(world.path, world.root, "100")
    _allocate(world.path, world.child, "40")
    _debit(world.path, world.grandchild, "2.5")  # no own budget: drawn on the child's

    def shown(grant_id: str) -> str:
        with Grantex(world.path, create=False) as gx:
            detail = TuiData(gx.ledger, read_only=True).grant_detail(grant_id)
        console = Console(width=160, record=True)
        console.print(render_grant(detail))
        return console.export_text()

    root = shown(world.root)
    assert "Budget (USD)" in root
    for name, value in (("Allocated", "100.0000"), ("Carved out", "40.0000"), ("Remaining", "60.0000"),
                        ("Subtree spent", "2.5000")):
        assert any(line.split()[:len(name.split())] == name.split() and value in line
                   for line in root.splitlines()), (name, root)
    child = shown(world.child)
    assert "carved from the parent" in child and "37.5000" in child
    assert "Budget" not in shown(world.grandchild)
    assert json.dumps(_balance(world.path, world.child)["spent"]) == '"2.5000"'
