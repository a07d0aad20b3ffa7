"""``/v1/decisions``: decision requests, case versions and consuming decision grants (SDK-SURFACE §15).

The SDK reads a consumption refusal from the body's ``subReason`` (with status 400, 403, 404,
409 or 410), so those routes answer ``{message, code, requestId, subReason}``; every other error
is the usual ``{message, code, requestId}``. Approving is not here: a person approves on the
page (:mod:`..decision_page`), the CLI or the TUI, never with the developer's API key, which
the agent asking may hold.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from ... import decisions, errors
from ..auth import CallerDep, server_state
from ..errors import error_body, request_id_of
from ..schemas import Body
from . import created, ok

router = APIRouter(tags=["decisions"])
"""``decisions``: a person approves one specific high-risk action; the agent consumes it once."""


class Content(Body):
    content: Any = None
    ref: str | None = None


class CreateRequest(Body):
    """Shapes are checked by the library (its 400s name the field)."""

    action: Any = None
    connector: Any = None
    caseVersion: Any = None
    memo: Content | None = None
    policyScore: Content | None = None
    fourEyesOn: Any = None
    approvalsRequired: Any = None
    expiresInSeconds: Any = None
    agentId: Any = None
    grantId: Any = None


class CaseVersion(Body):
    caseVersion: Any = None


class GrantToken(Body):
    grantToken: Any = None


class Consume(Body):
    decisionGrants: Any = None
    action: Any = None
    caseVersion: Any = None
    agentId: Any = None
    agentDid: Any = None
    grantId: Any = None
    grantToken: Any = None


class ConsumeRequest(Body):
    action: Any = None
    caseVersion: Any = None


def refused(request: Request, exc: errors.DecisionRefused) -> JSONResponse:
    body: dict[str, Any] = error_body(exc.status, exc.code, exc.message, request_id_of(request.scope))
    body["subReason"] = exc.sub_reason
    return JSONResponse(body, status_code=exc.status)


@router.put("/v1/decisions/cases/{case_id}", summary="Register a case's current version")
def set_case_version(case_id: str, body: CaseVersion, caller: CallerDep) -> JSONResponse:
    return ok(decisions.set_case_version(caller.ledger(), caller.developer_id, case_id, body.caseVersion))


@router.post("/v1/decisions/requests", summary="Ask a person to decide one action (idempotent while open)")
def create_request(body: CreateRequest, caller: CallerDep, request: Request) -> JSONResponse:
    if body.memo is None or body.policyScore is None:
        raise errors.InvalidInput("memo and policyScore are required ({content, ref?})")
    ledger = caller.ledger()
    found, is_new = decisions.create_request(
        ledger, caller.developer_id, action=body.action, connector=body.connector,
        case_version=body.caseVersion, memo=body.memo.content, memo_ref=body.memo.ref,
        policy_score=body.policyScore.content, policy_score_ref=body.policyScore.ref,
        four_eyes_on=body.fourEyesOn, approvals_required=body.approvalsRequired,
        expires_in_seconds=body.expiresInSeconds, agent_id=body.agentId, grant_id=body.grantId)
    if is_new:
        from ..decision_page import announce_waiting

        announce_waiting(server_state(request), ledger, found)
        return created(found.to_dict())
    return ok(found.to_dict())


@router.get("/v1/decisions/requests/{request_id}", summary="A decision request: status and approvals")
def get_request(request_id: str, caller: CallerDep) -> JSONResponse:
    return ok(decisions.get_request(caller.ledger(), caller.developer_id, request_id).to_dict())


@router.post("/v1/decisions/requests/{request_id}/grants", summary="The grants, for the agent named")
def get_grants(request_id: str, body: GrantToken, caller: CallerDep, request: Request) -> JSONResponse:
    try:
        return ok(decisions.grants_for_agent(caller.ledger(), caller.developer_id, request_id,
                                             body.grantToken))
    except errors.DecisionRefused as exc:
        return refused(request, exc)


@router.post("/v1/decisions/requests/{request_id}/cancel", summary="Cancel an open decision request")
def cancel_request(request_id: str, caller: CallerDep) -> JSONResponse:
    return ok(decisions.cancel_request(caller.ledger(), caller.developer_id, request_id).to_dict())


@router.post("/v1/decisions/consume", summary="Consume decision grants, once, all or none")
def consume(body: Consume, caller: CallerDep, request: Request) -> JSONResponse:
    try:
        return ok(decisions.consume(caller.ledger(), caller.developer_id, body.decisionGrants, body.action,
                                    body.caseVersion, grant_token=body.grantToken, agent_id=body.agentId,
                                    grant_id=body.grantId))
    except errors.DecisionRefused as exc:
        return refused(request, exc)


@router.post("/v1/decisions/requests/{request_id}/consume", summary="Consume a request's grants by its id")
def consume_request(request_id: str, body: ConsumeRequest, caller: CallerDep,
                    request: Request) -> JSONResponse:
    try:
        return ok(decisions.consume_request(caller.ledger(), caller.developer_id, request_id, body.action,
                                            body.caseVersion))
    except errors.DecisionRefused as exc:
        return refused(request, exc)
