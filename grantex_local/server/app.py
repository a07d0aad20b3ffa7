"""``create_app``: the FastAPI application over one ledger file.

Order of the layers, outermost first: :class:`~.middleware.GrantexMiddleware`
(request id, body limit, rate-limit headers, last-resort 500), FastAPI's
exception handlers (library errors, validation errors, unknown routes, all as
``{message, code, requestId}``), then the routes. The ledger is opened once
here to fail early (a missing file is refused, as the CLI does) and to read the
issuer, then once per worker thread on demand.

The issuer is the ledger's, never the address the server happens to listen on:
changing it must be asked for (``change_issuer=True``; the CLI's ``serve --issuer``
confirms first), since clients and the tokens already issued depend on it.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sqlite3
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException

from .. import __version__, errors
from ..clock import Clock
from ..founding import Ledger
from ..ledger import validate_issuer
from ..webhooks import DEFAULT_BASE_DELAY, DeliveryWorker
from . import consent, decision_page, permissions
from .docs import install_docs
from .errors import ApiError, on_api_error, on_http_error, on_library_error, on_validation_error
from .middleware import GrantexMiddleware, allowed_host_names, issuer_host
from .routes import (
    account,
    agents,
    anomalies,
    audit,
    budgets,
    bundles,
    compliance,
    decisions,
    flow,
    grants,
    policies,
    principal,
    public,
    revocations,
    scim,
    sso,
    vault,
)
from .routes import events as event_routes
from .routes import webhooks as webhook_routes
from .state import CSRF_KEY_NAME, LedgerPool, RateLimiter, ServerState, ledger_secret

log = logging.getLogger("grantex_local.server")

DEFAULT_RATE_LIMIT = 600
"""Requests per API key per window; generous, since the server is local."""
DEFAULT_RATE_WINDOW = 60
"""Seconds; at most 60 so that ``Retry-After`` never asks for more than a minute."""
DEFAULT_MAX_BODY = 1024 * 1024
"""Bytes; the largest legitimate body (an audit entry's metadata) is 64 KiB."""

DESCRIPTION = """\
The Grantex REST API (docs/protocol.md §9 in the grantex-local repository) served over one SQLite ledger.

Every `/v1/*` route except the consent routes needs `Authorization: Bearer <API key>`
(create one with `grantex-local developers create-key`). Errors are
`{"message", "code", "requestId"}`. Authenticated responses carry `x-ratelimit-limit`,
`x-ratelimit-remaining` and `x-ratelimit-reset`; a throttled request gets 429 with `Retry-After`.
"""


def create_app(
    ledger_path: str | os.PathLike[str],
    *,
    issuer: str | None = None,
    change_issuer: bool = False,
    allowed_hosts: Iterable[str] = (),
    rate_limit: int = DEFAULT_RATE_LIMIT,
    rate_window: int = DEFAULT_RATE_WINDOW,
    max_body: int = DEFAULT_MAX_BODY,
    passphrase: str | None = None,
    open_consent: bool = False,
    webhook_delivery: bool = True,
    webhook_retry_base: float = DEFAULT_BASE_DELAY,
    clock: Clock | None = None,
    test_mode: bool = False,
    vault_insecure_store: bool = False,
) -> FastAPI:
    """The ASGI app over the ledger's issuer (it goes into every token, and the SDK derives the
    ``iss`` it expects from the JWKS URL, so it is the base URL clients must use).

    ``issuer``: the issuer the caller expects. When it differs from the ledger's, the app is
    refused (:class:`~grantex_local.errors.InvalidInput`) unless ``change_issuer=True``, which
    makes it the ledger's issuer; tokens issued under the old one keep verifying until they
    expire. ``allowed_hosts``: names (or addresses) requests may carry in ``Host`` besides the
    loopback names and the issuer's host, e.g. this machine's LAN name (see the middleware).
    ``open_consent``: demo mode, the consent page decides without an approval code or principal
    session (see :mod:`.consent`). ``webhook_delivery``: run the webhook worker while serving
    (a background thread on its own connection); ``webhook_retry_base``: seconds before the
    first retry of a failed delivery, doubling after each. ``clock``: the time every ledger
    connection of the app reads (a test's movable clock, so codes, grants and tokens expire
    on demand; the default is the system's). ``test_mode``: keep a copy of the ledger as it is
    now and serve ``POST /v1/testing/reset`` to restore it (the pytest plugin's session
    server); never registered otherwise, since it erases the ledger.
    ``vault_insecure_store``: the vault may store secrets though the ledger has no passphrase
    (under a random key in the file; every answer about them says they are unprotected).
    """
    if max_body < 1:
        raise ValueError("max_body must be at least 1 byte")
    hosts = allowed_host_names(allowed_hosts)
    if issuer is not None:
        issuer = validate_issuer(issuer)
    path = str(ledger_path)
    previous: str | None = None
    with Ledger(path, create=False, passphrase=passphrase, clock=clock) as ledger:
        if issuer is not None and ledger.issuer != issuer:
            if not change_issuer:
                raise errors.InvalidInput(
                    f"the ledger's issuer is {ledger.issuer}, not {issuer}; it changes only when "
                    "asked: create_app(..., change_issuer=True), 'grantex-local serve --issuer URL' "
                    "or 'grantex-local config set issuer URL'")
            previous = ledger.issuer
            ledger.set_setting("issuer", issuer)
            log.info("issuer changed from %s to %s; tokens issued under %s keep verifying until "
                     "they expire", previous, issuer, previous)
        effective_issuer = ledger.issuer
        ledger.signing_key()  # an encrypted key without its passphrase fails now, not per request
        csrf_secret = ledger_secret(ledger, CSRF_KEY_NAME)  # every worker's forms check alike
        baseline = _snapshot(ledger.conn) if test_mode else None
    state = ServerState(ledgers=LedgerPool(path, passphrase=passphrase, clock=clock),
                        limiter=RateLimiter(rate_limit, rate_window), issuer=effective_issuer,
                        max_body=max_body, issuer_changed_from=previous, csrf_secret=csrf_secret)
    state.open_consent = open_consent  # demo mode: consent decided without proof (see consent.py)
    state.baseline = baseline

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        worker = (DeliveryWorker(path, passphrase=passphrase, base_delay=webhook_retry_base)
                  if webhook_delivery else None)
        if worker is not None:
            worker.start()
        try:
            yield
        finally:
            state.stopping.set()
            if worker is not None:
                await asyncio.to_thread(worker.stop)  # the attempt in flight is recorded first
        state.ledgers.close_all()  # after uvicorn has let requests in flight finish

    app = FastAPI(title="grantex-local", version=__version__, description=DESCRIPTION,
                  docs_url=None, redoc_url=None, lifespan=lifespan)
    app.state.grantex = state
    app.state.vault_insecure_store = vault_insecure_store
    app.add_exception_handler(ApiError, on_api_error)
    app.add_exception_handler(errors.GrantexLocalError, on_library_error)
    app.add_exception_handler(RequestValidationError, on_validation_error)
    app.add_exception_handler(StarletteHTTPException, on_http_error)
    for module in (bundles, public, agents, flow, grants, revocations, audit, policies, principal, consent,
                   permissions, account, webhook_routes, event_routes, anomalies, compliance, scim, sso,
                   budgets, decisions, decision_page, vault):
        app.include_router(module.router)
    if test_mode:
        from .routes import testing as testing_routes  # the reset route exists only in test mode

        app.include_router(testing_routes.router)
    install_docs(app)
    app.add_middleware(GrantexMiddleware, max_body=max_body,
                       allowed_hosts=hosts | {issuer_host(effective_issuer)})
    return app


def _snapshot(conn: sqlite3.Connection) -> sqlite3.Connection:
    """An in-memory copy of the open ledger, what a test-mode reset writes back."""
    copy = sqlite3.connect(":memory:", check_same_thread=False)
    conn.backup(copy)
    return copy
