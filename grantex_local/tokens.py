"""Grant tokens: issuance, code exchange, refresh, revocation and online verification.

Issuance writes the token row (jti, kid, expiry, the refresh token's hash) in
the caller's transaction and signs with the cached issuer key. Online
verification is offline verification plus what only the ledger knows: the
token row, its revocation, and the state of the grant, every ancestor grant
and every agent along the chain.
"""

from __future__ import annotations

import base64
import concurrent.futures
import hashlib
import hmac
import json
import os
import sqlite3
import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import jwt
from ulid import ULID

from . import agents, errors, events, grants, online
from .audit.trail import record
from .clock import iso, parse_expires_in, parse_iso
from .developers import hash_secret
from .ids import new_id
from .models import ExchangeTokenResponse
from .online import verify_online as verify_online
from .verify import ALGORITHM, GRANT_CLAIM, TOKEN_TYPE

if TYPE_CHECKING:
    from .founding import Ledger


def new_refresh_token(now_ms: int) -> str:
    """``ref_`` + a ULID whose 80 random bits are all fresh.

    The monotonic generator used for ids would make two refresh tokens minted
    in one millisecond differ by one, so a bearer secret must not come from it.
    """
    return "ref_" + str(ULID.from_bytes(now_ms.to_bytes(6, "big") + os.urandom(10)))


def build_claims(
    *,
    issuer: str,
    jti: str,
    grant: dict[str, Any],
    agent_did: str,
    iat: int,
    exp: int,
    parent_agent_did: str | None = None,
) -> dict[str, Any]:
    """Both claim sets of PROTOCOL §3, agreeing exactly."""
    scopes = list(grant["scopes"])
    grant_claim: dict[str, Any] = {
        "agent_did": agent_did,
        "developer_id": grant["developer_id"],
        "grant_id": grant["id"],
    }
    claims: dict[str, Any] = {
        "iss": issuer,
        "sub": grant["principal_id"],
        "jti": jti,
        "iat": iat,
        "exp": exp,
        "client_id": grant["agent_id"],
        "scope": " ".join(scopes),
        "scp": scopes,
        "agt": agent_did,
        "dev": grant["developer_id"],
        "grnt": grant["id"],
    }
    if grant.get("parent_grant_id"):
        depth = grant["delegation_depth"]
        grant_claim["parent_grant_id"] = grant["parent_grant_id"]
        grant_claim["delegation_depth"] = depth
        claims["act"] = {"sub": parent_agent_did}
        claims["parentAgt"] = parent_agent_did
        claims["parentGrnt"] = grant["parent_grant_id"]
        claims["delegationDepth"] = depth
    if grant.get("audience"):
        claims["aud"] = grant["audience"]
    if grant.get("bdg") is not None:  # set by refresh only, as the reference does (SDK-SURFACE §8)
        claims["bdg"] = grant["bdg"]
    claims[GRANT_CLAIM] = grant_claim
    return claims


_signer: concurrent.futures.ThreadPoolExecutor | None = None
_signer_lock = threading.Lock()


def _sign_pool() -> concurrent.futures.ThreadPoolExecutor:
    """Threads that sign while the caller writes and commits (made on first use, per process)."""
    global _signer
    with _signer_lock:
        if _signer is None:
            _signer = concurrent.futures.ThreadPoolExecutor(
                max_workers=max(2, os.cpu_count() or 2), thread_name_prefix="grantex-sign")
        return _signer


def _forget_pool_in_child() -> None:
    """A forked child has none of its parent's threads: an inherited pool would queue the
    signature and never compute it, so the child's next issuance would wait for ever. The
    child starts its own pool on first use instead. The lock is replaced too, since another
    thread of the parent may have held it at the moment of the fork."""
    global _signer, _signer_lock
    _signer = None
    _signer_lock = threading.Lock()


if hasattr(os, "register_at_fork"):  # POSIX; elsewhere there is no fork to survive
    os.register_at_fork(after_in_child=_forget_pool_in_child)


@dataclass(frozen=True)
class PendingToken:
    """A token whose row is written and whose signature is being computed.

    RSA signing releases the GIL, so it runs on another core while the caller
    inserts the grant, the token row and the audit entry and waits for the
    commit's fsync: together those cost about as much as the signature. Call
    :meth:`result` after the transaction has committed; if it rolled back,
    the signature is simply never used.
    """

    token_id: str
    _signature: concurrent.futures.Future[str]
    _grant: dict[str, Any]
    _refresh: str

    def result(self) -> ExchangeTokenResponse:
        return ExchangeTokenResponse(self._signature.result(), self._grant["expires_at"],
                                     tuple(self._grant["scopes"]), self._refresh,
                                     self._grant["id"], self.token_id)


def issue(
    ledger: Ledger,
    conn: sqlite3.Connection,
    grant: dict[str, Any],
    *,
    agent_did: str,
    parent_agent_did: str | None = None,
) -> PendingToken:
    """Start signing a token for ``grant`` and record it; the caller holds the write transaction."""
    now = ledger.now()
    jti = new_id("token")
    exp = int(parse_iso(grant["expires_at"]))
    claims = build_claims(issuer=ledger.issuer, jti=jti, grant=grant, agent_did=agent_did,
                          iat=int(now), exp=exp, parent_agent_did=parent_agent_did)
    kid, key = ledger.signing_key()
    signature = _sign_pool().submit(jwt.encode, claims, key, algorithm=ALGORITHM,
                                    headers={"kid": kid, "typ": TOKEN_TYPE})
    refresh = new_refresh_token(int(now * 1000))
    conn.execute(
        "INSERT INTO tokens (jti, grant_id, kid, issued_at, expires_at, refresh_hash) "
        "VALUES (?, ?, ?, ?, ?, ?)",
        (jti, grant["id"], kid, iso(now), grant["expires_at"], hash_secret(refresh)),
    )
    events.emit(ledger, conn, grant["developer_id"], "token.issued", {
        "tokenId": jti, "grantId": grant["id"], "agentId": grant["agent_id"],
        "principalId": grant["principal_id"], "scopes": list(grant["scopes"]),
        "expiresAt": grant["expires_at"]})
    return PendingToken(jti, signature, grant, refresh)


def insert_grant(conn: sqlite3.Connection, grant: dict[str, Any]) -> None:
    conn.execute(
        "INSERT INTO grants (id, developer_id, agent_id, principal_id, scopes, audience, "
        "parent_grant_id, parent_token_id, delegation_depth, auth_request_id, issued_at, expires_at) "
        "VALUES (:id, :developer_id, :agent_id, :principal_id, :scopes_json, :audience, "
        ":parent_grant_id, :parent_token_id, :delegation_depth, :auth_request_id, :issued_at, "
        ":expires_at)",
        dict(grant, scopes_json=json.dumps(list(grant["scopes"]))),
    )


def emit_grant_created(ledger: Ledger, conn: sqlite3.Connection, grant: dict[str, Any]) -> None:
    """The ``grant.created`` event for a grant just inserted (exchange and delegation), in the
    same transaction; a delegated grant also names its depth and parent."""
    data: dict[str, Any] = {
        "grantId": grant["id"], "agentId": grant["agent_id"], "principalId": grant["principal_id"],
        "scopes": list(grant["scopes"]), "expiresAt": grant["expires_at"]}
    if grant.get("parent_grant_id") is not None:
        data["delegationDepth"] = grant["delegation_depth"]
        data["parentGrantId"] = grant["parent_grant_id"]
    events.emit(ledger, conn, grant["developer_id"], "grant.created", data)


def _pkce_matches(verifier: str, challenge: str) -> bool:
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    computed = base64.urlsafe_b64encode(digest).rstrip(b"=").decode()
    return hmac.compare_digest(computed, challenge)


def exchange(
    ledger: Ledger,
    developer_id: str,
    *,
    code: str,
    agent_id: str,
    code_verifier: str | None = None,
    redirect_uri: str | None = None,
) -> ExchangeTokenResponse:
    """Trade a single-use authorization code for a grant token and a refresh token.

    The code is consumed by a conditional UPDATE inside ``BEGIN IMMEDIATE``,
    so of two concurrent exchanges exactly one wins.
    """
    if not isinstance(code, str) or not code:
        raise errors.InvalidCode("code must be a non-empty string")
    if not isinstance(agent_id, str) or not agent_id:
        raise errors.InvalidInput("agentId must be a non-empty string")
    if code_verifier is not None and (not isinstance(code_verifier, str)
                                      or not 43 <= len(code_verifier) <= 128
                                      or not code_verifier.isascii()):
        raise errors.InvalidCode("codeVerifier must be 43 to 128 ASCII characters")
    now = ledger.now()
    now_iso = iso(now)
    with ledger.write() as conn:
        req = conn.execute("SELECT * FROM auth_requests WHERE code_hash = ?",
                           (hash_secret(code),)).fetchone()
        if req is None or req["developer_id"] != developer_id:
            raise errors.InvalidCode("authorization code is unknown")
        if req["status"] == "exchanged":
            raise errors.InvalidCode("authorization code has already been used")
        if req["status"] != "approved":
            raise errors.InvalidCode(f"authorization code is not usable (request {req['status']})")
        if req["code_expires_at"] <= now_iso:
            raise errors.InvalidCode("authorization code has expired")
        if req["agent_id"] != agent_id:
            raise errors.InvalidCode("authorization code was issued to a different agent")
        if req["code_challenge"] is not None:
            if code_verifier is None:
                raise errors.InvalidCode("codeVerifier is required: the request used PKCE")
            if not _pkce_matches(code_verifier, req["code_challenge"]):
                raise errors.InvalidCode("codeVerifier does not match the code challenge")
        bound_uri = req["redirect_uri"]
        if redirect_uri is not None and bound_uri is not None and redirect_uri != bound_uri:
            raise errors.InvalidCode("redirectUri does not match the authorization request")
        agent = agents.require_active(ledger, developer_id, agent_id)
        seconds = parse_expires_in(req["expires_in"], maximum=10 * 365 * 86400)
        grant_id = new_id("grant")
        cur = conn.execute(
            "UPDATE auth_requests SET status = 'exchanged', grant_id = ? "
            "WHERE id = ? AND status = 'approved'", (grant_id, req["id"]),
        )
        if cur.rowcount != 1:
            raise errors.InvalidCode("authorization code has already been used")
        grant = {
            "id": grant_id, "developer_id": developer_id, "agent_id": agent_id,
            "principal_id": req["principal_id"], "scopes": json.loads(req["scopes"]),
            "audience": req["audience"], "parent_grant_id": None, "parent_token_id": None,
            "delegation_depth": 0, "auth_request_id": req["id"], "issued_at": now_iso,
            "expires_at": iso(int(now) + seconds),
        }
        insert_grant(conn, grant)
        emit_grant_created(ledger, conn, grant)
        issued = issue(ledger, conn, grant, agent_did=agent.did)
        record(ledger, conn, developer_id, "grantex.grant.issued", agent_id=agent_id,
               agent_did=agent.did, grant_id=grant_id, principal_id=grant["principal_id"],
               metadata={"authRequestId": req["id"], "scopes": grant["scopes"],
                         "expiresAt": grant["expires_at"], "tokenId": issued.token_id})
    return issued.result()


def revoke_tokens(ledger: Ledger, conn: sqlite3.Connection, jtis: list[str], now_iso: str,
                  cause: str) -> list[str]:
    """Revoke tokens and every grant delegated from them, with their audit events;
    returns the grant ids revoked."""
    if not jtis:
        return []
    marks = ",".join("?" * len(jtis))
    revoked = conn.execute(
        f"UPDATE tokens SET revoked_at = ? WHERE jti IN ({marks}) AND revoked_at IS NULL "
        "RETURNING jti, grant_id, expires_at", [now_iso, *jtis]).fetchall()
    for jti, grant_id, expires_at in revoked:
        g = conn.execute("SELECT developer_id, agent_id, principal_id FROM grants WHERE id = ?",
                         (grant_id,)).fetchone()
        record(ledger, conn, g["developer_id"], "grantex.token.revoked", agent_id=g["agent_id"],
               agent_did="did:grantex:" + g["agent_id"], grant_id=grant_id,
               principal_id=g["principal_id"], metadata={"tokenId": jti, "cause": cause})
        events.emit(ledger, conn, g["developer_id"], "token.revoked",
                    {"tokenId": jti, "grantId": grant_id, "expiresAt": expires_at})
    children = [r[0] for r in conn.execute(
        f"SELECT id FROM grants WHERE parent_token_id IN ({marks}) AND revoked_at IS NULL", jtis)]
    return grants.revoke_and_record(ledger, conn, children, now_iso, cause="parent_token_revoked")


def revoke(ledger: Ledger, developer_id: str | None, jti: str) -> list[str]:
    """Revoke one token by jti; grants delegated from it are revoked too (their ids returned)."""
    if not isinstance(jti, str) or not jti:
        raise errors.InvalidInput("jti must be a non-empty string")
    now_iso = iso(ledger.now())
    with ledger.write() as conn:
        row = conn.execute(
            "SELECT t.revoked_at, g.developer_id FROM tokens t JOIN grants g ON g.id = t.grant_id "
            "WHERE t.jti = ?", (jti,)).fetchone()
        if row is None or (developer_id is not None and row["developer_id"] != developer_id):
            raise errors.NotFound(f"token {jti} not found")
        if row["revoked_at"] is not None:
            raise errors.NotFound(f"token {jti} not found among live tokens (already revoked)")
        return revoke_tokens(ledger, conn, [jti], now_iso, "revoked")


def refresh(ledger: Ledger, developer_id: str, *, refresh_token: str, agent_id: str) -> ExchangeTokenResponse:
    """Rotate: a new grant token and refresh token for the same grant and expiry.

    A spent refresh token coming back means it leaked: every live token of
    that grant is revoked (OAuth 2.1 refresh-token reuse detection) and
    :class:`RefreshTokenReused` is raised after that revocation is committed.
    """
    if not isinstance(refresh_token, str) or not refresh_token:
        raise errors.InvalidRefreshToken("refreshToken must be a non-empty string")
    if not isinstance(agent_id, str) or not agent_id:
        raise errors.InvalidInput("agentId must be a non-empty string")
    now_iso = iso(ledger.now())
    reused_grant: str | None = None
    issued: PendingToken | None = None
    with ledger.write() as conn:
        row = conn.execute(
            "SELECT t.jti, t.refresh_used_at, t.revoked_at AS token_revoked_at, g.* "
            "FROM tokens t JOIN grants g ON g.id = t.grant_id WHERE t.refresh_hash = ?",
            (hash_secret(refresh_token),)).fetchone()
        if row is None or row["developer_id"] != developer_id or row["agent_id"] != agent_id:
            raise errors.InvalidRefreshToken("refresh token is unknown")
        if row["refresh_used_at"] is not None:
            live = [r[0] for r in conn.execute(
                "SELECT jti FROM tokens WHERE grant_id = ? AND revoked_at IS NULL", (row["id"],))]
            record(ledger, conn, developer_id, "grantex.token.reuse_detected", status="blocked",
                   agent_id=agent_id, agent_did="did:grantex:" + agent_id, grant_id=row["id"],
                   principal_id=row["principal_id"],
                   metadata={"tokenId": row["jti"], "revokedTokens": len(live)})
            revoke_tokens(ledger, conn, live, now_iso, "refresh_token_reuse")
            reused_grant = row["id"]
        elif row["token_revoked_at"] is not None:
            raise errors.InvalidRefreshToken("cannot refresh: the token it belongs to was revoked")
        else:
            problem = online.chain_problem(online.chain(conn, row["id"]), now_iso)
            if problem is not None:
                raise errors.InvalidRefreshToken(f"cannot refresh: {problem.replace('_', ' ')}")
            cur = conn.execute(
                "UPDATE tokens SET refresh_used_at = ? WHERE jti = ? AND refresh_used_at IS NULL",
                (now_iso, row["jti"]))
            if cur.rowcount != 1:
                raise errors.InvalidRefreshToken("refresh token has already been used")
            grant = dict(row)
            grant["scopes"] = json.loads(row["scopes"])
            from .budgets import remaining_claim  # the refreshed token carries the budget left

            grant["bdg"] = remaining_claim(conn, row["id"])
            parent_did = None
            if row["parent_grant_id"] is not None:
                parent_did = conn.execute(
                    "SELECT a.did FROM grants g JOIN agents a ON a.id = g.agent_id WHERE g.id = ?",
                    (row["parent_grant_id"],)).fetchone()[0]
            agent_did = conn.execute("SELECT did FROM agents WHERE id = ?", (agent_id,)).fetchone()[0]
            issued = issue(ledger, conn, grant, agent_did=agent_did, parent_agent_did=parent_did)
            record(ledger, conn, developer_id, "grantex.grant.refreshed", agent_id=agent_id,
                   agent_did=agent_did, grant_id=row["id"], principal_id=row["principal_id"],
                   metadata={"tokenId": issued.token_id, "replacesTokenId": row["jti"]})
    if issued is not None:
        return issued.result()
    raise errors.RefreshTokenReused(
        f"refresh token was already used: every live token of grant {reused_grant} has been revoked"
    )


def live_tokens(ledger: Ledger, grant_id: str) -> list[dict[str, Any]]:
    """The grant's tokens that are neither revoked nor expired, while the grant itself is unrevoked.

    Each: ``jti, issuedAt, expiresAt, delegatedGrants`` (unrevoked grants delegated
    directly from that token: revoking the token revokes them and their subtrees).
    What a person deciding to revoke one token needs to see; read-only.
    """
    now_iso = iso(ledger.now())
    rows = ledger.query(
        "SELECT t.jti, t.issued_at, t.expires_at, (SELECT count(*) FROM grants c "
        " WHERE c.parent_token_id = t.jti AND c.revoked_at IS NULL) AS delegated "
        "FROM tokens t JOIN grants g ON g.id = t.grant_id WHERE t.grant_id = ? "
        "AND t.revoked_at IS NULL AND t.expires_at > ? AND g.revoked_at IS NULL "
        "ORDER BY t.issued_at, t.jti", (grant_id, now_iso))
    return [{"jti": r["jti"], "issuedAt": r["issued_at"], "expiresAt": r["expires_at"],
             "delegatedGrants": r["delegated"]} for r in rows]
