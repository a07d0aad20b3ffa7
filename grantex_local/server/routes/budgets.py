"""``/v1/budget/*`` (SDK-SURFACE §8): allocate, debit, balance, transactions, allocations.

Amounts come in as JSON numbers or decimal strings and go out as decimal strings with four
decimals; the library does the money (:mod:`grantex_local.budgets`). Every route is scoped to
the calling developer: another developer's grant is a 404.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Query
from fastapi.responses import JSONResponse
from pydantic import Field

from ... import budgets, errors
from ..auth import CallerDep
from ..schemas import Body
from . import created, ok

router = APIRouter(tags=["budgets"])


class AllocateBudget(Body):
    grantId: str
    initialBudget: int | float | str = Field(
        description="> 0, at most 4 decimals; a decimal string keeps every digit.")
    currency: str | None = Field(None, description="Three upper-case letters; default USD, or the parent's.")


class DebitBudget(Body):
    grantId: str
    amount: int | float | str = Field(description="> 0, at most 4 decimals.")
    description: str | None = None
    metadata: dict[str, Any] | None = None


def _whole(value: str | None, name: str) -> int | None:
    """Query numbers are checked by the library (its 400 names the bound), not by FastAPI."""
    if value is None:
        return None
    if not value.isascii() or not value.isdigit():
        raise errors.InvalidInput(f"{name} must be a whole number")
    return int(value)


@router.post("/v1/budget/allocate", summary="Give a grant its budget (carved out of an allocated ancestor's)")
def allocate_budget(body: AllocateBudget, caller: CallerDep) -> JSONResponse:
    return created(budgets.allocate(caller.ledger(), caller.developer_id, body.grantId,
                                    body.initialBudget, body.currency))


@router.post("/v1/budget/debit", summary="Spend from a grant's budget (and its ancestors')")
def debit_budget(body: DebitBudget, caller: CallerDep) -> JSONResponse:
    return ok(budgets.debit(caller.ledger(), caller.developer_id, body.grantId, body.amount,
                            body.description, body.metadata))


@router.get("/v1/budget/balance/{grant_id}", summary="A grant's allocation and what is left")
def budget_balance(grant_id: str, caller: CallerDep) -> JSONResponse:
    return ok(budgets.balance(caller.ledger(), caller.developer_id, grant_id))


@router.get("/v1/budget/transactions/{grant_id}", summary="A grant's debits, newest first")
def budget_transactions(grant_id: str, caller: CallerDep,
                        page: str | None = Query(None, description="From 1"),
                        pageSize: str | None = Query(None, description="1 to 200, default 50"),
                        ) -> JSONResponse:
    return ok(budgets.transactions(caller.ledger(), caller.developer_id, grant_id,
                                   _whole(page, "page"), _whole(pageSize, "pageSize")))


@router.get("/v1/budget/allocations", summary="Every allocation of the developer, newest first")
def budget_allocations(caller: CallerDep) -> JSONResponse:
    return ok({"allocations": budgets.list_allocations(caller.ledger(), caller.developer_id)})
