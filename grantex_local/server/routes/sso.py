"""SSO (SDK-SURFACE §7): ``/v1/sso/*`` with the developer API key, and the public ``/sso/login``
and ``/sso/callback*``. What is stored, derived or refused is described in :mod:`grantex_local.sso`;
no route here opens a network connection.

Bodies are taken as plain JSON objects and checked field by field by the library, so that a
missing per-protocol field gets a 400 naming it (a pydantic model could not know which
protocol's fields are required).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi import Body as JsonBody
from fastapi.responses import JSONResponse, RedirectResponse, Response

from ... import sso
from ...founding import Ledger
from ..auth import CallerDep, server_state
from ..errors import error_response, request_id_of
from . import created, no_content, ok

router = APIRouter(tags=["sso"])

JsonObject = Annotated[dict[str, Any], JsonBody()]
OptionalJson = Annotated[dict[str, Any] | None, JsonBody()]


@router.post("/v1/sso/connections", status_code=201, summary="Create an SSO connection (oidc, saml, ldap)")
def create_connection(body: JsonObject, caller: CallerDep) -> JSONResponse:
    return created(sso.create_connection(caller.ledger(), caller.developer_id, body).to_dict())


@router.get("/v1/sso/connections", summary="List SSO connections, oldest first (never their secrets)")
def list_connections(caller: CallerDep) -> JSONResponse:
    found = sso.list_connections(caller.ledger(), caller.developer_id)
    return ok({"connections": [c.to_dict() for c in found]})


@router.get("/v1/sso/connections/{connection_id}", summary="Get an SSO connection")
def get_connection(connection_id: str, caller: CallerDep) -> JSONResponse:
    return ok(sso.get_connection(caller.ledger(), caller.developer_id, connection_id).to_dict())


@router.patch("/v1/sso/connections/{connection_id}", summary="Update an SSO connection (empty body: 400)")
def update_connection(connection_id: str, body: JsonObject, caller: CallerDep) -> JSONResponse:
    return ok(sso.update_connection(caller.ledger(), caller.developer_id, connection_id, body).to_dict())


@router.delete("/v1/sso/connections/{connection_id}", status_code=204, summary="Delete an SSO connection")
def delete_connection(connection_id: str, caller: CallerDep) -> Response:
    sso.delete_connection(caller.ledger(), caller.developer_id, connection_id)
    return no_content()


@router.post("/v1/sso/connections/{connection_id}/test",
             summary="Check a connection's settings without contacting the identity provider")
def test_connection(connection_id: str, request: Request, caller: CallerDep,
                    body: OptionalJson = None) -> JSONResponse:
    try:
        return ok(sso.test_connection(caller.ledger(), caller.developer_id, connection_id))
    except sso.ConnectionTestFailed as exc:
        # The reference's 422 {success: false, protocol, error}, plus the app's message and
        # code so that the SDK (which raises on 422) shows why.
        return ok({"success": False, "protocol": exc.protocol, "error": exc.message,
                   "message": exc.message, "code": exc.code,
                   "requestId": request_id_of(request.scope)}, 422)


@router.post("/v1/sso/enforce", summary="Set org-wide SSO enforcement (stored; enforced nowhere locally)")
def set_enforcement(body: JsonObject, caller: CallerDep) -> JSONResponse:
    return ok(sso.set_enforcement(caller.ledger(), caller.developer_id, body.get("enforce")))


@router.get("/v1/sso/sessions", summary="Unexpired, unrevoked SSO sessions")
def list_sessions(caller: CallerDep) -> JSONResponse:
    return ok({"sessions": sso.list_sessions(caller.ledger(), caller.developer_id)})


@router.delete("/v1/sso/sessions/{session_id}", status_code=204, summary="Revoke an SSO session")
def revoke_session(session_id: str, caller: CallerDep) -> Response:
    sso.revoke_session(caller.ledger(), caller.developer_id, session_id)
    return no_content()


@router.post("/v1/sso/config", status_code=201, summary="Save the legacy OIDC config (an upsert)")
def save_config(body: JsonObject, caller: CallerDep) -> JSONResponse:
    return created(sso.save_config(caller.ledger(), caller.developer_id, body))


@router.get("/v1/sso/config", summary="The legacy OIDC config (404 when none)")
def get_config(caller: CallerDep) -> JSONResponse:
    return ok(sso.get_config(caller.ledger(), caller.developer_id))


@router.delete("/v1/sso/config", status_code=204, summary="Delete the legacy OIDC config")
def delete_config(caller: CallerDep) -> Response:
    sso.delete_config(caller.ledger(), caller.developer_id)
    return no_content()


def _wants_html(request: Request) -> bool:
    """A browser (``Accept: text/html`` and no JSON) gets a redirect; the SDK sends JSON."""
    accept = request.headers.get("accept", "").lower()
    return "text/html" in accept and "application/json" not in accept


@router.get("/sso/login", summary="Where to sign in: JSON {authorizeUrl} or, for a browser, a 302")
def login(
    request: Request,
    org: str | None = Query(None, max_length=200),
    domain: str | None = Query(None, max_length=253),
    redirect_uri: str | None = Query(None, max_length=2048),
) -> Response:
    state = server_state(request)
    result = sso.login(state.ledgers.get(), org, domain=domain, redirect_uri=redirect_uri,
                       default_redirect=state.issuer.rstrip("/") + "/sso/callback/oidc")
    if result.get("authorizeUrl") and _wants_html(request):
        return RedirectResponse(result["authorizeUrl"], status_code=302)
    return ok(result)


def _callback(request: Request, check: Callable[[Ledger], object]) -> JSONResponse:
    """Run a callback's input checks (their 400s propagate); what passes them ends in 501, not
    502: the SDK retries 502-504, and nothing here will change on a retry."""
    try:
        check(server_state(request).ledgers.get())
    except sso.NotAvailableLocally as exc:
        return error_response(request, exc.status, exc.code, exc.message)
    raise AssertionError("unreachable: every callback ends in NotAvailableLocally")  # pragma: no cover


@router.post("/sso/callback/oidc", summary="OIDC callback: checks code and state, then 501 (no IdP calls)")
def oidc_callback(body: JsonObject, request: Request) -> JSONResponse:
    return _callback(request, lambda ledger: sso.oidc_callback(ledger, body))


@router.post("/sso/callback/saml", summary="SAML callback: checks RelayState, then 501 (no IdP calls)")
def saml_callback(body: JsonObject, request: Request) -> JSONResponse:
    return _callback(request, lambda ledger: sso.saml_callback(ledger, body))


@router.post("/sso/callback/ldap", summary="LDAP callback: checks the connection, then 501 (no bind)")
def ldap_callback(body: JsonObject, request: Request) -> JSONResponse:
    return _callback(request, lambda ledger: sso.ldap_callback(ledger, body))


@router.get("/sso/callback", summary="Legacy OIDC callback: checks code and state, then 501")
def legacy_callback(
    request: Request,
    code: str | None = Query(None, max_length=4096),
    state: str | None = Query(None, max_length=512),
) -> JSONResponse:
    return _callback(request, lambda ledger: sso.legacy_callback(ledger, code, state))
