"""grantex-local: the Grantex authorization protocol for AI agents, in one SQLite file.

The public surface is re-exported here; modules are organised one concept each
(see the README's layout section).

The names are loaded on first use (PEP 562 ``__getattr__``), so ``import
grantex_local`` stays cheap and a command line that verifies one token does not
pay for the REST client, exports or policies. ``from grantex_local import X``
works for every name in ``__all__`` as before.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # what type checkers and IDEs see; at run time __getattr__ imports these on demand
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
    from .founding import Ledger
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

_SOURCES: dict[str, tuple[str, ...]] = {
    "client": ("Grantex",),
    "errors": (
        "AgentInactive", "ChainBroken", "DelegationDepthExceeded", "GrantexLocalError", "GrantRevoked",
        "InvalidCode", "InvalidExpiresIn", "InvalidInput", "InvalidRefreshToken", "InvalidScope",
        "InvalidState", "LedgerBusy", "LedgerCorrupt", "LedgerError", "LedgerNotFound", "LedgerReadOnly",
        "NotALedger", "NotFound", "PassphraseError", "PolicyDenied", "RefreshTokenReused", "SchemaTooNew",
        "ScopeNotCovered", "TokenExpired", "TokenInvalid",
    ),
    "founding": ("Ledger",),
    "models": (
        "Agent", "AuthorizationRequest", "AuthorizeParams", "ConsentDecision", "CreatePolicyParams",
        "DelegateParams", "ExchangeTokenParams", "ExchangeTokenResponse", "Grant", "ListGrantsParams",
        "Policy", "RefreshTokenParams", "RevokeResult", "UpdatePolicyParams", "VerifiedGrant",
        "VerifyTokenResponse",
    ),
    "verify": ("Verifier", "verify_grant_token"),
}
_RENAMED = {"describe_scope": ("scopes", "describe")}
_LAZY: dict[str, tuple[str, str]] = {
    **{name: (module, name) for module, names in _SOURCES.items() for name in names},
    **_RENAMED,
}


def __getattr__(name: str) -> object:
    """Import a public name's module the first time the name is asked for (PEP 562)."""
    try:
        module, attribute = _LAZY[name]
    except KeyError:  # also how ``from grantex_local import agents`` falls back to the submodule
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}") from None
    value = getattr(import_module(f".{module}", __name__), attribute)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
