"""The consent page a ``consentUrl`` points at (SPEC §14, PROTOCOL §12).

A person sees the agent (name, description), the developer, every requested
scope by its description (never the raw string), how long access lasts, and
Deny next to Approve. The decision is a plain HTML form, so it works with a
keyboard, a screen reader and without JavaScript.

CSRF: the form carries a token that is an HMAC, under a secret made when the
process starts, of a random per-browser cookie (``HttpOnly``, ``SameSite=Strict``)
and the request id: a signed double-submit cookie. A cross-site page can neither
read the token nor send the cookie, and a foreign ``Origin`` is refused too.
(A page served by one process and posted to another process of the same ledger
fails that check: the secret is per process. Reload the page to decide.)

Who may decide: the page is public and the agent that asked can read it, so a POST
decides (approve or deny) only with proof (see :mod:`grantex_local.approval`): the
request's approval code, which only the local human sees (``serve`` prints it, ``consent
show`` and the TUI show it), or a principal session for the request's principal minted by
the ledger's owner. Without proof: 403 ``APPROVAL_REQUIRED`` and nothing decided. A small
same-origin script (``/consent/assets/consent.js``) fills the code from ``#approval=`` and
the session from ``#session=``: fragments never reach the server, so neither lands in an
access log; without JavaScript the person types the code. ``create_app(open_consent=True)``
(``serve --open-consent``) keeps the old anyone-may-decide page for demos, and says so.

After the decision the browser goes to the agent's redirect URI with ``code`` and
``state`` (or ``error=access_denied``), or, with no redirect URI, the page shows
the code. Errors on these routes are an HTML page for a browser (``Accept:
text/html``) and the usual JSON otherwise.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import re
import secrets
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, parse_qsl, urlencode, urlsplit, urlunsplit

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from jinja2 import Environment, FileSystemLoader, select_autoescape

from .. import agents, approval, authorization, errors
from ..clock import parse_iso
from ..founding import Ledger
from ..models import AuthorizationRequest, ConsentDecision
from ..text import escape
from .auth import server_state
from .errors import error_body, request_id_of
from .state import ServerState

log = logging.getLogger("grantex_local.server")

router = APIRouter(include_in_schema=False)

HERE = Path(__file__).parent
COOKIE = "gxl_consent"
_SESSION = re.compile(r"[A-Za-z0-9_-]{43}")
_EXPIRES = re.compile(r"(\d+)([smhd])")
_UNITS = {"s": "second", "m": "minute", "h": "hour", "d": "day"}
_CSS = (HERE / "static" / "consent.css").read_bytes()
_JS = (HERE / "static" / "consent.js").read_bytes()
OPEN_DECIDER = "anyone with the consent URL (open consent)"
_templates = Environment(loader=FileSystemLoader(HERE / "templates"),
                         autoescape=select_autoescape(default=True, default_for_string=True))
# Names stored before the text checks existed may hold bidi or invisible characters: shown
# escaped, so one agent cannot pass for another (HTML escaping does not neutralise them).
_templates.filters["shown"] = escape


def csrf_token(secret: bytes, session: str, request_id: str) -> str:
    return hmac.new(secret, f"consent|{session}|{request_id}".encode(), hashlib.sha256).hexdigest()


def humanize_duration(expires_in: str) -> str:
    """``24h`` → ``24 hours``: what the grant lifetime means to a person."""
    m = _EXPIRES.fullmatch(expires_in or "")
    if not m:
        return expires_in
    n, unit = int(m.group(1)), _UNITS[m.group(2)]
    return f"{n} {unit}{'' if n == 1 else 's'}"


def readable_time(stamp: str) -> str:
    try:
        return datetime.fromtimestamp(parse_iso(stamp), UTC).strftime("%Y-%m-%d %H:%M UTC")
    except ValueError:
        return stamp


def _security_headers(form_targets: str = "") -> dict[str, str]:
    """No framing (clickjacking a consent button is the classic attack), no caching of codes,
    nothing loaded from anywhere but this origin. ``form-action`` must allow the redirect URI's
    origin: browsers apply it to the redirect that follows the form's POST."""
    csp = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; base-uri 'none'; "
           f"frame-ancestors 'none'; form-action 'self'{form_targets}")
    # same-origin, not no-referrer: under no-referrer browsers send "Origin: null" with the form.
    return {"Content-Security-Policy": csp, "X-Frame-Options": "DENY", "Referrer-Policy": "same-origin",
            "Cache-Control": "no-store"}


def _origin(url: str | None) -> str | None:
    if not url:
        return None
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}" if parts.scheme and parts.netloc else None


def wants_html(request: Request) -> bool:
    return "text/html" in request.headers.get("accept", "")


def render_page(request: Request, template: str, status: int = 200, *, form_targets: str = "",
                **context: Any) -> HTMLResponse:
    html = _templates.get_template(template).render(issuer=server_state(request).issuer, **context)
    return HTMLResponse(html, status_code=status, headers=_security_headers(form_targets))


def error_page(request: Request, status: int, code: str, message: str) -> Response:
    if not wants_html(request):
        return JSONResponse(error_body(status, code, message, request_id_of(request.scope)),
                            status_code=status, headers={"Cache-Control": "no-store"})
    heading = {403: "This form cannot be accepted", 404: "No such request",
               409: "Already decided"}.get(status, "Something went wrong")
    return render_page(request, "result.html", status, kind="error", eyebrow="Authorization request",
                       heading=heading, lines=[message], request_id_text=request_id_of(request.scope))


@router.get("/consent/assets/consent.css")
def stylesheet() -> Response:
    return Response(_CSS, media_type="text/css", headers={"Cache-Control": "public, max-age=3600"})


@router.get("/consent/assets/consent.js")
def script() -> Response:
    return Response(_JS, media_type="text/javascript", headers={"Cache-Control": "public, max-age=3600"})


def announce_waiting(state: ServerState, ledger: Ledger, request: AuthorizationRequest) -> None:
    """Tell the person at ``serve``'s console that a request waits for them, with the link that
    carries its approval code. A console that fails must not fail the agent's authorize: the
    request exists either way, and ``grantex-local consent show`` shows the code too."""
    if state.console is None or request.status != "pending":
        return
    try:
        agent = agents.get(ledger, None, request.agent_id, include_deleted=True)
        code = approval.approval_code(ledger, request.request_id)
        count = len(request.scopes)
        asks = f"asks for {count} scope{'' if count == 1 else 's'}"
        state.console(f"consent  {escape(request.principal_id)}: {escape(agent.name)} {asks} "
                      f"\u2014 open {request.consent_url}#approval={code}")
    except Exception:
        log.warning("could not show authorization request %s on the console", request.request_id,
                    exc_info=True)


@router.get("/consent/{request_id}", response_model=None)
def consent_page(request_id: str, request: Request) -> Response:
    state = server_state(request)
    try:
        details = authorization.consent_details(state.ledgers.get(), request_id)
    except (errors.NotFound, errors.InvalidInput):
        return error_page(request, 404, "NOT_FOUND", "There is no authorization request with this address.")
    auth_request = details["request"]
    status = auth_request["status"]
    if status != "pending":
        return error_page(request, 409, "INVALID_STATE", f"This request is {status}: there is nothing left "
                          "to decide. Ask the agent to start a new one if you still want to give access.")
    return _consent_form(request, request_id, details)


def _consent_form(request: Request, request_id: str, details: dict[str, Any], *, status: int = 200,
                  problem: str | None = None) -> Response:
    """The page with its form; shown again (403, with ``problem``) when a decision lacked proof,
    so the person can type the code without starting over."""
    state = server_state(request)
    auth_request = details["request"]
    session = request.cookies.get(COOKIE, "")
    if not _SESSION.fullmatch(session):
        session = secrets.token_urlsafe(32)
    redirect_origin = _origin(auth_request.get("redirectUri"))
    agent = details["agent"]
    response = render_page(
        request, "consent.html", status, form_targets=f" {redirect_origin}" if redirect_origin else "",
        request_id=request_id, agent=agent, developer=details["developer"],
        principal=auth_request["principalId"], scopes=details["scopes"],
        grant_expiry=humanize_duration(details["grantExpiresIn"]),
        request_expires_at=details["requestExpiresAt"],
        request_expires_text=readable_time(details["requestExpiresAt"]),
        redirect_host=urlsplit(redirect_origin).netloc if redirect_origin else None,
        agent_inactive=agent["status"] != "active", open_consent=state.open_consent, problem=problem,
        csrf_token=csrf_token(state.csrf_secret, session, request_id))
    response.set_cookie(COOKIE, session, httponly=True, samesite="strict", path="/consent",
                        secure=request.url.scheme == "https")
    return response


def _with_query(uri: str, extra: dict[str, str]) -> str:
    parts = urlsplit(uri)
    query = parse_qsl(parts.query, keep_blank_values=True) + list(extra.items())
    return urlunsplit((parts.scheme, parts.netloc, parts.path, urlencode(query), ""))


@router.post("/consent/{request_id}", response_model=None)
async def consent_decision(request_id: str, request: Request) -> Response:
    state = server_state(request)
    origin = request.headers.get("origin")
    own = f"{request.url.scheme}://{request.headers.get('host', '')}"
    if origin is not None and origin != own:
        return error_page(request, 403, "CSRF_FAILED",
                          "This decision was sent from another site and was refused.")
    if request.headers.get("content-type", "").split(";")[0].strip() != "application/x-www-form-urlencoded":
        return error_page(request, 403, "CSRF_FAILED", "This decision did not come from the consent form.")
    try:
        form = parse_qs((await request.body()).decode("utf-8"), keep_blank_values=True)
    except UnicodeDecodeError:
        form = {}
    token = (form.get("csrf_token") or [""])[0]
    decision = (form.get("decision") or [""])[0]
    code_text = (form.get("approval_code") or [""])[0].strip()
    session_token = (form.get("session_token") or [""])[0].strip()
    session = request.cookies.get(COOKIE, "")
    if (not _SESSION.fullmatch(session) or not token
            or not hmac.compare_digest(token, csrf_token(state.csrf_secret, session, request_id))):
        return error_page(request, 403, "CSRF_FAILED",
                          "This form has expired or did not come from the consent page. "
                          "Open the request's address again and decide there.")
    if decision not in ("approve", "deny"):
        return error_page(request, 400, "BAD_REQUEST", "Choose Approve or Deny.")

    def decide() -> ConsentDecision:
        ledger = state.ledgers.get()
        pending = authorization.get_request(ledger, request_id)
        if pending.status != "pending":
            raise errors.InvalidState(f"authorization request {request_id} is {pending.status}, not pending")
        if state.open_consent and not code_text and not session_token:
            decided_by, channel = OPEN_DECIDER, "consent-page/open"
        else:  # proof that was sent is checked even in open mode: what was sent must hold
            proof = approval.prove_decision(
                ledger, request_id=request_id, principal_id=pending.principal_id,
                developer_id=pending.developer_id, approval_code=code_text or None,
                session_token=session_token or None)
            decided_by, channel = proof.decided_by, f"consent-page/{proof.channel}"
        if decision == "approve":
            return authorization.approve(ledger, request_id, decided_by=decided_by, channel=channel)
        return authorization.deny(ledger, request_id, decided_by=decided_by, channel=channel)

    try:
        result = await run_in_threadpool(decide)
    except errors.NotFound:
        return error_page(request, 404, "NOT_FOUND", "There is no authorization request with this address.")
    except errors.InvalidState as exc:
        return error_page(request, 409, exc.code, f"{exc.message}. Nothing was changed.")
    except errors.ApprovalRequired as exc:
        if not wants_html(request):
            return error_page(request, 403, exc.code, exc.message)

        def details() -> dict[str, Any]:
            return authorization.consent_details(state.ledgers.get(), request_id)

        return _consent_form(request, request_id, await run_in_threadpool(details), status=403,
                             problem=f"Nothing was decided. {exc.message}")
    except errors.GrantexLocalError as exc:
        if exc.status >= 500:
            raise
        return error_page(request, exc.status, exc.code, exc.message)

    if result.redirect_uri:
        params = {"code": result.code} if result.code else {"error": "access_denied"}
        if result.state is not None:
            params["state"] = result.state
        return RedirectResponse(_with_query(result.redirect_uri, params), status_code=303,
                                headers={"Cache-Control": "no-store", "Referrer-Policy": "no-referrer"})
    if result.code:
        return render_page(request, "result.html", kind="approved", eyebrow="Approved",
                           heading="Access approved",
                           lines=["Give this code to the agent; it exchanges it for a grant token."],
                           code=result.code, state=result.state)
    return render_page(request, "result.html", kind="denied", eyebrow="Denied", heading="Access denied",
                       lines=["The agent gets no access. You can close this page."])
