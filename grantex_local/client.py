"""The ``Grantex`` facade: the official SDK's names over a local ledger.

Code written against the hosted SDK (``client.agents.register``,
``client.authorize``, ``client.tokens.exchange(ExchangeTokenParams(...))``)
runs here with only the constructor changed. Parameter objects from the
official ``grantex`` package are accepted too: they are read by attribute.
"""

from __future__ import annotations

import builtins
import os
from typing import Any

from . import agents as _agents
from . import authorization as _authorization
from . import delegation as _delegation
from . import grants as _grants
from . import keys as _keys
from . import policies as _policies
from . import tokens as _tokens
from .audit import chain as _chain
from .audit import checkpoints as _checkpoints
from .audit import trail as _audit_log
from .audit.chain import ChainReport
from .clock import Clock
from .developers import default_developer
from .errors import InvalidInput
from .founding import Ledger
from .models import (
    Agent,
    AuditEntry,
    AuthorizationRequest,
    ConsentDecision,
    CreatePolicyParams,
    ExchangeTokenResponse,
    Grant,
    ListAgentsResponse,
    ListGrantsResponse,
    ListPoliciesResponse,
    Policy,
    RevokeResult,
    UpdatePolicyParams,
    VerifiedGrant,
    VerifyTokenResponse,
)


def _param(params: Any, name: str, kwargs: dict[str, Any], default: Any = None) -> Any:
    if name in kwargs and kwargs[name] is not None:
        return kwargs[name]
    return getattr(params, name, default) if params is not None else default


class AgentsClient:
    def __init__(self, gx: Grantex) -> None:
        self._gx = gx

    def register(self, *, name: str, scopes: list[str], description: str = "",
                 redirect_uris: list[str] | None = None,
                 public_jwk: dict[str, Any] | None = None) -> Agent:
        return _agents.register(self._gx.ledger, self._gx.developer_id, name=name, scopes=scopes,
                                description=description, redirect_uris=redirect_uris,
                                public_jwk=public_jwk)

    def get(self, agent_id: str) -> Agent:
        return _agents.get(self._gx.ledger, self._gx.developer_id, agent_id)

    def list(self, *, status: str | None = None) -> ListAgentsResponse:
        return ListAgentsResponse(tuple(_agents.list_agents(self._gx.ledger, self._gx.developer_id,
                                                            status=status)))

    def update(self, agent_id: str, *, name: str | None = None, description: str | None = None,
               scopes: builtins.list[str] | None = None, redirect_uris: builtins.list[str] | None = None,
               status: str | None = None) -> Agent:
        return _agents.update(self._gx.ledger, self._gx.developer_id, agent_id, name=name,
                              description=description, scopes=scopes,
                              redirect_uris=redirect_uris, status=status)

    def suspend(self, agent_id: str) -> Agent:
        return _agents.suspend(self._gx.ledger, self._gx.developer_id, agent_id)

    def reactivate(self, agent_id: str) -> Agent:
        return _agents.reactivate(self._gx.ledger, self._gx.developer_id, agent_id)

    def delete(self, agent_id: str) -> None:
        _agents.delete(self._gx.ledger, self._gx.developer_id, agent_id)

    def rotate_key(self, agent_id: str, public_jwk: dict[str, Any] | None = None) -> Agent:
        return _agents.rotate_key(self._gx.ledger, self._gx.developer_id, agent_id, public_jwk)

    def did_document(self, agent_id: str) -> dict[str, Any]:
        return _agents.did_document(self._gx.ledger, self._gx.developer_id, agent_id)


class ConsentClient:
    """The local human's side of the flow (the TUI and consent page use the same calls)."""

    def __init__(self, gx: Grantex) -> None:
        self._gx = gx

    def list(self, *, status: str | None = "pending") -> list[AuthorizationRequest]:
        return _authorization.list_requests(self._gx.ledger, self._gx.developer_id, status=status)

    def get(self, request_id: str) -> AuthorizationRequest:
        return _authorization.get_request(self._gx.ledger, request_id, self._gx.developer_id)

    def details(self, request_id: str) -> dict[str, Any]:
        return _authorization.consent_details(self._gx.ledger, request_id, self._gx.developer_id)

    def approve(self, request_id: str, *, decided_by: str = "local user") -> ConsentDecision:
        return _authorization.approve(self._gx.ledger, request_id, decided_by=decided_by,
                                      developer_id=self._gx.developer_id)

    def deny(self, request_id: str, *, decided_by: str = "local user") -> ConsentDecision:
        return _authorization.deny(self._gx.ledger, request_id, decided_by=decided_by,
                                   developer_id=self._gx.developer_id)


class TokensClient:
    def __init__(self, gx: Grantex) -> None:
        self._gx = gx

    def exchange(self, params: Any = None, **kwargs: Any) -> ExchangeTokenResponse:
        """``exchange(ExchangeTokenParams(code=..., agent_id=...))`` or keyword arguments."""
        return _tokens.exchange(
            self._gx.ledger, self._gx.developer_id,
            code=_param(params, "code", kwargs), agent_id=_param(params, "agent_id", kwargs),
            code_verifier=_param(params, "code_verifier", kwargs),
            redirect_uri=_param(params, "redirect_uri", kwargs),
        )

    def refresh(self, params: Any = None, **kwargs: Any) -> ExchangeTokenResponse:
        return _tokens.refresh(
            self._gx.ledger, self._gx.developer_id,
            refresh_token=_param(params, "refresh_token", kwargs),
            agent_id=_param(params, "agent_id", kwargs),
        )

    def verify(self, token: str) -> VerifyTokenResponse:
        """Online verification: never raises for a bad token, answers ``valid=False``."""
        return _tokens.verify_online(self._gx.ledger, token, self._gx.developer_id)

    def verify_offline(self, token: str, *, required_scopes: list[str] | None = None) -> VerifiedGrant:
        """Signature, claims and expiry only, with the ledger's own keys; raises TokenInvalid."""
        return self._gx.ledger.verify_offline(token, required_scopes)

    def revoke(self, token_id: str) -> None:
        _tokens.revoke(self._gx.ledger, self._gx.developer_id, token_id)


class GrantsClient:
    def __init__(self, gx: Grantex) -> None:
        self._gx = gx

    def get(self, grant_id: str) -> Grant:
        return _grants.get(self._gx.ledger, self._gx.developer_id, grant_id)

    def list(self, params: Any = None, **kwargs: Any) -> ListGrantsResponse:
        found = _grants.list_grants(
            self._gx.ledger, self._gx.developer_id,
            agent_id=_param(params, "agent_id", kwargs),
            principal_id=_param(params, "principal_id", kwargs),
            status=_param(params, "status", kwargs),
        )
        return ListGrantsResponse(tuple(found))

    def revoke(self, grant_id: str) -> RevokeResult:
        return _grants.revoke(self._gx.ledger, self._gx.developer_id, grant_id)

    def delegate(self, params: Any = None, **kwargs: Any) -> ExchangeTokenResponse:
        return _delegation.delegate(
            self._gx.ledger, self._gx.developer_id,
            parent_grant_token=_param(params, "parent_grant_token", kwargs),
            sub_agent_id=_param(params, "sub_agent_id", kwargs),
            scopes=_param(params, "scopes", kwargs),
            expires_in=_param(params, "expires_in", kwargs),
        )

    def tree(self, grant_id: str | None = None) -> builtins.list[dict[str, Any]]:
        return _grants.tree(self._gx.ledger, self._gx.developer_id, grant_id)

    def ancestors(self, grant_id: str) -> builtins.list[Grant]:
        self.get(grant_id)
        return _grants.ancestors(self._gx.ledger, grant_id)

    def blast_radius(self, grant_id: str) -> dict[str, Any]:
        self.get(grant_id)
        return _grants.blast_radius(self._gx.ledger, grant_id)


class PoliciesClient:
    def __init__(self, gx: Grantex) -> None:
        self._gx = gx

    def create(self, params: Any = None, **kwargs: Any) -> Policy:
        fields = ("name", "effect", "priority", "agent_id", "principal_id", "scopes",
                  "time_of_day_start", "time_of_day_end", "time_window")
        values = {f: _param(params, f, kwargs) for f in fields}
        if values["priority"] is None:
            values["priority"] = 0
        return _policies.create(self._gx.ledger, self._gx.developer_id, CreatePolicyParams(**values))

    def list(self) -> ListPoliciesResponse:
        found = _policies.list_policies(self._gx.ledger, self._gx.developer_id)
        return ListPoliciesResponse(tuple(found), len(found))

    def get(self, policy_id: str) -> Policy:
        return _policies.get(self._gx.ledger, self._gx.developer_id, policy_id)

    def update(self, policy_id: str, params: Any = None, **kwargs: Any) -> Policy:
        fields = ("name", "effect", "priority", "agent_id", "principal_id", "scopes",
                  "time_of_day_start", "time_of_day_end", "time_window")
        values = {f: _param(params, f, kwargs) for f in fields}
        return _policies.update(self._gx.ledger, self._gx.developer_id, policy_id,
                                UpdatePolicyParams(**values))

    def delete(self, policy_id: str) -> None:
        _policies.delete(self._gx.ledger, self._gx.developer_id, policy_id)


class KeysClient:
    def __init__(self, gx: Grantex) -> None:
        self._gx = gx

    def jwks(self) -> dict[str, Any]:
        return _keys.jwks(self._gx.ledger)

    def rotate(self) -> dict[str, Any]:
        return _keys.rotate_signing_key(self._gx.ledger)

    def list(self) -> list[dict[str, Any]]:
        return _keys.list_signing_keys(self._gx.ledger)


class AuditClient:
    """The SDK's ``audit.log`` plus what makes the log trustworthy: verify, checkpoint, prove."""

    def __init__(self, gx: Grantex) -> None:
        self._gx = gx

    def log(self, *, agent_id: str, grant_id: str, action: str, status: str = "success",
            metadata: dict[str, Any] | None = None, agent_did: str | None = None,
            principal_id: str | None = None) -> AuditEntry:
        return _audit_log.log(self._gx.ledger, self._gx.developer_id, agent_id=agent_id,
                              grant_id=grant_id, action=action, status=status, metadata=metadata,
                              agent_did=agent_did, principal_id=principal_id)

    def log_many(self, entries: list[dict[str, Any]]) -> list[AuditEntry]:
        """Append many entries (dicts with the :meth:`log` keywords) in one transaction."""
        return _audit_log.log_many(self._gx.ledger, self._gx.developer_id, entries)

    def list(self, **filters: Any) -> list[AuditEntry]:
        return _audit_log.list_entries(self._gx.ledger, self._gx.developer_id, **filters)

    def get(self, entry_id: str) -> AuditEntry:
        return _audit_log.get_entry(self._gx.ledger, self._gx.developer_id, entry_id)

    def verify(self, *, checkpoint: str | None = None, public_key: str | None = None) -> ChainReport:
        """Walk the chain against every checkpoint stored in the file (raises ChainBroken); with a
        checkpoint note kept outside the file, also against it: only that one survives a rewrite
        of the whole file."""
        parsed = None
        if checkpoint is not None:
            parsed = _checkpoints.verify_against(self._gx.ledger, self._gx.developer_id, checkpoint,
                                                 public_key)
        return _chain.verify_chain(self._gx.ledger, self._gx.developer_id, checkpoint=parsed)

    def checkpoint(self) -> dict[str, Any]:
        return _checkpoints.create(self._gx.ledger, self._gx.developer_id)

    def checkpoints(self) -> builtins.list[dict[str, Any]]:
        return _checkpoints.list_checkpoints(self._gx.ledger, self._gx.developer_id)

    def prove(self, entry_id: str) -> dict[str, Any]:
        return _checkpoints.prove(self._gx.ledger, entry_id, self._gx.developer_id)

    def public_key(self) -> str:
        return _checkpoints.verifier_key(self._gx.ledger)


class Grantex:
    """A Grantex client whose "service" is a local ledger file.

    ``Grantex(ledger="grantex.db")`` opens (or creates) the file and acts as
    its default developer; pass ``developer_id`` to act as another one.
    """

    def __init__(
        self,
        ledger: str | os.PathLike[str] | Ledger | None = None,
        *,
        developer_id: str | None = None,
        clock: Clock | None = None,
        passphrase: str | None = None,
        create: bool = True,
    ) -> None:
        if isinstance(ledger, Ledger):
            self.ledger = ledger
        else:
            self.ledger = Ledger(ledger, create=create, clock=clock, passphrase=passphrase)
        self.developer_id = developer_id or default_developer(self.ledger).id
        self.agents = AgentsClient(self)
        self.consent = ConsentClient(self)
        self.tokens = TokensClient(self)
        self.grants = GrantsClient(self)
        self.policies = PoliciesClient(self)
        self.keys = KeysClient(self)
        self.audit = AuditClient(self)

    def authorize(self, params: Any = None, **kwargs: Any) -> AuthorizationRequest:
        """``authorize(agent_id=..., user_id=..., scopes=[...])`` or an ``AuthorizeParams``."""
        principal = _param(params, "user_id", kwargs) or kwargs.get("principal_id")
        if principal is None:
            raise InvalidInput("user_id (the principal) is required")
        return _authorization.authorize(
            self.ledger, self.developer_id,
            agent_id=_param(params, "agent_id", kwargs), principal_id=principal,
            scopes=_param(params, "scopes", kwargs), expires_in=_param(params, "expires_in", kwargs),
            redirect_uri=_param(params, "redirect_uri", kwargs),
            state=_param(params, "state", kwargs), audience=_param(params, "audience", kwargs),
            code_challenge=_param(params, "code_challenge", kwargs),
            code_challenge_method=_param(params, "code_challenge_method", kwargs),
        )

    def jwks(self) -> dict[str, Any]:
        return _keys.jwks(self.ledger)

    @property
    def issuer(self) -> str:
        return self.ledger.issuer

    def close(self) -> None:
        self.ledger.close()

    def __enter__(self) -> Grantex:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
