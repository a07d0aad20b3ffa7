"""``/v1/audit``: append (the SDK's ``audit.log``), list, read, and signed checkpoints.

Entries are append-only: PUT, PATCH and DELETE on an entry answer 405 (and the
ledger's triggers would refuse them anyway).
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query
from fastapi.responses import JSONResponse

from ...paging import MAX_PAGE, MAX_PAGE_SIZE
from ..auth import CallerDep
from ..schemas import LogAudit
from . import created, ok

router = APIRouter(prefix="/v1/audit", tags=["audit"])


@router.post("/log", status_code=201, summary="Append an action to the developer's hash chain")
def log_entry(body: LogAudit, caller: CallerDep) -> JSONResponse:
    """``agentDid`` and ``principalId`` are checked against the grant when given. Actions under a
    revoked or expired grant are recorded all the same, and flagged when read (PROTOCOL §10)."""
    entry = caller.gx().audit.log(agent_id=body.agentId, grant_id=body.grantId, action=body.action,
                                  status=body.status or "success", metadata=body.metadata,
                                  agent_did=body.agentDid, principal_id=body.principalId)
    return created(entry.to_dict())


@router.get("/entries", summary="List entries, oldest first")
def list_entries(
    caller: CallerDep,
    agentId: str | None = None,
    grantId: str | None = None,
    principalId: str | None = None,
    action: str | None = None,
    status: str | None = None,
    since: str | None = Query(None, description="ISO-8601, inclusive"),
    until: str | None = Query(None, description="ISO-8601, exclusive"),
    page: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 1,
    pageSize: Annotated[int, Query(ge=1, le=MAX_PAGE_SIZE)] = 100,
) -> JSONResponse:
    entries = caller.gx().audit.list(agent_id=agentId, grant_id=grantId, principal_id=principalId,
                                     action=action, status=status, since=since, until=until,
                                     page=page, page_size=pageSize)
    return ok({"entries": [e.to_dict() for e in entries], "page": page, "pageSize": pageSize})


@router.post("/checkpoints", status_code=201, summary="Sign a checkpoint over the whole chain")
def create_checkpoint(caller: CallerDep) -> JSONResponse:
    """Checks the entries appended since the previous checkpoint first (409 ``CHAIN_BROKEN`` if
    they were tampered with); the answer's ``signedCheckpoint`` is a C2SP signed note."""
    return created(caller.gx().audit.checkpoint())


@router.get("/checkpoints", summary="Checkpoints written so far")
def list_checkpoints(caller: CallerDep) -> JSONResponse:
    return ok({"checkpoints": caller.gx().audit.checkpoints()})


@router.get("/{entry_id}", summary="Get one entry")
def get_entry(entry_id: str, caller: CallerDep) -> JSONResponse:
    return ok(caller.gx().audit.get(entry_id).to_dict())
