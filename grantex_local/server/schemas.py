"""Request bodies, in the SDK's camelCase (PROTOCOL §13).

These models exist for three reasons: the OpenAPI document at ``/openapi.json`` (and the
docs at ``/docs``) describe every body; a body of the wrong shape is a 400 before the library
is called; and an unknown field is refused rather than silently dropped (``extra="forbid"``),
because a dropped field can change what a client believes it asked for. The library still
checks every value's meaning (scope grammar, expiresIn, ids, ...).

Fields the official SDK can send but grantex-local does not implement are declared so they
can be refused by name with a clear message (see :func:`refuse_unsupported`).
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

from ..text import check_json, check_text
from .errors import ApiError


class Body(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    @model_validator(mode="before")
    @classmethod
    def _text_only(cls, data: Any) -> Any:
        """Every string of the body, lookups included, must be text the ledger can hold: JSON
        lets ``"\\ud800"`` through as a lone surrogate, which SQLite cannot bind and no reader
        can print. The library's own error (a 400 naming the field, the character and where) is
        raised from here, before any route code runs."""
        if isinstance(data, dict):
            for key, value in data.items():
                if isinstance(key, str):
                    check_text(key, "a field name")
                    check_json(value, key)
        return data


def refuse_unsupported(body: BaseModel, *names: str) -> None:
    """400 for an SDK field grantex-local does not implement, when it was actually given."""
    for name in names:
        value = getattr(body, name, None)
        if value not in (None, [], {}):
            raise ApiError(400, "UNSUPPORTED", f"{name} is not supported by grantex-local")


class RegisterAgent(Body):
    name: str
    description: str | None = None
    scopes: list[str] | None = None
    redirectUris: list[str] | None = None
    publicJwk: dict[str, Any] | None = Field(None, description="The agent's own public key (OKP/Ed25519).")
    status: str | None = Field(None, description="Only 'active' at registration.")
    resourceServers: list[str] | None = Field(None, description="Not supported (refused when non-empty).")


class UpdateAgent(Body):
    name: str | None = None
    description: str | None = None
    scopes: list[str] | None = None
    redirectUris: list[str] | None = None
    status: str | None = Field(None, description="'active' or 'suspended'.")
    statusReason: str | None = Field(None, description="Accepted; recorded nowhere.")
    publicJwk: dict[str, Any] | None = Field(None, description="Rotates the agent's key to this one.")
    resourceServers: list[str] | None = Field(None, description="Not supported (refused when non-empty).")


class Authorize(Body):
    agentId: str
    principalId: str
    scopes: list[str]
    expiresIn: str | None = Field(None, description="e.g. '1h'; default '24h'.")
    redirectUri: str | None = None
    state: str | None = None
    audience: str | None = None
    codeChallenge: str | None = None
    codeChallengeMethod: str | None = None
    purpose: str | None = Field(None, description="Not supported (refused).")
    dataRegion: str | None = Field(None, description="Not supported (refused).")


class Exchange(Body):
    code: str
    agentId: str
    codeVerifier: str | None = None
    redirectUri: str | None = None
    credentialFormat: str | None = Field(None, description="Only 'jwt'.")


class Refresh(Body):
    refreshToken: str
    agentId: str


class TokenBody(BaseModel):
    """``{token}``; any value is accepted, since verify answers ``valid: false`` for garbage."""

    model_config = ConfigDict(extra="ignore")
    token: Any = None


class RevokeToken(Body):
    jti: str


class Delegate(Body):
    parentGrantToken: str
    subAgentId: str
    scopes: list[str]
    expiresIn: str | None = Field(None, description="Default '1h'; never beyond the parent's expiry.")


class LogAudit(Body):
    agentId: str
    grantId: str
    action: str
    agentDid: str | None = None
    principalId: str | None = None
    metadata: dict[str, Any] | None = None
    status: str | None = Field(None, description="'success' (default), 'failure' or 'blocked'.")


class CreatePolicy(Body):
    name: str
    effect: str = Field(description="allow, deny, auto_approve or auto_deny.")
    priority: int = 0
    agentId: str | None = None
    principalId: str | None = None
    scopes: list[str] | None = None
    timeOfDayStart: str | None = Field(None, description="HH:MM, UTC.")
    timeOfDayEnd: str | None = Field(None, description="HH:MM, UTC.")
    timeWindow: dict[str, Any] | None = Field(None, description="{startHour, endHour, days?, tz?}.")


class UpdatePolicy(Body):
    name: str | None = None
    effect: str | None = None
    priority: int | None = None
    agentId: str | None = None
    principalId: str | None = None
    scopes: list[str] | None = None
    timeOfDayStart: str | None = None
    timeOfDayEnd: str | None = None
    timeWindow: dict[str, Any] | None = None
