"""``/v1/grants`` (read, list, revoke, delegate, verify) and ``/v1/revocations/status``."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query
from fastapi.responses import JSONResponse, Response

from ... import grants as grants_lib
from ... import paging
from ...paging import MAX_PAGE, MAX_PAGE_SIZE
from ..adapters import revocation_status, verified_claims
from ..auth import CallerDep
from ..errors import ApiError
from ..schemas import Delegate, TokenBody
from . import created, no_content, ok

router = APIRouter(tags=["grants"])


@router.get("/v1/grants", summary="List grants")
def list_grants(
    caller: CallerDep,
    agentId: str | None = None,
    principalId: str | None = None,
    status: str | None = Query(None, description="active, revoked or expired"),
    page: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 1,
    pageSize: Annotated[int | None, Query(ge=1, le=MAX_PAGE_SIZE)] = None,
) -> JSONResponse:
    limit, offset = paging.window(page, pageSize) if pageSize is not None else (None, 0)
    found = grants_lib.list_grants(
        caller.ledger(), caller.developer_id, agent_id=agentId, principal_id=principalId, status=status,
        limit=limit, offset=offset)
    return ok({"grants": [g.to_dict() for g in found]})


@router.get("/v1/grants/{grant_id}", summary="Get a grant")
def get_grant(grant_id: str, caller: CallerDep) -> JSONResponse:
    return ok(caller.gx().grants.get(grant_id).to_dict())


@router.delete("/v1/grants/{grant_id}", status_code=204, summary="Revoke a grant and all its descendants")
def revoke_grant(grant_id: str, caller: CallerDep) -> Response:
    caller.gx().grants.revoke(grant_id)
    return no_content()


@router.post("/v1/grants/delegate", status_code=201, summary="Delegate part of a grant to a sub-agent")
def delegate(body: Delegate, caller: CallerDep) -> JSONResponse:
    issued = caller.gx().grants.delegate(parent_grant_token=body.parentGrantToken,
                                         sub_agent_id=body.subAgentId, scopes=body.scopes,
                                         expires_in=body.expiresIn)
    return created(issued.to_dict())


@router.post("/v1/grants/verify", summary="Introspect a grant token (always 200)")
def verify_grant(body: TokenBody, caller: CallerDep) -> JSONResponse:
    """``{active: true, claims}`` (the token's claims) or ``{active: false, reason}``."""
    if not isinstance(body.token, str) or not body.token:
        return ok({"active": False, "reason": "malformed"})
    return ok(verified_claims(caller.ledger(), caller.developer_id, body.token))


@router.get("/v1/revocations/status", tags=["revocations"],
            summary="Whether a grant (and token) may still be used")
def revocations_status(
    caller: CallerDep,
    grantId: str | None = None,
    jti: str | None = None,
) -> JSONResponse:
    """What the SDK's ``enforce()`` asks before every call with ``revocation_check="online"``."""
    if not grantId:
        raise ApiError(400, "BAD_REQUEST", "grantId is required")
    return ok(revocation_status(caller.ledger(), caller.developer_id, grantId, jti or None))
