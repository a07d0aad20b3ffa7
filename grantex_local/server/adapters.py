"""Answers the REST API needs that the library has no single function for yet.

Each is built from public library functions only, so no rule is decided here.
The library changes that would replace them are listed in the server's report
(``tokens.revocation_status`` and a claims-returning online verify).
"""

from __future__ import annotations

from typing import Any

import jwt

from .. import agents, errors, grants, tokens
from ..founding import Ledger


def revocation_status(ledger: Ledger, developer_id: str, grant_id: str, jti: str | None) -> dict[str, Any]:
    """What the SDK's ``enforce(revocation_check="online")`` asks ``/v1/revocations/status``.

    ``{revoked, status}`` with status ``active`` (the only one with ``revoked: false``),
    ``revoked`` (the grant, an ancestor, the token, or a deleted agent), ``expired``,
    ``suspended`` (an agent on the chain) or ``unknown`` (not this developer's grant).
    The whole answer comes from one read snapshot.
    """
    out: dict[str, Any] = {"grantId": grant_id}
    if jti is not None:
        out["jti"] = jti
    with ledger.read():
        try:
            grant = grants.get(ledger, developer_id, grant_id)
        except errors.NotFound:
            return {**out, "revoked": True, "status": "unknown"}
        chain = [grant, *grants.ancestors(ledger, grant_id)]
        statuses = {g.status for g in chain}
        agent_statuses = {agents.get(ledger, None, g.agent_id, include_deleted=True).status for g in chain}
        live = {t["jti"] for t in tokens.live_tokens(ledger, grant_id)} if jti is not None else set()
    if "revoked" in statuses or "deleted" in agent_statuses:
        status = "revoked"
    elif "expired" in statuses:
        status = "expired"
    elif "suspended" in agent_statuses:
        status = "suspended"
    elif jti is not None and jti not in live:
        status = "revoked"  # that token was revoked (or never belonged to this grant)
    else:
        return {**out, "revoked": False, "status": "active"}
    return {**out, "revoked": True, "status": status}


def verified_claims(ledger: Ledger, developer_id: str, token: str) -> dict[str, Any]:
    """``/v1/grants/verify``: ``{active: true, claims}`` after the library's online verification,
    else ``{active: false, reason}``. The claims are decoded only once the library has checked the
    signature, issuer, expiry and every grant, token and agent on the chain."""
    answer = tokens.verify_online(ledger, token, developer_id)
    if not answer.valid:
        return {"active": False, "reason": answer.reason}
    claims = jwt.decode(token, options={"verify_signature": False})
    return {"active": True, "claims": claims}
