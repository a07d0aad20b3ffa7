"""``POST /v1/principal-sessions``: a short-lived session for one principal (SDK-SURFACE §5).

The answer is the SDK's ``PrincipalSessionResponse``: ``{sessionToken, dashboardUrl,
expiresAt}``, the URL carrying the token in its fragment (``/permissions#session=...``) so that
it never reaches an access log. Sessions minted here rest on the developer's API key alone, so
they are marked ``via: api-key`` and the consent page does not accept them as proof of who
decides (see :mod:`grantex_local.approval`).

The principal-facing routes take the session token itself as the bearer (never an API key, and
an API key is never a session): ``GET /v1/principal/grants``, ``GET /v1/principal/audit``,
``GET /v1/principal/grants/{id}/blast-radius`` (for the page's confirmation) and
``DELETE /v1/principal/grants/{id}`` (a cascading revoke recorded as the principal's). Whatever
is not an active grant of the session's principal under its developer is 404, the same answer
as a grant that does not exist, so a session cannot learn of other people's grants.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse, Response
from pydantic import Field

from ... import errors, principals
from ..auth import CallerDep, server_state
from ..errors import ApiError
from ..schemas import Body
from . import created, no_content, ok

router = APIRouter(tags=["principal sessions"])


class CreatePrincipalSession(Body):
    principalId: str
    expiresIn: str | None = Field(None, description="e.g. '1h' (the default); over 24h is clamped to 24h.")


@router.post("/v1/principal-sessions", status_code=201, summary="Create a principal session")
def create_principal_session(body: CreatePrincipalSession, caller: CallerDep) -> JSONResponse:
    """A session token for ``principalId`` under the calling developer, and the dashboard URL
    to open with it. No grant is required: a principal may have none yet."""
    session = principals.create_session(caller.ledger(), caller.developer_id, body.principalId,
                                        via="api-key", expires_in=body.expiresIn)
    return created(session.to_dict(caller.state.issuer))


# ── the principal-facing side: the session token is the bearer (issue 12) ──────────────────


def _unauthorized(message: str) -> ApiError:
    return ApiError(401, "UNAUTHORIZED", message,
                    {"WWW-Authenticate": 'Bearer realm="grantex-local-principal"'})


def principal_session(request: Request) -> principals.VerifiedSession:
    """The principal session behind ``Authorization: Bearer <session token>``.

    Only the header counts, never a cookie: a cross-site page cannot set it, which is what keeps
    these routes safe from CSRF. Both ``via`` origins are accepted: with these routes a principal
    can only see and take away what was given in their name, never give anything.
    """
    header = request.headers.get("authorization", "")
    if not header.startswith("Bearer ") or not header[7:].strip():
        raise _unauthorized("Missing session token")
    try:
        return principals.verify_session(server_state(request).ledgers.get(), header[7:].strip())
    except errors.SessionInvalid as exc:
        reason = exc.message.removeprefix("principal session rejected: ")
        raise _unauthorized(f"Invalid or expired session token: {reason}") from None


SessionDep = Annotated[principals.VerifiedSession, Depends(principal_session)]


@router.get("/v1/principal/grants", summary="The session principal's active grants")
def principal_grants(session: SessionDep, request: Request) -> JSONResponse:
    """Active, unexpired grants in the principal's name under the session's developer, newest first."""
    ledger = server_state(request).ledgers.get()
    return ok({"grants": principals.principal_grants(ledger, session), "principalId": session.principal_id})


@router.get("/v1/principal/audit", summary="The session principal's audit entries")
def principal_audit(session: SessionDep, request: Request) -> JSONResponse:
    """At most 100 entries naming the principal, newest first, without hashes."""
    ledger = server_state(request).ledgers.get()
    return ok({"entries": principals.principal_audit(ledger, session)})


@router.get("/v1/principal/grants/{grant_id}/blast-radius", summary="What revoking a grant would take")
def principal_blast_radius(grant_id: str, session: SessionDep, request: Request) -> JSONResponse:
    """The grants below one of the principal's grants, shown before the page revokes it."""
    ledger = server_state(request).ledgers.get()
    return ok(principals.principal_blast_radius(ledger, session, grant_id))


@router.delete("/v1/principal/grants/{grant_id}", status_code=204, summary="Revoke one of your grants")
def principal_revoke(grant_id: str, session: SessionDep, request: Request) -> Response:
    """Cascading revoke, recorded as the principal's. 404 for anything not active and theirs.

    A present ``Origin`` that is not this server's is refused (403) before anything is read: the
    bearer header already stops cross-site forms, this stops a page that somehow holds a token.
    """
    origin = request.headers.get("origin")
    if origin is not None and origin != f"{request.url.scheme}://{request.headers.get('host', '')}":
        raise ApiError(403, "CSRF_FAILED", "This revoke was sent from another site and was refused.")
    principals.revoke_as_principal(server_state(request).ledgers.get(), session, grant_id)
    return no_content()
