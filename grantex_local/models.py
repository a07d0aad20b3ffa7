"""The objects the library returns and the parameter objects it accepts.

Names and fields mirror the official ``grantex`` SDK (``Agent.id``,
``ExchangeTokenResponse.scopes`` as a tuple, ``AuthorizeParams.user_id``) so
code moves between a local ledger and a hosted service with few changes.
``to_dict`` gives the REST shape of PROTOCOL §13 (camelCase), which the CLI's
``--json`` and the server both print.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Agent:
    id: str
    did: str
    name: str
    description: str
    scopes: tuple[str, ...]
    status: str
    developer_id: str
    created_at: str
    updated_at: str
    redirect_uris: tuple[str, ...] = ()
    public_jwk: dict[str, Any] | None = None
    key_thumbprint: str | None = None
    status_changed_at: str | None = None

    @property
    def agent_id(self) -> str:
        return self.id

    def to_dict(self) -> dict[str, Any]:
        return {
            "agentId": self.id, "id": self.id, "did": self.did, "developerId": self.developer_id,
            "name": self.name, "description": self.description, "scopes": list(self.scopes),
            "status": self.status, "redirectUris": list(self.redirect_uris),
            "publicJwk": self.public_jwk, "keyThumbprint": self.key_thumbprint,
            "createdAt": self.created_at, "updatedAt": self.updated_at,
        }


@dataclass
class AuthorizeParams:
    agent_id: str
    user_id: str
    scopes: list[str]
    expires_in: str | None = None
    redirect_uri: str | None = None
    code_challenge: str | None = None
    code_challenge_method: str | None = None
    audience: str | None = None
    state: str | None = None


@dataclass(frozen=True)
class AuthorizationRequest:
    request_id: str
    consent_url: str
    agent_id: str
    principal_id: str
    scopes: tuple[str, ...]
    expires_in: str
    expires_at: str
    status: str
    created_at: str
    developer_id: str = ""
    code: str | None = None
    sandbox: bool | None = None
    policy_enforced: bool | None = None
    effect: str | None = None
    policy_id: str | None = None
    redirect_uri: str | None = None
    state: str | None = None
    audience: str | None = None

    @property
    def auth_request_id(self) -> str:
        return self.request_id

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "authRequestId": self.request_id, "consentUrl": self.consent_url,
            "agentId": self.agent_id, "principalId": self.principal_id,
            "developerId": self.developer_id, "scopes": list(self.scopes),
            "expiresIn": self.expires_in, "expiresAt": self.expires_at, "status": self.status,
            "createdAt": self.created_at,
        }
        for key, value in (("redirectUri", self.redirect_uri), ("state", self.state),
                           ("audience", self.audience)):
            if value is not None:
                out[key] = value
        if self.code is not None:
            out["code"] = self.code
        if self.sandbox:
            out["sandbox"] = True
        if self.policy_enforced:
            out.update(policyEnforced=True, effect=self.effect, policyId=self.policy_id)
        return out


@dataclass(frozen=True)
class ConsentDecision:
    """What approving or denying a request yields (a code only on approval)."""

    request_id: str
    status: str
    code: str | None = None
    redirect_uri: str | None = None
    state: str | None = None

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"authRequestId": self.request_id, "status": self.status}
        for key, value in (("code", self.code), ("redirectUri", self.redirect_uri),
                           ("state", self.state)):
            if value is not None:
                out[key] = value
        return out


@dataclass
class ExchangeTokenParams:
    code: str
    agent_id: str
    code_verifier: str | None = None
    redirect_uri: str | None = None


@dataclass
class RefreshTokenParams:
    refresh_token: str
    agent_id: str


@dataclass(frozen=True)
class ExchangeTokenResponse:
    grant_token: str
    expires_at: str
    scopes: tuple[str, ...]
    refresh_token: str
    grant_id: str
    token_id: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {"grantToken": self.grant_token, "expiresAt": self.expires_at,
                "scopes": list(self.scopes), "refreshToken": self.refresh_token,
                "grantId": self.grant_id, "tokenId": self.token_id}


@dataclass(frozen=True)
class Grant:
    id: str
    agent_id: str
    agent_did: str
    principal_id: str
    developer_id: str
    scopes: tuple[str, ...]
    status: str
    issued_at: str
    expires_at: str
    revoked_at: str | None
    parent_grant_id: str | None = None
    delegation_depth: int = 0
    audience: str | None = None

    @property
    def grant_id(self) -> str:
        return self.id

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "grantId": self.id, "id": self.id, "agentId": self.agent_id,
            "agentDid": self.agent_did, "principalId": self.principal_id,
            "developerId": self.developer_id, "scopes": list(self.scopes),
            "status": self.status, "issuedAt": self.issued_at, "expiresAt": self.expires_at,
            "delegationDepth": self.delegation_depth,
        }
        if self.revoked_at is not None:
            out["revokedAt"] = self.revoked_at
        if self.parent_grant_id is not None:
            out["parentGrantId"] = self.parent_grant_id
        if self.audience is not None:
            out["audience"] = self.audience
        return out


@dataclass
class ListGrantsParams:
    agent_id: str | None = None
    principal_id: str | None = None
    status: str | None = None


@dataclass
class DelegateParams:
    parent_grant_token: str
    sub_agent_id: str
    scopes: list[str]
    expires_in: str | None = None


@dataclass(frozen=True)
class VerifiedGrant:
    """The claims of a grant token that passed offline verification."""

    token_id: str
    grant_id: str
    principal_id: str
    agent_did: str
    developer_id: str
    scopes: tuple[str, ...]
    issued_at: int
    expires_at: int
    issuer: str
    client_id: str | None = None
    parent_agent_did: str | None = None
    parent_grant_id: str | None = None
    delegation_depth: int | None = None
    audience: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "tokenId": self.token_id, "grantId": self.grant_id, "principalId": self.principal_id,
            "agentDid": self.agent_did, "developerId": self.developer_id,
            "scopes": list(self.scopes), "issuedAt": self.issued_at,
            "expiresAt": self.expires_at, "issuer": self.issuer, "clientId": self.client_id,
            "parentAgentDid": self.parent_agent_did, "parentGrantId": self.parent_grant_id,
            "delegationDepth": self.delegation_depth, "audience": self.audience,
        }


@dataclass(frozen=True)
class VerifyTokenResponse:
    """The answer of online verification; never an exception for a bad token."""

    valid: bool
    grant_id: str | None = None
    scopes: tuple[str, ...] | None = None
    principal: str | None = None
    agent: str | None = None
    expires_at: str | None = None
    reason: str | None = None
    token_id: str | None = None
    message: str | None = None  # what a person reads when ``reason`` alone does not say it all

    def to_dict(self) -> dict[str, Any]:
        if not self.valid:
            failed: dict[str, Any] = {"valid": False, "reason": self.reason}
            if self.message is not None:
                failed["message"] = self.message
            return failed
        return {"valid": True, "grantId": self.grant_id, "scopes": list(self.scopes or ()),
                "principal": self.principal, "agent": self.agent, "expiresAt": self.expires_at,
                "tokenId": self.token_id}


@dataclass(frozen=True)
class Policy:
    id: str
    name: str
    effect: str
    priority: int
    agent_id: str | None
    principal_id: str | None
    scopes: tuple[str, ...] | None
    time_window: dict[str, Any] | None
    created_at: str
    updated_at: str
    developer_id: str = ""

    @property
    def time_of_day_start(self) -> str | None:
        return _hhmm(self.time_window, "startHour", "startMinute")

    @property
    def time_of_day_end(self) -> str | None:
        return _hhmm(self.time_window, "endHour", "endMinute")

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id, "name": self.name, "effect": self.effect, "priority": self.priority,
            "agentId": self.agent_id, "principalId": self.principal_id,
            "scopes": list(self.scopes) if self.scopes is not None else None,
            "timeWindow": self.time_window, "timeOfDayStart": self.time_of_day_start,
            "timeOfDayEnd": self.time_of_day_end, "developerId": self.developer_id,
            "createdAt": self.created_at, "updatedAt": self.updated_at,
        }


def _hhmm(window: dict[str, Any] | None, hour_key: str, minute_key: str) -> str | None:
    if not window or window.get("tz", "UTC") != "UTC" or window.get("days"):
        return None
    return f"{window[hour_key]:02d}:{window.get(minute_key, 0):02d}"


@dataclass
class CreatePolicyParams:
    name: str
    effect: str
    priority: int = 0
    agent_id: str | None = None
    principal_id: str | None = None
    scopes: list[str] | None = None
    time_of_day_start: str | None = None
    time_of_day_end: str | None = None
    time_window: dict[str, Any] | None = None


@dataclass
class UpdatePolicyParams:
    name: str | None = None
    effect: str | None = None
    priority: int | None = None
    agent_id: str | None = None
    principal_id: str | None = None
    scopes: list[str] | None = None
    time_of_day_start: str | None = None
    time_of_day_end: str | None = None
    time_window: dict[str, Any] | None = None


@dataclass(frozen=True)
class RevokeResult:
    """What a cascading revocation did: every grant it revoked, at one instant."""

    grant_id: str
    revoked_at: str
    revoked_grant_ids: tuple[str, ...] = field(default_factory=tuple)

    def to_dict(self) -> dict[str, Any]:
        return {"grantId": self.grant_id, "revokedAt": self.revoked_at,
                "revokedGrantIds": list(self.revoked_grant_ids),
                "count": len(self.revoked_grant_ids)}


@dataclass(frozen=True)
class ListAgentsResponse:
    agents: tuple[Agent, ...]

    def to_dict(self) -> dict[str, Any]:
        return {"agents": [a.to_dict() for a in self.agents]}


@dataclass(frozen=True)
class ListGrantsResponse:
    grants: tuple[Grant, ...]

    def to_dict(self) -> dict[str, Any]:
        return {"grants": [g.to_dict() for g in self.grants]}


@dataclass(frozen=True)
class ListPoliciesResponse:
    policies: tuple[Policy, ...]
    total: int

    def to_dict(self) -> dict[str, Any]:
        return {"policies": [p.to_dict() for p in self.policies], "total": self.total}


@dataclass(frozen=True)
class AuditEntry:
    """One entry of the hash chain; ``flags`` mark actions taken under a dead grant."""

    entry_id: str
    seq: int
    agent_id: str | None
    agent_did: str | None
    grant_id: str | None
    principal_id: str | None
    developer_id: str
    action: str
    metadata: dict[str, Any]
    status: str
    timestamp: str
    hash: str
    prev_hash: str | None
    flags: tuple[str, ...] = ()

    @property
    def id(self) -> str:
        return self.entry_id

    def to_dict(self) -> dict[str, Any]:
        return {
            "entryId": self.entry_id, "id": self.entry_id, "seq": self.seq,
            "agentId": self.agent_id, "agentDid": self.agent_did, "grantId": self.grant_id,
            "principalId": self.principal_id, "developerId": self.developer_id,
            "action": self.action, "metadata": self.metadata, "status": self.status,
            "timestamp": self.timestamp, "hash": self.hash, "prevHash": self.prev_hash,
            "flags": list(self.flags),
        }
