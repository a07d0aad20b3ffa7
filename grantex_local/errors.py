"""One exception family for everything the library refuses.

Callers catch :class:`GrantexLocalError` (or a subclass) and never sqlite3,
jwt or cryptography errors: those are translated where they arise, so the
CLI, TUI and server can map an error to an exit code or an HTTP status from
its class alone.
"""

from __future__ import annotations

from typing import ClassVar


class GrantexLocalError(Exception):
    """Base of every error grantex-local raises on purpose.

    ``code`` is the machine-readable name the REST API returns; ``status`` the
    HTTP status it maps to.
    """

    code = "ERROR"
    status = 400

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


# ── the ledger file ──────────────────────────────────────────────────────────


class LedgerError(GrantexLocalError):
    """The ledger file itself cannot be used."""

    code = "LEDGER_ERROR"
    status = 500


class NotALedger(LedgerError):
    code = "NOT_A_LEDGER"


class LedgerCorrupt(LedgerError):
    code = "LEDGER_CORRUPT"


class SchemaTooNew(LedgerError):
    code = "SCHEMA_TOO_NEW"


class LedgerReadOnly(LedgerError):
    code = "LEDGER_READ_ONLY"


class LedgerNotFound(LedgerError):
    code = "LEDGER_NOT_FOUND"


class LedgerBusy(LedgerError):
    code = "LEDGER_BUSY"
    status = 503


class PassphraseError(LedgerError):
    """The private keys are encrypted and the passphrase is missing or wrong."""

    code = "PASSPHRASE_ERROR"


# ── requests the caller got wrong ────────────────────────────────────────────


class InvalidInput(GrantexLocalError):
    code = "BAD_REQUEST"
    status = 400


class InvalidScope(InvalidInput):
    code = "INVALID_SCOPE"


class InvalidExpiresIn(InvalidInput):
    code = "INVALID_EXPIRES_IN"


class ScopeNotCovered(InvalidInput):
    code = "SCOPE_NOT_COVERED"

    def __init__(self, message: str, scopes: list[str]) -> None:
        super().__init__(message)
        self.scopes = scopes


class DelegationDepthExceeded(InvalidInput):
    code = "DELEGATION_DEPTH_EXCEEDED"


class InvalidCode(InvalidInput):
    """An authorization code that is unknown, spent, expired or mismatched."""

    code = "INVALID_CODE"


class InvalidRefreshToken(InvalidInput):
    code = "INVALID_REFRESH_TOKEN"


class RefreshTokenReused(InvalidRefreshToken):
    """A spent refresh token came back: the grant's live tokens were revoked."""

    code = "REFRESH_TOKEN_REUSED"


class AgentInactive(InvalidInput):
    """The agent exists but is suspended or deleted."""

    code = "AGENT_INACTIVE"


class InvalidState(InvalidInput):
    """The object exists but is not in a state that allows this operation."""

    code = "INVALID_STATE"


class NotFound(GrantexLocalError):
    code = "NOT_FOUND"
    status = 404


class PolicyDenied(GrantexLocalError):
    code = "POLICY_DENIED"
    status = 403

    def __init__(self, message: str, policy_id: str, auth_request_id: str | None = None) -> None:
        super().__init__(message)
        self.policy_id = policy_id
        self.auth_request_id = auth_request_id


# ── token verification ───────────────────────────────────────────────────────


class TokenInvalid(GrantexLocalError):
    """A grant token failed verification; ``reason`` says which check."""

    code = "TOKEN_INVALID"
    status = 401

    def __init__(self, message: str, reason: str = "invalid") -> None:
        super().__init__(message)
        self.reason = reason


class TokenExpired(TokenInvalid):
    code = "TOKEN_EXPIRED"


class GrantRevoked(TokenInvalid):
    code = "GRANT_REVOKED"


# ── the audit trail ──────────────────────────────────────────────────────────


class ChainBroken(GrantexLocalError):
    """The audit chain (or a checkpoint, proof or export) does not verify.

    ``seq`` is the first entry where the break shows; ``reason`` one of
    ``content_changed``, ``link_broken``, ``seq_gap``, ``order_changed``,
    ``inserted``, ``timestamp_backwards``, ``tail_deleted``, ``rewritten``.
    """

    code = "CHAIN_BROKEN"
    status = 409

    def __init__(self, seq: int, reason: str, message: str) -> None:
        super().__init__(f"audit chain broken at seq {seq} ({reason}): {message}")
        self.seq = seq
        self.reason = reason
        self.detail = message


# ── who may decide a consent request ─────────────────────────────────────────


class SessionInvalid(GrantexLocalError):
    """A principal session token failed verification; ``reason`` says which check."""

    code = "INVALID_SESSION"
    status = 401

    def __init__(self, message: str, reason: str = "invalid") -> None:
        super().__init__(message)
        self.reason = reason


class ApprovalRequired(GrantexLocalError):
    """A consent decision came without proof that the person it names (or the local human) made it."""

    code = "APPROVAL_REQUIRED"
    status = 403


class DecisionRefused(GrantexLocalError):
    """A decision grant (or an approval) was refused; ``sub_reason`` is the SDK's
    ``DecisionSubReason`` value, and the status one the SDK maps back to that sub-reason."""

    code = "DECISION_REFUSED"
    STATUSES: ClassVar[dict[str, int]] = {"malformed": 400, "unknown_grant": 404, "wrong_agent": 403,
                                          "four_eyes_incomplete": 403, "expired": 410, "revoked": 410}
    """Every other sub-reason (consumed, action_mismatch, case_changed, ...) is a 409 conflict."""

    def __init__(self, sub_reason: str, message: str) -> None:
        super().__init__(message)
        self.sub_reason = sub_reason
        self.status = self.STATUSES.get(sub_reason, 409)


class VaultLocked(GrantexLocalError):
    """The credential vault cannot encrypt or decrypt: the ledger was opened without a
    passphrase (and without ``--insecure-store``), or with one that does not open the vault."""

    code = "VAULT_LOCKED"
    status = 409


class InsufficientScope(GrantexLocalError):
    """A live grant token whose scopes do not allow what it was presented for."""

    code = "INSUFFICIENT_SCOPE"
    status = 403
