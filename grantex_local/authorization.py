"""The authorization request and the human's consent (PROTOCOL §5).

authorize → (policy | sandbox | a human) → single-use code. Codes are 256-bit
secrets stored only as SHA-256 hashes, live 10 minutes and are bound to the
agent, and to the redirect URI and PKCE challenge when given. The request
itself expires 10 minutes after it was made, whatever the grant's lifetime.
"""

from __future__ import annotations

import getpass
import json
import re
import sqlite3
from typing import TYPE_CHECKING, Any

from . import agents, errors, events, policies
from .audit.trail import Appender, record
from .clock import iso, parse_expires_in
from .developers import get_developer, hash_secret
from .ids import new_id, new_secret
from .models import Agent, AuthorizationRequest, ConsentDecision
from .scopes import describe, normalize_scopes, uncovered
from .text import check_name, check_text

if TYPE_CHECKING:
    from .founding import Ledger

REQUEST_TTL = 600
CODE_TTL = 600
DEFAULT_EXPIRES_IN = "24h"
_CHALLENGE = re.compile(r"[A-Za-z0-9_-]{43}")
STATUSES = ("pending", "approved", "denied", "exchanged", "expired")
_CHANNEL = re.compile(r"[a-z][a-z0-9-]{0,31}(/[a-z][a-z0-9-]{0,31})?")


def _principal(value: object) -> str:
    if not isinstance(value, str) or not value.strip():
        raise errors.InvalidInput("principal (user) id must be a non-empty string")
    check_name(value, "principal id")  # a consent screen shows it: it must read as what it is
    if len(value) > 256:
        raise errors.InvalidInput("principal id must be at most 256 characters")
    return value


def _optional_text(value: object, name: str, limit: int = 2048) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not value or len(value) > limit:
        raise errors.InvalidInput(f"{name} must be a non-empty string of at most {limit} characters")
    return check_text(value, name)


def consent_url(ledger: Ledger, request_id: str) -> str:
    return f"{ledger.issuer}/consent/{request_id}"


def _status(row: sqlite3.Row, now_iso: str) -> str:
    if row["status"] == "pending" and row["expires_at"] <= now_iso:
        return "expired"
    return row["status"]


def _from_row(ledger: Ledger, row: sqlite3.Row, now_iso: str, *, code: str | None = None,
              sandbox: bool = False, policy: str | None = None) -> AuthorizationRequest:
    return AuthorizationRequest(
        request_id=row["id"], consent_url=consent_url(ledger, row["id"]), agent_id=row["agent_id"],
        principal_id=row["principal_id"], scopes=tuple(json.loads(row["scopes"])),
        expires_in=row["expires_in"], expires_at=row["expires_at"], status=_status(row, now_iso),
        created_at=row["created_at"], developer_id=row["developer_id"], code=code,
        sandbox=sandbox or None, policy_enforced=True if policy else None,
        effect="allow" if policy else None, policy_id=policy, redirect_uri=row["redirect_uri"],
        state=row["state"], audience=row["audience"],
    )


def check_declared_scopes(agent: Agent, requested: list[str], role: str = "agent") -> None:
    """Refuse scopes the agent did not declare (delegation applies the same bound to a sub-agent).

    An empty declaration means "nothing", never "anything": an agent registered without
    scopes would otherwise be a blank cheque, authorizable for any scope at all.
    """
    if not agent.scopes:
        raise errors.InvalidScope(
            f"{role} {agent.id} declares no scopes, so it can be granted none; add scopes with "
            f"'grantex-local agents update {agent.id} --scope ...'")
    beyond = uncovered(requested, agent.scopes)
    if beyond:
        raise errors.InvalidScope(f"{role} {agent.id} is not registered for: {', '.join(beyond)}")


def authorize(
    ledger: Ledger,
    developer_id: str,
    *,
    agent_id: str,
    principal_id: str,
    scopes: list[str],
    expires_in: str | None = None,
    redirect_uri: str | None = None,
    state: str | None = None,
    audience: str | None = None,
    code_challenge: str | None = None,
    code_challenge_method: str | None = None,
    request_ttl: int = REQUEST_TTL,
) -> AuthorizationRequest:
    """Start an authorization; policies first, then sandbox, else it waits for a human.

    ``request_ttl`` (seconds) is how long a pending request waits for its person; only the
    library offers it (the demo's request must outlive a coffee break), never the API.
    """
    if not isinstance(request_ttl, int) or not 60 <= request_ttl <= 30 * 86400:
        raise errors.InvalidInput("request_ttl must be 60 s .. 30 days")
    principal = _principal(principal_id)
    requested = normalize_scopes(scopes)
    ttl = DEFAULT_EXPIRES_IN if expires_in is None else expires_in
    parse_expires_in(ttl, maximum=ledger.max_expires_in)
    redirect = _optional_text(redirect_uri, "redirectUri")
    state = _optional_text(state, "state", 1024)
    audience = _optional_text(audience, "audience")
    if code_challenge is not None or code_challenge_method is not None:
        if (code_challenge_method or "S256") != "S256":
            raise errors.InvalidInput("codeChallengeMethod must be S256")
        if not isinstance(code_challenge, str) or not _CHALLENGE.fullmatch(code_challenge):
            raise errors.InvalidInput("codeChallenge must be a base64url SHA-256 digest (43 characters)")
    developer = get_developer(ledger, developer_id)
    agent = agents.require_active(ledger, developer_id, agent_id)
    check_declared_scopes(agent, requested)
    if redirect is not None:
        agents.validate_redirect_uris([redirect])
        if agent.redirect_uris and redirect not in agent.redirect_uris:
            raise errors.InvalidInput("redirectUri does not exactly match a URI the agent registered")
    elif len(agent.redirect_uris) == 1:
        redirect = agent.redirect_uris[0]

    now = ledger.now()
    now_iso = iso(now)
    request_id = new_id("auth_request")
    policy = policies.evaluate(ledger, developer_id, agent.id, principal, requested)
    code: str | None = None
    status, decided_by = "pending", None
    if policy is not None and policy.effect == "deny":
        status, decided_by = "denied", f"policy:{policy.id}"
    elif policy is not None:
        status, decided_by = "approved", f"policy:{policy.id}"
    elif developer.sandbox:
        status, decided_by = "approved", "sandbox"
    if status == "approved":
        code = new_secret()
    channel = None if decided_by is None else "policy" if policy is not None else "sandbox"
    with ledger.write() as conn:
        conn.execute(
            "INSERT INTO auth_requests (id, developer_id, agent_id, principal_id, scopes, expires_in, "
            "redirect_uri, state, audience, code_challenge, code_challenge_method, status, created_at, "
            "expires_at, decided_at, decided_by, policy_id, code_hash, code_expires_at, decision_channel) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (request_id, developer_id, agent.id, principal, json.dumps(requested), ttl, redirect,
             state, audience, code_challenge, "S256" if code_challenge else None, status, now_iso,
             iso(now + request_ttl), now_iso if decided_by else None, decided_by,
             policy.id if policy else None, hash_secret(code) if code else None,
             iso(now + CODE_TTL) if code else None, channel),
        )
        who = {"agent_id": agent.id, "agent_did": agent.did, "principal_id": principal}
        trail = Appender(ledger, conn, developer_id)
        trail.add(action="grantex.authorization.requested", **who,
                  metadata={"authRequestId": request_id, "scopes": requested, "expiresIn": ttl})
        if decided_by is not None:
            trail.add(action=f"grantex.consent.{status}", **who,
                      status="blocked" if status == "denied" else "success",
                      metadata={"authRequestId": request_id, "decidedBy": decided_by, "channel": channel})
        trail.flush()
        if decided_by is not None:
            events.emit(ledger, conn, developer_id, f"consent.{status}", {
                "authRequestId": request_id, "agentId": agent.id, "principalId": principal,
                "scopes": requested})
    if status == "denied" and policy is not None:
        raise errors.PolicyDenied(
            f"authorization denied by policy {policy.name!r} ({policy.id})", policy.id, request_id)
    row = _row(ledger, request_id)
    return _from_row(ledger, row, now_iso, code=code, sandbox=decided_by == "sandbox",
                     policy=policy.id if policy else None)


def _row(ledger: Ledger, request_id: object, developer_id: str | None = None) -> sqlite3.Row:
    if not isinstance(request_id, str) or not request_id:
        raise errors.InvalidInput("authorization request id must be a non-empty string")
    check_text(request_id, "authorization request id")
    row = ledger.query_one("SELECT * FROM auth_requests WHERE id = ?", (request_id,))
    if row is None or (developer_id is not None and row["developer_id"] != developer_id):
        raise errors.NotFound(f"authorization request {request_id} not found")
    return row


def get_request(ledger: Ledger, request_id: str, developer_id: str | None = None) -> AuthorizationRequest:
    return _from_row(ledger, _row(ledger, request_id, developer_id), iso(ledger.now()))


def list_requests(ledger: Ledger, developer_id: str | None = None, *,
                  status: str | None = "pending") -> list[AuthorizationRequest]:
    """Requests, by default those still waiting for a human (expired ones excluded)."""
    now_iso = iso(ledger.now())
    sql, params = "SELECT * FROM auth_requests WHERE 1 = 1", []
    if developer_id is not None:
        sql += " AND developer_id = ?"
        params.append(developer_id)
    if status is not None:
        if status not in STATUSES:
            raise errors.InvalidInput(f"status must be one of {', '.join(STATUSES)}")
        if status == "expired":
            sql += " AND status = 'pending' AND expires_at <= ?"
            params.append(now_iso)
        elif status == "pending":
            sql += " AND status = 'pending' AND expires_at > ?"
            params.append(now_iso)
        else:
            sql += " AND status = ?"
            params.append(status)
    sql += " ORDER BY created_at, id"
    return [_from_row(ledger, r, now_iso) for r in ledger.query(sql, params)]


def consent_details(ledger: Ledger, request_id: str, developer_id: str | None = None) -> dict[str, Any]:
    """What a consent screen must show: agent, developer, every scope described, expiry."""
    request = get_request(ledger, request_id, developer_id)
    agent: Agent = agents.get(ledger, None, request.agent_id, include_deleted=True)
    developer = get_developer(ledger, request.developer_id)
    return {
        "request": request.to_dict(),
        "agent": {"id": agent.id, "name": agent.name, "description": agent.description,
                  "did": agent.did, "status": agent.status},
        "developer": {"id": developer.id, "name": developer.name},
        "scopes": [{"scope": s, "description": describe(s)} for s in request.scopes],
        "grantExpiresIn": request.expires_in,
        "requestExpiresAt": request.expires_at,
    }


def os_user() -> str:
    """Who the CLI and the TUI record as deciding: they hold the ledger file, so the person at
    them is whoever the operating system says runs them (a container may have no user name)."""
    try:
        return getpass.getuser() or "local user"
    except (OSError, KeyError, ImportError):
        return "local user"


def _decide(ledger: Ledger, request_id: str, approve: bool, decided_by: str,
            developer_id: str | None, channel: str) -> ConsentDecision:
    if not isinstance(decided_by, str) or not decided_by:
        raise errors.InvalidInput("decided_by must name who decided")
    check_name(decided_by, "decided_by")
    if not isinstance(channel, str) or not _CHANNEL.fullmatch(channel):
        raise errors.InvalidInput("channel must be a short lower-case name such as 'cli' or "
                                  "'consent-page/approval-code'")
    now = ledger.now()
    now_iso = iso(now)
    code = new_secret() if approve else None
    with ledger.write() as conn:
        row = _row(ledger, request_id, developer_id)
        status = _status(row, now_iso)
        if status != "pending":
            raise errors.InvalidState(f"authorization request {request_id} is {status}, not pending")
        if approve:
            agents.require_active(ledger, row["developer_id"], row["agent_id"])
        conn.execute(
            "UPDATE auth_requests SET status = ?, decided_at = ?, decided_by = ?, code_hash = ?, "
            "code_expires_at = ?, decision_channel = ? WHERE id = ? AND status = 'pending'",
            ("approved" if approve else "denied", now_iso, decided_by,
             hash_secret(code) if code else None, iso(now + CODE_TTL) if code else None, channel,
             request_id),
        )
        record(ledger, conn, row["developer_id"],
               "grantex.consent.approved" if approve else "grantex.consent.denied",
               agent_id=row["agent_id"], agent_did="did:grantex:" + row["agent_id"],
               principal_id=row["principal_id"],
               metadata={"authRequestId": request_id, "decidedBy": decided_by, "channel": channel,
                         "scopes": json.loads(row["scopes"])})
        events.emit(ledger, conn, row["developer_id"], "consent.approved" if approve else "consent.denied",
                    {"authRequestId": request_id, "agentId": row["agent_id"],
                     "principalId": row["principal_id"], "scopes": json.loads(row["scopes"])})
    return ConsentDecision(request_id, "approved" if approve else "denied", code,
                           row["redirect_uri"], row["state"])


def approve(ledger: Ledger, request_id: str, *, decided_by: str = "local user",
            developer_id: str | None = None, channel: str = "library") -> ConsentDecision:
    """The human approves: returns the single-use code (the only place it appears).

    ``decided_by`` and ``channel`` (how the decision reached the ledger: ``cli``, ``tui``,
    ``consent-page/approval-code``...) are stored with the request and in the audit entry:
    the trail must say who decided and how that was established, not just "someone"."""
    return _decide(ledger, request_id, True, decided_by, developer_id, channel)


def deny(ledger: Ledger, request_id: str, *, decided_by: str = "local user",
         developer_id: str | None = None, channel: str = "library") -> ConsentDecision:
    return _decide(ledger, request_id, False, decided_by, developer_id, channel)
