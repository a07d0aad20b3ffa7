"""The approval page an ``approvalPage`` points at: a person approves one decision request.

It follows the consent page (:mod:`.consent`) in everything that matters for safety:

- The page is public and the agent that asked can open it, so an approval counts only with
  proof the agent cannot have: the request's approval code (HMAC of its id under the ledger's
  ``local_secrets`` key, :mod:`grantex_local.approval`; ``serve`` prints it, ``decisions show``
  and the TUI show it), or a principal session minted by the ledger's owner (``via: local``) of
  the request's developer. Without proof: 403 ``APPROVAL_REQUIRED``, nothing approved.
- CSRF: a signed double-submit cookie (HttpOnly, SameSite=Strict) and a foreign ``Origin`` is
  refused; strict CSP, no framing, no caching.
- The approver's dwell time is measured by the server: the form carries the moment the page
  was served (by the ledger's clock), signed into the CSRF token so it cannot be edited, and
  the approval is timed from it. Reusing an old form only shows the true, longer time.

The same ``consent.js`` fills ``#approval=CODE`` and ``#session=TOKEN`` from the fragment.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import re
import secrets
from urllib.parse import parse_qs

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import Response

from .. import approval, decisions, errors
from ..founding import Ledger
from ..principals import verify_session
from ..text import escape
from .auth import server_state
from .consent import HERE, error_page, readable_time, render_page, wants_html
from .state import ServerState

log = logging.getLogger("grantex_local.server")

router = APIRouter(include_in_schema=False)

COOKIE = "gxl_decision"
_SESSION = re.compile(r"[A-Za-z0-9_-]{43}")
_CSS = (HERE / "static" / "decision.css").read_bytes()


def csrf_token(secret: bytes, session: str, request_id: str, served_at: str) -> str:
    text = f"decision|{session}|{request_id}|{served_at}"
    return hmac.new(secret, text.encode(), hashlib.sha256).hexdigest()


@router.get("/decisions/assets/decision.css")
def stylesheet() -> Response:
    return Response(_CSS, media_type="text/css", headers={"Cache-Control": "public, max-age=3600"})


def announce_waiting(state: ServerState, ledger: Ledger, request: decisions.DecisionRequest) -> None:
    """Tell the person at ``serve``'s console that a decision waits, with the link carrying its
    approval code; a failing console must not fail the request (``decisions show`` has the code)."""
    if state.console is None:
        return
    try:
        code = approval.approval_code(ledger, request.id)
        what = f"{escape(request.action['action'])} {escape(request.action['decision'])}"
        state.console(f"decision {what} on case {escape(request.case_id)} "
                      f"\u2014 open {request.approval_page}#approval={code}")
    except Exception:
        log.warning("could not show decision request %s on the console", request.id, exc_info=True)


def _form(request: Request, found: decisions.DecisionRequest, *, status: int = 200,
          problem: str | None = None) -> Response:
    state = server_state(request)
    session = request.cookies.get(COOKIE, "")
    if not _SESSION.fullmatch(session):
        session = secrets.token_urlsafe(32)
    served_at = repr(float(state.ledgers.get().now()))
    action = found.action
    amount = action.get("amount")
    response = render_page(
        request, "decision.html", status, request_id=found.id, action=action,
        amount=None if amount is None else str(amount),
        extra=[(k, str(v)) for k, v in sorted(action.get("extra", {}).items())],
        connector=found.connector, case_version=found.case_version, memo=found.memo,
        policy_score=json.dumps(found.policy_score, indent=2, ensure_ascii=False, sort_keys=True),
        approvals=found.approvals, four_eyes=found.approvals_required == 2, expires_at=found.expires_at,
        expires_text=readable_time(found.expires_at), problem=problem, served_at=served_at,
        csrf_token=csrf_token(state.csrf_secret, session, found.id, served_at))
    response.set_cookie(COOKIE, session, httponly=True, samesite="strict", path="/decisions",
                        secure=request.url.scheme == "https")
    return response


def _pending(ledger: Ledger, request_id: str) -> decisions.DecisionRequest:
    found = decisions.get_request(ledger, None, request_id)
    if found.status != "pending":
        raise errors.InvalidState(f"This decision request is {found.status}: nothing is left to approve")
    return found


@router.get("/decisions/{request_id}", response_model=None)
def decision_page(request_id: str, request: Request) -> Response:
    try:
        found = _pending(server_state(request).ledgers.get(), request_id)
    except errors.NotFound:
        return error_page(request, 404, "NOT_FOUND", "There is no decision request with this address.")
    except errors.InvalidState as exc:
        return error_page(request, 409, exc.code, exc.message + ".")
    return _form(request, found)


@router.post("/decisions/{request_id}", response_model=None)
async def decision_post(request_id: str, request: Request) -> Response:
    state = server_state(request)
    origin = request.headers.get("origin")
    own = f"{request.url.scheme}://{request.headers.get('host', '')}"
    if origin is not None and origin != own:
        return error_page(request, 403, "CSRF_FAILED", "This approval was sent from another site: refused.")
    if request.headers.get("content-type", "").split(";")[0].strip() != "application/x-www-form-urlencoded":
        return error_page(request, 403, "CSRF_FAILED", "This approval did not come from the decision page.")
    try:
        form = parse_qs((await request.body()).decode("utf-8"), keep_blank_values=True)
    except UnicodeDecodeError:
        form = {}

    def field(name: str) -> str:
        return (form.get(name) or [""])[0].strip()

    token, served_at = field("csrf_token"), field("served_at")
    session = request.cookies.get(COOKIE, "")
    if (not _SESSION.fullmatch(session) or not token or not served_at
            or not hmac.compare_digest(token, csrf_token(state.csrf_secret, session, request_id, served_at))):
        return error_page(request, 403, "CSRF_FAILED",
                          "This form has expired or did not come from the decision page. "
                          "Open the request's address again and approve there.")
    if field("decision") != "approve":
        return error_page(request, 400, "BAD_REQUEST", "Choose Approve.")
    code_text, session_token, name = field("approval_code"), field("session_token"), field("approver")

    def decide() -> decisions.Approved:
        ledger = state.ledgers.get()
        found = _pending(ledger, request_id)
        if session_token:
            try:
                verified = verify_session(ledger, session_token)
            except errors.SessionInvalid as exc:
                raise errors.ApprovalRequired(f"{exc.message}. {approval.HOW_TO_GET_A_CODE}.") from None
            if verified.via != "local" or verified.developer_id != found.developer_id:
                raise errors.ApprovalRequired(
                    "This principal session was not made by the ledger's owner for this developer. "
                    f"{approval.HOW_TO_GET_A_CODE}.")
            approver, channel = verified.principal_id, "approval-page/principal-session"
        else:
            approval.check_approval_code(ledger, request_id, code_text)
            if not name:
                raise errors.InvalidInput("Type your name: it is recorded as who approved")
            approver, channel = name, "approval-page/approval-code"
        return decisions.approve(ledger, request_id, approver=approver, channel=channel,
                                 shown_at=float(served_at))

    try:
        done = await run_in_threadpool(decide)
    except errors.NotFound:
        return error_page(request, 404, "NOT_FOUND", "There is no decision request with this address.")
    except errors.InvalidState as exc:
        return error_page(request, 409, exc.code, f"{exc.message}. Nothing was changed.")
    except (errors.ApprovalRequired, errors.DecisionRefused, errors.InvalidInput) as exc:
        if not wants_html(request):
            return error_page(request, exc.status, exc.code, exc.message)
        found = await run_in_threadpool(lambda: decisions.get_request(state.ledgers.get(), None, request_id))
        return _form(request, found, status=exc.status, problem=f"Nothing was approved. {exc.message}")
    except errors.GrantexLocalError as exc:
        if exc.status >= 500:
            raise
        return error_page(request, exc.status, exc.code, exc.message)
    left = done.request.approvals_required - done.position
    lines = [f"Recorded as approved by {done.approver} ({done.dwell_ms / 1000:.1f} s on this page)."]
    lines.append("One more person must approve (four eyes): send them this page's address." if left
                 else "The agent can now use the decision, once. You can close this page.")
    return render_page(request, "result.html", kind="approved", eyebrow="Decision", heading="Approved",
                       lines=lines)
