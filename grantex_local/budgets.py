"""Budgets: spend limits per grant that hold across delegation (SDK-SURFACE §8, issue 13).

Money is :class:`decimal.Decimal` at the edges and INTEGER units of 0.0001 in the file (the
reference stores NUMERIC(18,4)), so every sum is exact and no float ever touches a balance.
Amounts are answered as decimal strings with four decimals (``"100.0000"``), as the reference
answers them.

**Across delegation.** Each allocation keeps three numbers:

- ``remaining``: what its own grant may still spend, or carve out for a delegated child
  (``initial - spent - carved``). This is ``remainingBudget`` on the wire.
- ``carved``: what it handed to the allocations of grants delegated from it.
- ``subtree_spent``: every debit drawn on it *or on any allocation below it*.

A child's allocation is carved out of the nearest allocated ancestor's ``remaining`` (that
drops by the amount; more than it has is 402 ``INSUFFICIENT_BUDGET``), so a parent can never
hand a sub-agent a fresh budget: whatever the sub-agent gets, the parent gave up. A debit on a
grant draws on its own allocation or, if it has none, on its nearest allocated ancestor's
(a sub-agent with no budget of its own spends its parent's); it reduces that ``remaining`` and
adds to ``subtree_spent`` of every allocation up to the root, each of which is checked to still
cover the amount. A carved child's spending is not taken from the parent's ``remaining`` a
second time: it was already taken at the carve (that is why a carve of a parent's whole
budget can still be spent by the child). Hence, at any depth: ``subtree_spent <= initial`` for
every allocation, and a tree spends at most what its root was given. A grant whose descendant
already holds an allocation cannot be given one itself (allocate top-down; the descendant's
budget would otherwise be outside the root's). Budget carved into a child that is later
revoked stays with that child (spent or not); it is not returned to the parent.

Every write is one ``ledger.write()`` transaction (BEGIN IMMEDIATE: one writer across
processes), so the check, the balance changes, the transaction row, the audit entry and the
events commit together or not at all, whichever process debits.
"""

from __future__ import annotations

import json
import math
import re
import sqlite3
from decimal import Decimal, InvalidOperation
from typing import TYPE_CHECKING, Any

from . import errors, events
from .audit.trail import record
from .clock import iso
from .grants import status_of
from .ids import new_id
from .paging import window
from .text import check_json, check_text

if TYPE_CHECKING:
    from .founding import Ledger
    from .ledger import LedgerFile

SCALE = 10_000
"""Units per currency unit: amounts are stored as integers of 0.0001."""
MAX_AMOUNT = Decimal(10) ** 14
"""Exclusive upper bound of any amount: NUMERIC(18,4) holds 14 digits before the point."""
DEFAULT_CURRENCY = "USD"
DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 200
MAX_DESCRIPTION = 1000
THRESHOLDS = (80, 50)

_CURRENCY = re.compile(r"[A-Z]{3}")


class InsufficientBudget(errors.GrantexLocalError):
    """The amount exceeds what the grant (or an ancestor) still has: 402, nothing written."""

    code = "INSUFFICIENT_BUDGET"
    status = 402


class BudgetConflict(errors.GrantexLocalError):
    """One allocation per grant, and none above an allocated descendant."""

    code = "CONFLICT"
    status = 409


class GrantInactive(errors.GrantexLocalError):
    """The grant is revoked or expired: budgets only move on live grants."""

    code = "GRANT_INACTIVE"
    status = 409


# ── money ────────────────────────────────────────────────────────────────────

def parse_amount(value: object, field: str) -> int:
    """``value`` (a JSON number or a decimal string) as units of 0.0001.

    A JSON number arrives as a Python float or int; a float is read through its shortest
    round-trip ``repr`` (what the sender wrote, for up to 15 significant digits). Send a
    decimal string for more digits than a double carries."""
    if isinstance(value, bool):
        raise errors.InvalidInput(f"{field} must be a number or a decimal string")
    if isinstance(value, float):
        if not math.isfinite(value):
            raise errors.InvalidInput(f"{field} must be finite")
        text = repr(value)
    elif isinstance(value, (int, Decimal)):
        text = str(value)
    elif isinstance(value, str):
        text = value.strip()
        if not re.fullmatch(r"[+]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?", text):
            raise errors.InvalidInput(f"{field} must be a decimal number such as \"12.50\"")
    else:
        raise errors.InvalidInput(f"{field} must be a number or a decimal string")
    try:
        amount = Decimal(text)
    except InvalidOperation:
        raise errors.InvalidInput(f"{field} must be a decimal number") from None
    if not amount.is_finite():
        raise errors.InvalidInput(f"{field} must be finite")
    if amount <= 0:
        raise errors.InvalidInput(f"{field} must be greater than 0")
    if amount >= MAX_AMOUNT:
        raise errors.InvalidInput(f"{field} must be below {MAX_AMOUNT:,}")
    units = amount * SCALE
    if units != units.to_integral_value():
        raise errors.InvalidInput(f"{field} may have at most 4 decimals")
    return int(units)


def to_decimal(units: int) -> Decimal:
    """Stored units as the exact Decimal amount."""
    return Decimal(units).scaleb(-4)


def format_units(units: int) -> str:
    """The wire form: a decimal string with exactly 4 decimals (``"100.0000"``)."""
    return f"{to_decimal(units):.4f}"


def check_currency(value: object) -> str | None:
    """Three upper-case letters (ISO 4217 shape), or None for the default."""
    if value is None:
        return None
    if not isinstance(value, str) or not _CURRENCY.fullmatch(value):
        raise errors.InvalidInput("currency must be three upper-case letters, such as USD")
    return value


# ── reads ────────────────────────────────────────────────────────────────────

def _allocation_dict(row: sqlite3.Row, grant_id: str | None = None) -> dict[str, Any]:
    return {
        "id": row["id"], "grantId": grant_id or row["grant_id"], "developerId": row["developer_id"],
        "initialBudget": format_units(row["initial_units"]),
        "remainingBudget": format_units(row["remaining_units"]),
        "currency": row["currency"], "createdAt": row["created_at"], "updatedAt": row["updated_at"],
        "spent": format_units(row["spent_units"]),
        "carved": format_units(row["carved_units"]),
        "subtreeSpent": format_units(row["subtree_spent_units"]),
        "parentAllocationId": row["parent_allocation_id"],
    }


def _grant_row(conn: sqlite3.Connection, developer_id: str | None, grant_id: object) -> sqlite3.Row:
    if not isinstance(grant_id, str) or not grant_id:
        raise errors.InvalidInput("grantId must be a non-empty string")
    check_text(grant_id, "grantId")
    row = conn.execute(
        "SELECT g.id, g.developer_id, g.agent_id, g.principal_id, g.revoked_at, g.expires_at, "
        "g.parent_grant_id, a.did AS agent_did FROM grants g JOIN agents a ON a.id = g.agent_id "
        "WHERE g.id = ?", (grant_id,)).fetchone()
    if row is None or (developer_id is not None and row["developer_id"] != developer_id):
        raise errors.NotFound(f"grant {grant_id} not found")
    return row


def _require_active(ledger: LedgerFile, grant: sqlite3.Row) -> None:
    status = status_of(grant, iso(ledger.now()))
    if status != "active":
        raise GrantInactive(f"grant {grant['id']} is {status}")


def _chain_allocations(conn: sqlite3.Connection, grant_id: str, *, include_self: bool) -> list[sqlite3.Row]:
    """Allocations of the grant (if ``include_self``) and of its ancestors, nearest first."""
    return conn.execute(
        "WITH RECURSIVE chain(id, n) AS (SELECT ?, 0 "
        " UNION ALL SELECT g.parent_grant_id, c.n + 1 FROM grants g JOIN chain c ON g.id = c.id "
        " WHERE g.parent_grant_id IS NOT NULL) "
        "SELECT b.* FROM chain c JOIN budget_allocations b ON b.grant_id = c.id "
        "WHERE c.n >= ? ORDER BY c.n", (grant_id, 0 if include_self else 1)).fetchall()


def _own(conn: sqlite3.Connection, developer_id: str | None, grant_id: object) -> sqlite3.Row:
    grant = _grant_row(conn, developer_id, grant_id)
    row = conn.execute("SELECT * FROM budget_allocations WHERE grant_id = ?", (grant["id"],)).fetchone()
    if row is None:
        raise errors.NotFound(f"no budget allocated for grant {grant['id']}")
    return row


def balance(ledger: Ledger, developer_id: str | None, grant_id: object) -> dict[str, Any]:
    """The grant's own allocation (404 if it has none, even when an ancestor has one)."""
    with ledger.read() as conn:
        return _allocation_dict(_own(conn, developer_id, grant_id))


def transactions(ledger: Ledger, developer_id: str | None, grant_id: object,
                 page: object = None, page_size: object = None) -> dict[str, Any]:
    """The debits made on this grant, newest first, with their total count."""
    limit, offset = window(1 if page is None else page,
                           DEFAULT_PAGE_SIZE if page_size is None else page_size)
    if limit > MAX_PAGE_SIZE:
        raise errors.InvalidInput(f"pageSize must be a whole number from 1 to {MAX_PAGE_SIZE}")
    with ledger.read() as conn:
        grant = _grant_row(conn, developer_id, grant_id)
        total = conn.execute("SELECT count(*) FROM budget_transactions WHERE grant_id = ?",
                             (grant["id"],)).fetchone()[0]
        rows = conn.execute(
            "SELECT * FROM budget_transactions WHERE grant_id = ? ORDER BY seq DESC LIMIT ? OFFSET ?",
            (grant["id"], limit, offset)).fetchall()
    return {"transactions": [{
        "id": r["id"], "grantId": r["grant_id"], "allocationId": r["allocation_id"],
        "amount": format_units(r["amount_units"]), "description": r["description"],
        "metadata": json.loads(r["metadata"]), "createdAt": r["created_at"]} for r in rows],
        "total": total}


def list_allocations(ledger: Ledger, developer_id: str | None) -> list[dict[str, Any]]:
    """Every allocation of the developer (all of them when ``developer_id`` is None), newest first."""
    sql = "SELECT * FROM budget_allocations"
    params: tuple[Any, ...] = ()
    if developer_id is not None:
        sql += " WHERE developer_id = ?"
        params = (developer_id,)
    return [_allocation_dict(r) for r in ledger.query(sql + " ORDER BY created_at DESC, id DESC", params)]


def summary(ledger: Ledger, grant_id: str) -> dict[str, Any] | None:
    """The grant's allocation for display (the TUI), or None when it has none."""
    row = ledger.query_one("SELECT * FROM budget_allocations WHERE grant_id = ?", (grant_id,))
    return None if row is None else _allocation_dict(row)


def remaining_claim(conn: sqlite3.Connection, grant_id: str) -> float | None:
    """The ``bdg`` claim for a refreshed token: the grant's own remaining as a JSON number.

    The reference writes ``remaining_budget`` as a number (e.g. ``99.5``), so this is the exact
    Decimal converted once to the nearest double; nothing in the SDK reads it, and the
    ledger's own balance (a decimal string) is the truth. None without an allocation."""
    row = conn.execute("SELECT remaining_units FROM budget_allocations WHERE grant_id = ?",
                       (grant_id,)).fetchone()
    return None if row is None else float(to_decimal(row[0]))


# ── writes ───────────────────────────────────────────────────────────────────

def allocate(ledger: Ledger, developer_id: str | None, grant_id: object, initial_budget: object,
             currency: object = None) -> dict[str, Any]:
    """Give a live grant its budget, carved out of its nearest allocated ancestor's if any."""
    units = parse_amount(initial_budget, "initialBudget")
    wanted = check_currency(currency)
    with ledger.write() as conn:
        grant = _grant_row(conn, developer_id, grant_id)
        _require_active(ledger, grant)
        if conn.execute("SELECT 1 FROM budget_allocations WHERE grant_id = ?", (grant["id"],)).fetchone():
            raise BudgetConflict(f"grant {grant['id']} already has a budget allocation")
        below = conn.execute(
            "WITH RECURSIVE tree(id) AS (SELECT id FROM grants WHERE parent_grant_id = ? "
            " UNION SELECT g.id FROM grants g JOIN tree t ON g.parent_grant_id = t.id) "
            "SELECT b.grant_id FROM tree t JOIN budget_allocations b ON b.grant_id = t.id LIMIT 1",
            (grant["id"],)).fetchone()
        if below is not None:
            raise BudgetConflict(f"grant {below[0]}, delegated from {grant['id']}, already has its own "
                                 "budget: allocate from the top of a delegation tree down")
        now = iso(ledger.now())
        ancestors = _chain_allocations(conn, grant["id"], include_self=False)
        parent = ancestors[0] if ancestors else None
        if parent is not None:
            if wanted is not None and wanted != parent["currency"]:
                raise errors.InvalidInput(f"currency must be {parent['currency']}, the currency of the "
                                          f"budget it is carved from (grant {parent['grant_id']})")
            wanted = parent["currency"]
            if units > parent["remaining_units"]:
                raise InsufficientBudget(
                    f"cannot carve {format_units(units)} out of grant {parent['grant_id']}'s budget: "
                    f"{format_units(parent['remaining_units'])} remaining")
            conn.execute("UPDATE budget_allocations SET remaining_units = remaining_units - ?, "
                         "carved_units = carved_units + ?, updated_at = ? WHERE id = ?",
                         (units, units, now, parent["id"]))
        allocation_id = new_id("budget")
        conn.execute(
            "INSERT INTO budget_allocations (id, developer_id, grant_id, parent_allocation_id, currency, "
            "initial_units, remaining_units, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (allocation_id, grant["developer_id"], grant["id"], parent["id"] if parent else None,
             wanted or DEFAULT_CURRENCY, units, units, now, now))
        record(ledger, conn, grant["developer_id"], "grantex.budget.allocated", agent_id=grant["agent_id"],
               agent_did=grant["agent_did"], grant_id=grant["id"], principal_id=grant["principal_id"],
               metadata={"allocationId": allocation_id, "initialBudget": format_units(units),
                         "currency": wanted or DEFAULT_CURRENCY,
                         "carvedFrom": parent["id"] if parent else None})
        row = conn.execute("SELECT * FROM budget_allocations WHERE id = ?", (allocation_id,)).fetchone()
        return _allocation_dict(row)


def debit(ledger: Ledger, developer_id: str | None, grant_id: object, amount: object,
          description: object = None, metadata: object = None) -> dict[str, Any]:
    """Spend ``amount`` on a live grant; see the module docstring for what it draws on."""
    units = parse_amount(amount, "amount")
    if description is not None:
        if not isinstance(description, str) or len(description) > MAX_DESCRIPTION:
            raise errors.InvalidInput(f"description must be a string of at most {MAX_DESCRIPTION} characters")
        check_text(description, "description")
    if metadata is None:
        metadata = {}
    if not isinstance(metadata, dict):
        raise errors.InvalidInput("metadata must be an object")
    check_json(metadata, "metadata")
    metadata_text = json.dumps(metadata, separators=(",", ":"), ensure_ascii=False)
    with ledger.write() as conn:
        grant = _grant_row(conn, developer_id, grant_id)
        _require_active(ledger, grant)
        chain = _chain_allocations(conn, grant["id"], include_self=True)
        if not chain:
            raise errors.NotFound(f"no budget allocated for grant {grant['id']} or any grant it was "
                                  "delegated from")
        drawn = chain[0]
        if units > drawn["remaining_units"]:
            raise InsufficientBudget(
                f"insufficient budget: {format_units(units)} requested, "
                f"{format_units(drawn['remaining_units'])} remaining"
                + ("" if drawn["grant_id"] == grant["id"] else f" (on grant {drawn['grant_id']})"))
        for above in chain:
            if units > above["initial_units"] - above["subtree_spent_units"]:
                raise InsufficientBudget(
                    f"insufficient budget: grant {above['grant_id']}'s tree has "
                    f"{format_units(above['initial_units'] - above['subtree_spent_units'])} left")
        now = iso(ledger.now())
        conn.execute("UPDATE budget_allocations SET remaining_units = remaining_units - ?, "
                     "spent_units = spent_units + ? WHERE id = ?", (units, units, drawn["id"]))
        marks = ",".join("?" * len(chain))
        conn.execute(f"UPDATE budget_allocations SET subtree_spent_units = subtree_spent_units + ?, "
                     f"updated_at = ? WHERE id IN ({marks})", (units, now, *[a["id"] for a in chain]))
        remaining = drawn["remaining_units"] - units
        transaction_id = new_id("budget_transaction")
        conn.execute(
            "INSERT INTO budget_transactions (id, developer_id, grant_id, allocation_id, amount_units, "
            "description, metadata, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (transaction_id, grant["developer_id"], grant["id"], drawn["id"], units, description,
             metadata_text, now))
        record(ledger, conn, grant["developer_id"], "grantex.budget.debited", agent_id=grant["agent_id"],
               agent_did=grant["agent_did"], grant_id=grant["id"], principal_id=grant["principal_id"],
               metadata={"transactionId": transaction_id, "allocationId": drawn["id"],
                         "amount": format_units(units), "remaining": format_units(remaining)})
        _emit_threshold(ledger, conn, grant["developer_id"], grant["id"], drawn, remaining)
    return {"remaining": format_units(remaining), "transactionId": transaction_id, "grantId": grant["id"],
            "allocationId": drawn["id"]}


def _emit_threshold(ledger: Ledger, conn: sqlite3.Connection, developer_id: str, grant_id: str,
                    drawn: sqlite3.Row, remaining: int) -> None:
    """The reference's events after each debit (every debit past a line, not once):
    exhausted at 0, else threshold at 80 % then 50 % used of the allocation drawn on.
    Used counts what was carved out for children too: it is no longer this grant's to spend."""
    if remaining <= 0:
        events.emit(ledger, conn, developer_id, "budget.exhausted", {"grantId": grant_id, "remaining": "0"})
        return
    used = drawn["initial_units"] - remaining
    for pct in THRESHOLDS:
        if used * 100 >= drawn["initial_units"] * pct:
            events.emit(ledger, conn, developer_id, "budget.threshold",
                        {"grantId": grant_id, "pct": pct, "remaining": format_units(remaining)})
            return
