"""``create_app``: the FastAPI application over one ledger file.

Order of the layers, outermost first: :class:`~.middleware.GrantexMiddleware`
(request id, body limit, rate-limit headers, last-resort 500), FastAPI's
exception handlers (library errors, validation errors, unknown routes, all as
``{message, code, requestId}``), then the routes. The ledger is opened once
here to fail early (a missing file is refused, as the CLI does) and to set the
issuer, then once per worker thread on demand.
"""

from __future__ import annotations

import logging
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException

from .. import __version__, errors
from ..ledger import Ledger
from . import consent
from .docs import install_docs
from .errors import ApiError, on_api_error, on_http_error, on_library_error, on_validation_error
from .middleware import GrantexMiddleware
from .routes import agents, audit, flow, grants, policies, public
from .state import LedgerPool, RateLimiter, ServerState

log = logging.getLogger("grantex_local.server")

DEFAULT_RATE_LIMIT = 600
"""Requests per API key per window; generous, since the server is local."""
DEFAULT_RATE_WINDOW = 60
"""Seconds; at most 60 so that ``Retry-After`` never asks for more than a minute."""
DEFAULT_MAX_BODY = 1024 * 1024
"""Bytes; the largest legitimate body (an audit entry's metadata) is 64 KiB."""

DESCRIPTION = """\
The Grantex REST API (PROTOCOL §13) served by grantex-local over one SQLite ledger.

Every `/v1/*` route except the consent routes needs `Authorization: Bearer <API key>`
(create one with `grantex-local developers create-key`). Errors are
`{"message", "code", "requestId"}`. Authenticated responses carry `x-ratelimit-limit`,
`x-ratelimit-remaining` and `x-ratelimit-reset`; a throttled request gets 429 with `Retry-After`.
"""


def create_app(
    ledger_path: str | os.PathLike[str],
    *,
    issuer: str | None = None,
    rate_limit: int = DEFAULT_RATE_LIMIT,
    rate_window: int = DEFAULT_RATE_WINDOW,
    max_body: int = DEFAULT_MAX_BODY,
    passphrase: str | None = None,
) -> FastAPI:
    """The ASGI app. ``issuer`` (when given) becomes the ledger's issuer setting: it goes into
    every token, and the SDK derives the ``iss`` it expects from the JWKS URL, so it must be the
    base URL clients use."""
    if max_body < 1:
        raise ValueError("max_body must be at least 1 byte")
    path = str(ledger_path)
    previous: str | None = None
    with Ledger(path, create=False, passphrase=passphrase) as ledger:
        if issuer is not None and ledger.issuer != issuer:
            previous = ledger.issuer
            ledger.set_setting("issuer", issuer)
            log.info("issuer changed from %s to %s: tokens issued under the old one no longer verify",
                     previous, issuer)
        effective_issuer = ledger.issuer
        ledger.signing_key()  # an encrypted key without its passphrase fails now, not per request
    state = ServerState(ledgers=LedgerPool(path, passphrase=passphrase),
                        limiter=RateLimiter(rate_limit, rate_window), issuer=effective_issuer,
                        max_body=max_body, issuer_changed_from=previous)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        yield
        state.ledgers.close_all()  # after uvicorn has let requests in flight finish

    app = FastAPI(title="grantex-local", version=__version__, description=DESCRIPTION,
                  docs_url=None, redoc_url=None, lifespan=lifespan)
    app.state.grantex = state
    app.add_exception_handler(ApiError, on_api_error)
    app.add_exception_handler(errors.GrantexLocalError, on_library_error)
    app.add_exception_handler(RequestValidationError, on_validation_error)
    app.add_exception_handler(StarletteHTTPException, on_http_error)
    for module in (public, agents, flow, grants, audit, policies, consent):
        app.include_router(module.router)
    install_docs(app)
    app.add_middleware(GrantexMiddleware, max_body=max_body)
    return app
