"""The grant flow (PROTOCOL §5, §6, §9): authorize, consent data, exchange, refresh, verify, revoke."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Header, Request
from fastapi.responses import JSONResponse, Response

from ... import authorization, developers
from ...developers import hash_secret
from ..auth import CallerDep, server_state
from ..consent import announce_waiting
from ..errors import ApiError
from ..schemas import Authorize, Exchange, Refresh, RevokeToken, TokenBody, refuse_unsupported
from . import created, no_content, ok

router = APIRouter(tags=["grant flow"])


@router.post("/v1/authorize", status_code=201, summary="Start an authorization")
def authorize(body: Authorize, caller: CallerDep) -> JSONResponse:
    """Policies first (a deny is 403 ``POLICY_DENIED``, an allow answers with a code), then
    sandbox (a code at once), else the request waits for a person at ``consentUrl``."""
    refuse_unsupported(body, "purpose", "dataRegion")
    request = caller.gx().authorize(
        agent_id=body.agentId, user_id=body.principalId, scopes=body.scopes, expires_in=body.expiresIn,
        redirect_uri=body.redirectUri, state=body.state, audience=body.audience,
        code_challenge=body.codeChallenge, code_challenge_method=body.codeChallengeMethod)
    announce_waiting(caller.state, caller.ledger(), request)  # serve's console: the approval code
    return created(request.to_dict())


# ── consent data (no API key: these are the person's side, PROTOCOL §12) ───────


@router.get("/v1/consent/{request_id}", tags=["consent"], summary="What a consent screen shows")
def consent_data(request_id: str, request: Request) -> JSONResponse:
    ledger = server_state(request).ledgers.get()
    return ok(authorization.consent_details(ledger, request_id))


def _sandbox_only(request: Request, request_id: str) -> None:
    ledger = server_state(request).ledgers.get()
    auth_request = authorization.get_request(ledger, request_id)
    if not developers.get_developer(ledger, auth_request.developer_id).sandbox:
        raise ApiError(403, "CONSENT_REQUIRES_PERSON",
                       "this developer is not a sandbox one: a person must decide on the consent "
                       f"page ({auth_request.consent_url}), in the TUI or with the CLI")


@router.post("/v1/consent/{request_id}/approve", tags=["consent"],
             summary="Approve without a person (sandbox developers only)")
def consent_approve(request_id: str, request: Request) -> JSONResponse:
    _sandbox_only(request, request_id)
    decision = authorization.approve(server_state(request).ledgers.get(), request_id,
                                     decided_by="sandbox api", channel="sandbox-api")
    return ok(decision.to_dict())


@router.post("/v1/consent/{request_id}/deny", tags=["consent"],
             summary="Deny without a person (sandbox developers only)")
def consent_deny(request_id: str, request: Request) -> JSONResponse:
    _sandbox_only(request, request_id)
    decision = authorization.deny(server_state(request).ledgers.get(), request_id,
                                  decided_by="sandbox api", channel="sandbox-api")
    return ok(decision.to_dict())


# ── tokens ──────────────────────────────────────────────────────────────────


@router.post("/v1/token", status_code=201, tags=["tokens"], summary="Exchange a code for a grant token")
def exchange(body: Exchange, caller: CallerDep) -> JSONResponse:
    if body.credentialFormat not in (None, "jwt"):
        raise ApiError(400, "UNSUPPORTED", "credentialFormat must be 'jwt' (grantex-local issues JWTs only)")
    issued = caller.gx().tokens.exchange(code=body.code, agent_id=body.agentId,
                                         code_verifier=body.codeVerifier, redirect_uri=body.redirectUri)
    return created(issued.to_dict())


@router.post("/v1/token/refresh", status_code=201, tags=["tokens"], summary="Rotate a refresh token")
def refresh(body: Refresh, caller: CallerDep,
            idempotency_key: Annotated[str | None, Header(alias="Idempotency-Key")] = None) -> JSONResponse:
    """A spent refresh token revokes the grant's live tokens (400 ``REFRESH_TOKEN_REUSED``).
    A retry carrying the same ``Idempotency-Key`` gets the first answer again instead."""
    if not idempotency_key:
        return created(caller.gx().tokens.refresh(refresh_token=body.refreshToken,
                                                  agent_id=body.agentId).to_dict())
    cache = caller.state.idempotency
    key = (caller.developer_id, idempotency_key[:200], hash_secret(body.refreshToken))
    with cache.lock:
        replay = cache.get(key)
        if replay is None:
            replay = caller.gx().tokens.refresh(refresh_token=body.refreshToken,
                                                agent_id=body.agentId).to_dict()
            cache.put(key, replay)
    return created(replay)


@router.post("/v1/tokens/verify", tags=["tokens"], summary="Verify a grant token online (always 200)")
def verify(body: TokenBody, caller: CallerDep) -> JSONResponse:
    """``{valid: true, grantId, scopes, principal, agent, expiresAt}`` or ``{valid: false, reason}``."""
    if not isinstance(body.token, str) or not body.token:
        return ok({"valid": False, "reason": "malformed"})
    return ok(caller.gx().tokens.verify(body.token).to_dict())


@router.post("/v1/tokens/revoke", status_code=204, tags=["tokens"], summary="Revoke one token by jti")
def revoke_token(body: RevokeToken, caller: CallerDep) -> Response:
    """Grants delegated from the token are revoked with it."""
    caller.gx().tokens.revoke(body.jti)
    return no_content()
