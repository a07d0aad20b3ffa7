"""Principal sessions: a short-lived signed proof that "this browser acts for principal P of developer D".

One mechanism serves two pages: the principal's permissions page (issue 12: list and revoke
the grants given in their name) and the consent page (issue 15: decide a request made in
their name). The token is the wire contract of the SDK's ``principal_sessions.create``: an
RS256 JWT signed with the ledger's issuer key and issuer, claims ``iss``, ``sub`` (principal),
``dev`` (developer id), ``purpose: "principal_dashboard"``, ``iat``, ``exp``, header ``kid``.
It has no ``jti`` and no ``typ: at+jwt``, so it can never pass as a grant token, and a grant
token (no ``purpose``) can never pass as a session.

Where a session was minted matters. ``POST /v1/principal-sessions`` mints one for any
principal on the strength of the developer's API key alone, which the agent asking for
consent may well hold; so every token says how it was minted (claim ``via``: ``api-key`` or
``local``, the latter for the person holding the ledger file), and the consent page accepts
only ``local`` ones (see :mod:`.approval`). Tokens are never stored or logged: creating one
writes an audit event that names the principal and the expiry, never the token.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

import jwt

from . import errors
from .audit.trail import record
from .authorization import _principal as checked_principal_id
from .clock import iso, parse_expires_in
from .developers import get_developer
from .verify import ALGORITHM, MAX_TOKEN_LENGTH

if TYPE_CHECKING:
    from .founding import Ledger

PURPOSE = "principal_dashboard"
DEFAULT_EXPIRES_IN = "1h"
MAX_SESSION_SECONDS = 86_400
"""Longer requests are clamped to a day, not refused (the SDK's reference server does the same)."""
LEEWAY = 5
ORIGINS = ("api-key", "local")
Origin = Literal["api-key", "local"]


@dataclass(frozen=True)
class PrincipalSession:
    """A freshly minted session: the token is shown once, to whoever asked for it."""

    session_token: str
    principal_id: str
    developer_id: str
    expires_at: str
    via: str

    def dashboard_url(self, base_url: str) -> str:
        """Where the principal opens it; the token travels in the fragment, which never reaches
        a server's access log."""
        from urllib.parse import quote

        return f"{base_url}/permissions#session={quote(self.session_token, safe='')}"

    def to_dict(self, base_url: str) -> dict[str, str]:
        return {"sessionToken": self.session_token, "dashboardUrl": self.dashboard_url(base_url),
                "expiresAt": self.expires_at}


@dataclass(frozen=True)
class VerifiedSession:
    principal_id: str
    developer_id: str
    issued_at: int
    expires_at: int
    via: str


def session_seconds(expires_in: object) -> int:
    """Seconds a session lasts: ``^\\d+[smhd]$`` (default 1 h), clamped to 24 h."""
    if expires_in is None:
        expires_in = DEFAULT_EXPIRES_IN
    return min(parse_expires_in(expires_in, maximum=10 * 365 * 86_400), MAX_SESSION_SECONDS)


def create_session(ledger: Ledger, developer_id: str, principal_id: str, *, via: Origin,
                   expires_in: str | None = None) -> PrincipalSession:
    """Mint a session for ``principal_id`` under ``developer_id`` and record that it was minted.

    ``via`` has no default on purpose: a caller must say whether the proof behind the request
    is a developer API key (``api-key``) or possession of the ledger file (``local``).
    Unlike the reference server, no existing grant is required: the person approving their
    very first consent has none yet.
    """
    if via not in ORIGINS:
        raise errors.InvalidInput(f"via must be one of {', '.join(ORIGINS)}")
    principal = checked_principal_id(principal_id)
    seconds = session_seconds(expires_in)
    get_developer(ledger, developer_id)  # NotFound for an unknown developer
    now = int(ledger.now())
    claims = {"iss": ledger.issuer, "sub": principal, "dev": developer_id, "purpose": PURPOSE,
              "via": via, "iat": now, "exp": now + seconds}
    kid, key = ledger.signing_key()
    token = jwt.encode(claims, key, algorithm=ALGORITHM, headers={"kid": kid})
    expires_at = iso(now + seconds)
    with ledger.write() as conn:
        record(ledger, conn, developer_id, "grantex.principal_session.created", principal_id=principal,
               metadata={"expiresAt": expires_at, "via": via})
    return PrincipalSession(token, principal, developer_id, expires_at, via)


def _invalid(message: str, reason: str) -> errors.SessionInvalid:
    return errors.SessionInvalid(f"principal session rejected: {message}", reason)


def _key_for(ledger: Ledger, token: str) -> Any:
    try:
        header = jwt.get_unverified_header(token)
    except jwt.PyJWTError:
        raise _invalid("malformed token", "malformed") from None
    if header.get("alg") != ALGORITHM:
        raise _invalid(f"algorithm {header.get('alg')!r} is not allowed (only RS256)", "algorithm")
    if header.get("typ") not in (None, "JWT"):
        raise _invalid("not a session token (typ)", "type")
    kid = header.get("kid")
    if not isinstance(kid, str):
        raise _invalid("unknown signing key (kid)", "unknown_kid")
    key = ledger.verifier().keys.get(kid)
    if key is None:  # another process may have rotated the key since the verifier was built
        ledger.forget_keys()
        key = ledger.verifier().keys.get(kid)
    if key is None:
        raise _invalid("unknown signing key (kid)", "unknown_kid")
    return key


def verify_session(ledger: Ledger, token: object) -> VerifiedSession:
    """The session a token proves, or :class:`~.errors.SessionInvalid` naming the failed check:
    signature under one of this ledger's keys, issuer, purpose, expiry (by the ledger's clock),
    and a developer that still exists."""
    if not isinstance(token, str) or not token or len(token) > MAX_TOKEN_LENGTH or token.count(".") != 2:
        raise _invalid("not a compact JWS", "malformed")
    key = _key_for(ledger, token)
    try:
        claims = jwt.decode(token, key, algorithms=[ALGORITHM],
                            options={"verify_exp": False, "verify_iat": False, "verify_nbf": False,
                                     "verify_aud": False, "verify_iss": False})
    except jwt.InvalidSignatureError:
        raise _invalid("bad signature", "signature") from None
    except jwt.PyJWTError:
        raise _invalid("malformed token", "malformed") from None
    for name in ("iss", "sub", "dev", "purpose", "iat", "exp"):
        if claims.get(name) is None:
            raise _invalid(f"missing claim {name!r}", "missing_claim")
    if claims["iss"] != ledger.issuer:
        raise _invalid(f"issued by {claims['iss']!r}, this ledger is {ledger.issuer!r}", "issuer")
    if claims["purpose"] != PURPOSE:
        raise _invalid(f"purpose must be {PURPOSE!r}", "purpose")
    sub, dev, iat, exp = claims["sub"], claims["dev"], claims["iat"], claims["exp"]
    if not isinstance(sub, str) or not isinstance(dev, str) or not sub or not dev:
        raise _invalid("sub and dev must be non-empty strings", "malformed")
    if any(isinstance(v, bool) or not isinstance(v, int) for v in (iat, exp)):
        raise _invalid("iat and exp must be integers", "malformed")
    now = ledger.now()
    if now >= exp + LEEWAY:
        raise _invalid("it has expired; ask for a new session", "expired")
    if iat > now + LEEWAY:
        raise _invalid("issued in the future", "not_yet_valid")
    via = claims.get("via", "api-key")  # a token without the claim was not minted here: trust it least
    if via not in ORIGINS:
        raise _invalid("unknown origin (via)", "malformed")
    try:
        get_developer(ledger, dev)
    except errors.NotFound:
        raise _invalid("its developer no longer exists", "developer") from None
    return VerifiedSession(sub, dev, iat, exp, via)


# ── what a session lets its principal see and do (the permissions page, issue 12) ──
#
# Everything below is scoped by the session alone: grants of *this* principal under *this*
# developer. A grant outside that scope, or no longer active, is NotFound with the same text as
# a grant that does not exist, so a session cannot probe for other people's grants.

AUDIT_LIMIT = 100
_AUDIT_FIELDS = ("entryId", "agentId", "agentDid", "grantId", "principalId", "action", "metadata",
                 "status", "timestamp")


def _not_found(grant_id: object) -> errors.NotFound:
    return errors.NotFound(f"grant {grant_id} not found among your active grants")


def _describe(scope: str) -> str:
    from .scopes import describe

    try:
        return describe(scope)
    except errors.GrantexLocalError:  # a scope stored before today's grammar: say so, never fail the page
        return f"Do whatever the scope '{scope}' permits (no description is registered for it)"


def principal_grants(ledger: Ledger, session: VerifiedSession) -> list[dict[str, Any]]:
    """The session's principal's active, unexpired grants under its developer, newest first.

    Each is the SDK's shape (``grantId, agentId, agentName, agentDescription, agentDid, scopes,
    status, issuedAt, expiresAt, delegationDepth``) plus what a person needs to judge it:
    ``scopeDescriptions`` (words, never only the raw strings), ``parentGrantId``,
    ``delegationChain`` (the agents above it, root first), ``lastActivity`` (the latest audit
    entry of the grant) and ``descendants`` (active grants below it, which a revoke takes too).
    One read of every grant of the principal: delegated grants carry their root's principal,
    so chains and subtrees never leave this set.
    """
    import json

    now = iso(ledger.now())
    with ledger.read() as conn:
        rows = conn.execute(
            "SELECT g.id, g.agent_id, g.scopes, g.issued_at, g.expires_at, g.revoked_at, "
            "g.delegation_depth, g.parent_grant_id, a.name, a.description, a.did, "
            "(SELECT max(e.timestamp) FROM audit_entries e WHERE e.grant_id = g.id) AS last_activity "
            "FROM grants g JOIN agents a ON a.id = g.agent_id "
            "WHERE g.developer_id = ? AND g.principal_id = ? ORDER BY g.issued_at DESC, g.id DESC",
            (session.developer_id, session.principal_id)).fetchall()
    by_id = {r["id"]: r for r in rows}

    def active(row: Any) -> bool:
        return row["revoked_at"] is None and row["expires_at"] > now

    children: dict[str, list[str]] = {}
    for r in rows:
        if r["parent_grant_id"] is not None:
            children.setdefault(r["parent_grant_id"], []).append(r["id"])

    def below(grant_id: str) -> int:
        count, stack = 0, list(children.get(grant_id, []))
        while stack:
            child = stack.pop()
            count += active(by_id[child])
            stack.extend(children.get(child, []))
        return count

    out = []
    for r in rows:
        if not active(r):
            continue
        chain: list[dict[str, str]] = []
        cursor = r["parent_grant_id"]
        while cursor is not None and cursor in by_id and len(chain) < 64:
            parent = by_id[cursor]
            chain.append({"grantId": parent["id"], "agentId": parent["agent_id"],
                          "agentName": parent["name"]})
            cursor = parent["parent_grant_id"]
        scopes = list(json.loads(r["scopes"]))
        out.append({
            "grantId": r["id"], "agentId": r["agent_id"], "agentName": r["name"],
            "agentDescription": r["description"], "agentDid": r["did"], "scopes": scopes,
            "scopeDescriptions": [{"scope": s, "description": _describe(s)} for s in scopes],
            "status": "active", "issuedAt": r["issued_at"], "expiresAt": r["expires_at"],
            "delegationDepth": r["delegation_depth"], "parentGrantId": r["parent_grant_id"],
            "delegationChain": chain[::-1], "lastActivity": r["last_activity"],
            "descendants": below(r["id"]),
        })
    return out


def principal_audit(ledger: Ledger, session: VerifiedSession, *,
                    limit: int = AUDIT_LIMIT) -> list[dict[str, Any]]:
    """The principal's audit entries under the session's developer, newest first, at most
    ``limit`` (100): the SDK's shape, without hashes (the chain is the developer's to verify)."""
    from .audit.trail import list_entries

    entries = list_entries(ledger, session.developer_id, principal_id=session.principal_id,
                           page_size=max(1, min(limit, AUDIT_LIMIT)), newest_first=True)
    out = []
    for entry in entries:
        data = entry.to_dict()
        out.append({name: data[name] for name in _AUDIT_FIELDS})
    return out


def _owned_active(conn: Any, session: VerifiedSession, grant_id: object, now: str) -> None:
    if not isinstance(grant_id, str) or not grant_id or len(grant_id) > 256:
        raise _not_found(grant_id if isinstance(grant_id, str) else "")
    row = conn.execute("SELECT developer_id, principal_id, revoked_at, expires_at FROM grants WHERE id = ?",
                       (grant_id,)).fetchone()
    if (row is None or row["developer_id"] != session.developer_id
            or row["principal_id"] != session.principal_id or row["revoked_at"] is not None
            or row["expires_at"] <= now):
        raise _not_found(grant_id)


def principal_blast_radius(ledger: Ledger, session: VerifiedSession, grant_id: object) -> dict[str, Any]:
    """What revoking one of the principal's grants would take with it, for the confirmation
    dialog: :func:`grants.blast_radius` plus ``agentName`` (of the grant itself) and ``below``,
    the active grants under it (``grantId, agentId, agentName, delegationDepth, parentGrantId``)
    in tree order."""
    from . import grants

    now = iso(ledger.now())
    with ledger.read() as conn:
        _owned_active(conn, session, grant_id, now)
        assert isinstance(grant_id, str)
        ids = grants.subtree_ids(conn, [grant_id])
        marks = ",".join("?" * len(ids))
        rows = conn.execute(
            "SELECT g.id, g.agent_id, a.name, g.delegation_depth, g.parent_grant_id FROM grants g "
            f"JOIN agents a ON a.id = g.agent_id WHERE g.id IN ({marks}) AND g.revoked_at IS NULL "
            "AND g.expires_at > ? ORDER BY g.delegation_depth, g.issued_at, g.id", [*ids, now]).fetchall()
    radius = grants.blast_radius(ledger, grant_id)
    radius["agentName"] = next((r["name"] for r in rows if r["id"] == grant_id), None)
    radius["below"] = [{"grantId": r["id"], "agentId": r["agent_id"], "agentName": r["name"],
                        "delegationDepth": r["delegation_depth"], "parentGrantId": r["parent_grant_id"]}
                       for r in rows if r["id"] != grant_id]
    return radius


def revoke_as_principal(ledger: Ledger, session: VerifiedSession, grant_id: object) -> list[str]:
    """Revoke one of the principal's active grants and everything delegated from it, through the
    normal path (one ``grantex.grant.revoked`` entry per grant, one ``grant.revoked`` event),
    recorded as done by the principal: the root's entry says ``cause: "revoked_by_principal"``
    and ``revokedBy: {principalId, via}``. The check and the revoke share one transaction, so a
    grant revoked meanwhile by someone else is NotFound here, never revoked twice."""
    from .grants import revoke_and_record

    now = iso(ledger.now())
    with ledger.write() as conn:
        _owned_active(conn, session, grant_id, now)
        assert isinstance(grant_id, str)
        return revoke_and_record(ledger, conn, [grant_id], now, cause="revoked_by_principal",
                                 actor={"principalId": session.principal_id, "via": session.via})
