"""``budgets``: give a grant a spend limit, spend from it, and read it back.

The same library calls as ``/v1/budget/*`` (:mod:`grantex_local.budgets`). The file's owner
acts on any grant in it; ``--developer`` restricts to one developer's grants. Amounts are
decimal text (``12.50``), never floats; answers show four decimals as the SDK gets them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import click

from . import GrantexGroup, developer_option, echo_fields, echo_table, emit, json_option, with_ledger

if TYPE_CHECKING:
    from ..founding import Ledger


@click.group("budgets", cls=GrantexGroup)
def budgets_group() -> None:
    """Spend limits per grant, held across delegation (a sub-agent's budget is carved from its parent's)."""


def _show(allocation: dict[str, Any]) -> None:
    echo_fields([
        ("id", allocation["id"]), ("grant", allocation["grantId"]),
        ("currency", allocation["currency"]), ("initial", allocation["initialBudget"]),
        ("spent", allocation["spent"]), ("carved out", allocation["carved"]),
        ("remaining", allocation["remainingBudget"]), ("subtree spent", allocation["subtreeSpent"]),
        ("carved from", allocation["parentAllocationId"] or "-"), ("updated", allocation["updatedAt"]),
    ])


@budgets_group.command("allocate")
@click.argument("grant_id", metavar="GRANT")
@click.argument("amount")
@click.option("--currency", default=None,
              help="Three upper-case letters (default USD, or the parent budget's).")
@developer_option
@json_option
@with_ledger
def budgets_allocate(ledger: Ledger, grant_id: str, amount: str, currency: str | None,
                     developer_id: str | None, as_json: bool) -> None:
    """Give GRANT a budget of AMOUNT; a delegated grant's is carved out of its nearest
    allocated ancestor's remaining budget."""
    from .. import budgets

    allocation = budgets.allocate(ledger, developer_id, grant_id, amount, currency)
    emit(as_json, allocation, lambda: _show(allocation))


@budgets_group.command("debit")
@click.argument("grant_id", metavar="GRANT")
@click.argument("amount")
@click.option("--description", default=None, help="What the money was spent on.")
@developer_option
@json_option
@with_ledger
def budgets_debit(ledger: Ledger, grant_id: str, amount: str, description: str | None,
                  developer_id: str | None, as_json: bool) -> None:
    """Spend AMOUNT from GRANT's budget (or its nearest allocated ancestor's); refused whole
    if it or any ancestor cannot cover it."""
    from .. import budgets

    result = budgets.debit(ledger, developer_id, grant_id, amount, description)
    emit(as_json, result, lambda: echo_fields([
        ("transaction", result["transactionId"]), ("grant", result["grantId"]),
        ("remaining", result["remaining"])]))


@budgets_group.command("show")
@click.argument("grant_id", metavar="GRANT")
@developer_option
@json_option
@with_ledger
def budgets_show(ledger: Ledger, grant_id: str, developer_id: str | None, as_json: bool) -> None:
    """GRANT's allocation: initial, spent, carved out, remaining and the subtree's spend."""
    from .. import budgets

    allocation = budgets.balance(ledger, developer_id, grant_id)
    emit(as_json, allocation, lambda: _show(allocation))


@budgets_group.command("transactions")
@click.argument("grant_id", metavar="GRANT")
@click.option("--page", type=int, default=1, show_default=True, help="Page number, from 1 (newest first).")
@click.option("--page-size", type=int, default=50, show_default=True, help="1 to 200.")
@developer_option
@json_option
@with_ledger
def budgets_transactions(ledger: Ledger, grant_id: str, page: int, page_size: int,
                         developer_id: str | None, as_json: bool) -> None:
    """GRANT's debits, newest first."""
    from .. import budgets

    found = budgets.transactions(ledger, developer_id, grant_id, page, page_size)

    def human() -> None:
        echo_table(["ID", "AMOUNT", "CREATED", "DESCRIPTION"],
                   [[t["id"], t["amount"], t["createdAt"], t["description"] or ""]
                    for t in found["transactions"]], "no transactions")
        click.echo(f"{found['total']} transaction(s)")

    emit(as_json, found, human)
