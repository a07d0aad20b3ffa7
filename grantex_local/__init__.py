"""grantex-local: the Grantex authorization protocol for AI agents, in one SQLite file.

The public surface is re-exported here; modules are organised one concept each
(see the README's layout section).
"""

from __future__ import annotations

from .client import Grantex
from .errors import (
    AgentInactive,
    ChainBroken,
    DelegationDepthExceeded,
    GrantexLocalError,
    GrantRevoked,
    InvalidCode,
    InvalidExpiresIn,
    InvalidInput,
    InvalidRefreshToken,
    InvalidScope,
    InvalidState,
    LedgerBusy,
    LedgerCorrupt,
    LedgerError,
    LedgerNotFound,
    LedgerReadOnly,
    NotALedger,
    NotFound,
    PassphraseError,
    PolicyDenied,
    RefreshTokenReused,
    SchemaTooNew,
    ScopeNotCovered,
    TokenExpired,
    TokenInvalid,
)
from .ledger import Ledger
from .models import (
    Agent,
    AuthorizationRequest,
    AuthorizeParams,
    ConsentDecision,
    CreatePolicyParams,
    DelegateParams,
    ExchangeTokenParams,
    ExchangeTokenResponse,
    Grant,
    ListGrantsParams,
    Policy,
    RefreshTokenParams,
    RevokeResult,
    UpdatePolicyParams,
    VerifiedGrant,
    VerifyTokenResponse,
)
from .scopes import describe as describe_scope
from .verify import Verifier, verify_grant_token

__version__ = "0.1.0"

__all__ = [
    "Agent", "AgentInactive", "ChainBroken", "AuthorizationRequest", "AuthorizeParams", "ConsentDecision",
    "CreatePolicyParams", "DelegateParams", "DelegationDepthExceeded", "ExchangeTokenParams",
    "ExchangeTokenResponse", "Grant", "GrantRevoked", "Grantex", "GrantexLocalError",
    "InvalidCode", "InvalidExpiresIn", "InvalidInput", "InvalidRefreshToken", "InvalidScope",
    "InvalidState", "Ledger", "LedgerBusy", "LedgerCorrupt", "LedgerError", "LedgerNotFound",
    "LedgerReadOnly", "ListGrantsParams", "NotALedger", "NotFound", "PassphraseError", "Policy",
    "PolicyDenied", "RefreshTokenParams", "RefreshTokenReused", "RevokeResult", "SchemaTooNew",
    "ScopeNotCovered",
    "TokenExpired", "TokenInvalid", "UpdatePolicyParams", "VerifiedGrant", "Verifier",
    "VerifyTokenResponse", "describe_scope", "verify_grant_token", "__version__",
]
