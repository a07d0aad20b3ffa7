"""The caller's own account (SDK-SURFACE §11, §12): usage, ``/v1/me``, key rotation, signup.

What an API key holder may change about its developer over HTTP, and why:

- ``name``: yes (cosmetic, audited).
- ``mode``: only towards ``"live"``. Sandbox mode makes authorize approve at once, without
  anyone's consent; letting a key holder (an agent app, or whoever stole its key) switch it on
  would let it grant itself any scope for any principal. Turning it on is for whoever holds the
  ledger file (the library's ``developers.set_sandbox``, or ``developers create --sandbox``).
- ``fidoRequired`` / ``fidoRpName`` (all the SDK's ``update_settings`` can send): grantex-local
  has no WebAuthn, so ``fidoRequired: false`` is accepted (it is the truth) and anything that
  would promise a FIDO requirement is refused by name rather than stored and not enforced.

``POST /v1/signup`` is refused (403): it is unauthenticated, so on a server anyone who can
reach the port (another local user, a page in a browser) could mint developers and keys.
Developers and keys are made by whoever holds the ledger file, with the CLI.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Request, Security
from fastapi.responses import JSONResponse
from fastapi.security import HTTPAuthorizationCredentials
from pydantic import Field

from ... import errors
from ... import usage as usage_lib
from ...developers import Developer, rotate_api_key, update_developer
from ..auth import CallerDep, bearer
from ..errors import ApiError, SafeJSONResponse
from ..schemas import Body
from . import ok

router = APIRouter(tags=["account"])

PLAN = "local"
"""The plan every local developer is on (the hosted service's plans mean billing limits)."""
_SIGNUP_REFUSAL = (
    "signup is disabled on grantex-local: anyone who can reach this port could create keys. "
    "Create a developer with 'grantex-local developers create NAME' and a key with "
    "'grantex-local developers create-key --developer ID'")
_NO_STORE = {"Cache-Control": "no-store"}


class UpdateMe(Body):
    """``PATCH /v1/me``; at least one field."""

    name: str | None = Field(None, description="The developer's display name.")
    mode: str | None = Field(None, description="Only 'live' (turning sandbox off); see the module docs.")
    fidoRequired: bool | None = Field(None, description="Only false: grantex-local has no WebAuthn.")
    fidoRpName: str | None = Field(None, description="Refused: grantex-local has no WebAuthn.")


def _me(developer: Developer) -> dict[str, object]:
    return {"developerId": developer.id, "id": developer.id, "name": developer.name, "email": None,
            "mode": "sandbox" if developer.sandbox else "live", "sandbox": developer.sandbox,
            "plan": PLAN, "fidoRequired": False, "fidoRpName": None,
            "isDefault": developer.is_default, "createdAt": developer.created_at}


@router.get("/v1/usage", summary="Today's usage (UTC), counted from the audit trail")
def current_usage(caller: CallerDep) -> JSONResponse:
    """``{developerId, period, tokenExchanges, authorizations, verifications, totalRequests}``;
    what each counts is in :mod:`grantex_local.usage` (verifications are not recorded: 0)."""
    return ok(usage_lib.current(caller.ledger(), caller.developer_id).to_dict())


@router.get("/v1/usage/history", summary="Daily usage, newest first")
def usage_history(request: Request, caller: CallerDep, days: str | None = None) -> JSONResponse:
    """``days``: 1 to 90 (default 30; more is capped at 90, and ``days`` in the answer says so)."""
    unknown = sorted(set(request.query_params) - {"days"})
    if unknown:
        raise errors.InvalidInput(f"unknown query parameter {unknown[0]!r} (only 'days')")
    count: int | None = None
    if days is not None:
        text = days.strip()
        if not text.isascii() or not text.lstrip("-").isdigit() or len(text) > 9:
            raise errors.InvalidInput(f"days must be a whole number of days, not {days!r}")
        count = int(text)
    return ok(usage_lib.history(caller.ledger(), caller.developer_id, count).to_dict())


@router.get("/v1/me", summary="The calling developer")
def get_me(caller: CallerDep) -> JSONResponse:
    return ok(_me(caller.developer))


@router.patch("/v1/me", summary="Update the calling developer's settings")
def update_me(body: UpdateMe, caller: CallerDep) -> JSONResponse:
    """``{updated: true, changed: [...], developer}``; nothing is written unless every field is
    acceptable, and asking for what already holds changes (and records) nothing."""
    given = body.model_dump(exclude_none=True)
    if not given:
        raise errors.InvalidInput("give at least one of name, mode, fidoRequired")
    if body.fidoRpName is not None:
        raise ApiError(400, "UNSUPPORTED", "fidoRpName is not supported: grantex-local has no WebAuthn")
    if body.fidoRequired:
        raise ApiError(400, "UNSUPPORTED",
                       "fidoRequired: true is not supported: grantex-local has no WebAuthn to require")
    sandbox: bool | None = None
    if body.mode is not None:
        if body.mode not in ("live", "sandbox"):
            raise errors.InvalidInput(f"mode must be 'live' or 'sandbox', not {body.mode!r}")
        sandbox = body.mode == "sandbox"
        if sandbox and not caller.developer.sandbox:
            raise ApiError(403, "FORBIDDEN",
                           "turning sandbox mode on is refused over HTTP: it makes authorize approve "
                           "without consent; only whoever holds the ledger file may do it")
    developer, changes = update_developer(caller.ledger(), caller.developer_id, name=body.name,
                                          sandbox=sandbox)
    changed = sorted("mode" if k == "sandbox" else k for k in changes)
    return ok({"updated": True, "changed": changed, "developer": _me(developer)})


@router.post("/v1/keys/rotate", summary="Replace the API key this request used")
def rotate_key(
    caller: CallerDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Security(bearer)],
) -> JSONResponse:
    """``{apiKey, rotatedAt, keyId, prefix, developerId, revokedKeyId}``: the new key is shown
    this once; the key that made the request is revoked in the same transaction, so the very
    next request with it is 401. The SDK keeps using the old key: build a new client."""
    assert credentials is not None  # authenticated() refused a request without one
    try:
        rotated = rotate_api_key(caller.ledger(), secret=credentials.credentials.strip())
    except (errors.NotFound, errors.InvalidState):
        # revoked by another request between authentication and here
        raise ApiError(401, "UNAUTHORIZED", "unknown or revoked API key",
                       {"WWW-Authenticate": 'Bearer error="invalid_token"'}) from None
    return SafeJSONResponse(
        {"apiKey": rotated.new.key, "rotatedAt": rotated.new.created_at, "keyId": rotated.new.id,
         "prefix": rotated.new.prefix, "developerId": rotated.new.developer_id,
         "revokedKeyId": rotated.old.id}, headers=_NO_STORE)


@router.post("/v1/signup", summary="Refused: use the CLI (unauthenticated key minting)")
def signup() -> JSONResponse:
    raise ApiError(403, "SIGNUP_DISABLED", _SIGNUP_REFUSAL)
