"""``POST /v1/principal-sessions``: a short-lived session for one principal (SDK-SURFACE §5).

The answer is the SDK's ``PrincipalSessionResponse``: ``{sessionToken, dashboardUrl,
expiresAt}``, the URL carrying the token in its fragment (``/permissions#session=...``) so that
it never reaches an access log. Sessions minted here rest on the developer's API key alone, so
they are marked ``via: api-key`` and the consent page does not accept them as proof of who
decides (see :mod:`grantex_local.approval`). The principal-facing ``/v1/principal/*`` routes
(issue 12) build on the same tokens.
"""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse
from pydantic import Field

from ... import principals
from ..auth import CallerDep
from ..schemas import Body
from . import created

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
