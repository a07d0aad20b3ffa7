"""Bearer API keys (PROTOCOL §13): who is calling, and whether they may call again now.

Each request resolves its key to a developer with
:func:`~grantex_local.developers.developer_for_api_key` (a hashed-key lookup, so a
key revoked by another process stops working at once) and then acts only as
that developer. A missing or unknown key is 401; a key over its limit is 429
with ``Retry-After``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request, Security
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from .. import errors
from ..client import Grantex
from ..developers import Developer, developer_for_api_key, hash_secret
from ..founding import Ledger
from .errors import ApiError
from .middleware import RATE_KEY
from .state import ServerState

CHALLENGE = {"WWW-Authenticate": 'Bearer realm="grantex-local"'}
bearer = HTTPBearer(auto_error=False, description="An API key from 'grantex-local developers create-key'.")


def server_state(request: Request) -> ServerState:
    state: ServerState = request.app.state.grantex
    return state


@dataclass(frozen=True)
class Caller:
    """The developer behind the request's API key.

    It holds no ledger: FastAPI may run a dependency and the route in different
    threads, and each must use its own thread's connection.
    """

    developer: Developer
    state: ServerState

    @property
    def developer_id(self) -> str:
        return self.developer.id

    def ledger(self) -> Ledger:
        return self.state.ledgers.get()

    def gx(self) -> Grantex:
        """The library facade acting as this developer, on this thread's ledger."""
        return Grantex(self.ledger(), developer_id=self.developer.id)


def authenticated(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Security(bearer)],
) -> Caller:
    state = server_state(request)
    if credentials is None or not credentials.credentials:
        raise ApiError(401, "UNAUTHORIZED",
                       "missing API key: send 'Authorization: Bearer <key>' "
                       "(create one with 'grantex-local developers create-key')", CHALLENGE)
    secret = credentials.credentials.strip()
    try:
        developer = developer_for_api_key(state.ledgers.get(), secret)
    except errors.NotFound:
        raise ApiError(401, "UNAUTHORIZED", "unknown or revoked API key",
                       {"WWW-Authenticate": 'Bearer error="invalid_token"'}) from None
    decision = state.limiter.hit(hash_secret(secret))
    request.scope[RATE_KEY] = decision
    if not decision.allowed:
        wait = max(1, min(decision.reset, 60))
        raise ApiError(429, "RATE_LIMITED",
                       f"rate limit of {decision.limit} requests per {state.limiter.window} s "
                       f"reached; retry in {wait} s", {"Retry-After": str(wait)})
    return Caller(developer, state)


CallerDep = Annotated[Caller, Depends(authenticated)]
