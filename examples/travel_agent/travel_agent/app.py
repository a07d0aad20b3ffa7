"""The booking service an AI travel agent calls with its Grantex grant token.

It uses only the official packages: ``grantex-fastapi`` checks the token offline (signature against
the issuer's JWKS, issuer, expiry on this machine's clock, the ``flights:book`` scope), and the
``grantex`` SDK asks the issuer whether the grant is still live and records every booking in the
audit trail. Point ``grantex_url`` at the hosted service or at ``grantex-local serve``; nothing
else changes.

Why an online check as well as the middleware: a signed token stays valid offline until it
expires, so only the issuer knows that a person revoked the grant a second ago, and the
issuer's clock (which tests move with ``grantex_clock``) is the one that says a grant is over.
"""

# No `from __future__ import annotations`: FastAPI reads the dependencies in the route signatures,
# and `Depends(auth.scopes(...))` names a local it could not resolve from a string.
import re
from typing import Annotated

from fastapi import Depends, FastAPI, Request
from fastapi.responses import JSONResponse
from grantex import Grantex, GrantexTokenError, VerifiedGrant
from grantex_fastapi import GrantexAuth, GrantexFastAPIError, grantex_exception_handler
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

BOOK_SCOPE = "flights:book"
PAY_SCOPE = "payments:initiate"
_LIMIT = re.compile(rf"{re.escape(PAY_SCOPE)}(?::max_([0-9]+))?")


class Booking(BaseModel):
    """A flight to book; the price in whole currency units, the unit ``max_N`` scopes count in."""

    flight: str = Field(min_length=1, max_length=20, pattern=r"^[A-Z0-9]+$")
    price: int = Field(gt=0, le=1_000_000)


def spending_limit(scopes: tuple[str, ...] | list[str]) -> int | None:
    """The most one booking may cost under these scopes: N of ``payments:initiate:max_N``,
    None for an unbounded ``payments:initiate``, 0 when the grant may not pay at all.
    Several bounds (a delegated grant keeps its own) mean the largest one granted."""
    limits: list[int | None] = []
    for scope in scopes:
        match = _LIMIT.fullmatch(scope)
        if match:
            limits.append(int(match.group(1)) if match.group(1) else None)
    if not limits:
        return 0
    if None in limits:
        return None
    return max(limit for limit in limits if limit is not None)


def _bearer(request: Request) -> str:
    """The token the middleware already accepted (it refuses a request without one first)."""
    return request.headers.get("authorization", "").split(" ", 1)[-1]


def create_app(grantex_url: str, api_key: str, *, client: Grantex | None = None) -> FastAPI:
    """The service for one Grantex issuer; ``api_key`` is the developer key its SDK calls use."""
    base = grantex_url.rstrip("/")
    sdk = client or Grantex(api_key=api_key, base_url=base)
    auth = GrantexAuth(jwks_uri=f"{base}/.well-known/jwks.json")
    app = FastAPI(title="Travel agent")
    app.add_exception_handler(GrantexFastAPIError, grantex_exception_handler)

    async def live_grant(
        request: Request, grant: Annotated[VerifiedGrant, Depends(auth.scopes(BOOK_SCOPE))]
    ) -> VerifiedGrant:
        """The middleware's grant, once the issuer confirms it is neither revoked nor expired."""
        try:
            await run_in_threadpool(sdk.grants.verify, _bearer(request))
        except GrantexTokenError as exc:
            code = "TOKEN_EXPIRED" if "expired" in str(exc) else "TOKEN_INVALID"
            raise GrantexFastAPIError(code, str(exc), 401) from exc
        return grant

    @app.post("/book", status_code=201)
    async def book(booking: Booking, grant: Annotated[VerifiedGrant, Depends(live_grant)]) -> JSONResponse:
        """Book within the grant's spending limit; the outcome is in the audit trail either way."""
        limit = spending_limit(grant.scopes)
        allowed = limit is None or booking.price <= limit
        entry = await run_in_threadpool(
            lambda: sdk.audit.log(
                # A Grantex agent DID is did:grantex:<agent id>.
                agent_id=grant.agent_did.rsplit(":", 1)[-1],
                agent_did=grant.agent_did,
                grant_id=grant.grant_id,
                principal_id=grant.principal_id,
                action="flight.booked",
                metadata={"flight": booking.flight, "price": booking.price, "limit": limit},
                status="success" if allowed else "blocked",
            )
        )
        if not allowed:
            return JSONResponse(
                status_code=403,
                content={"error": "LIMIT_EXCEEDED",
                         "message": f"price {booking.price} exceeds this grant's limit of {limit}"},
            )
        return JSONResponse(status_code=201, content={"flight": booking.flight, "price": booking.price,
                                                      "grantId": grant.grant_id, "auditId": entry.entry_id})

    return app
