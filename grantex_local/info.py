"""A one-screen summary of a ledger (``grantex-local info``, the TUI header, the server's /health)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .clock import iso
from .developers import default_developer
from .founding import Ledger
from .ledger import PAST_ISSUERS
from .migrations import SCHEMA_VERSION


def summary(ledger: Ledger) -> dict[str, Any]:
    """Settings, keys and counts, each count one indexed query (fine on large ledgers)."""
    now = iso(ledger.now())
    active = ledger.query_one(
        "SELECT kid FROM signing_keys WHERE retired_at IS NULL ORDER BY created_at DESC LIMIT 1")

    def count(sql: str, *params: Any) -> int:
        row = ledger.query_one(sql, params)
        return int(row[0]) if row is not None else 0

    return {
        "path": str(Path(ledger.path).resolve()),
        "schemaVersion": SCHEMA_VERSION,
        "issuer": ledger.issuer,
        "jwksUrl": ledger.issuer + "/.well-known/jwks.json",
        # earlier issuers still accepted, so that tokens issued under them verify until they expire
        "pastIssuers": ledger.past_issuers(),
        "settings": {k: v for k, v in ledger.settings().items() if k != PAST_ISSUERS},
        "activeKid": active["kid"] if active is not None else None,
        "defaultDeveloper": default_developer(ledger).to_dict(),
        "counts": {
            "developers": count("SELECT count(*) FROM developers"),
            "agents": count("SELECT count(*) FROM agents WHERE status != 'deleted'"),
            "grants": count("SELECT count(*) FROM grants"),
            "activeGrants": count(
                "SELECT count(*) FROM grants WHERE revoked_at IS NULL AND expires_at > ?", now),
            "tokens": count("SELECT count(*) FROM tokens"),
            "liveTokens": count(
                "SELECT count(*) FROM tokens t JOIN grants g ON g.id = t.grant_id "
                "WHERE t.revoked_at IS NULL AND t.expires_at > ? AND g.revoked_at IS NULL", now),
            "pendingRequests": count(
                "SELECT count(*) FROM auth_requests WHERE status = 'pending' AND expires_at > ?", now),
            "auditEntries": count("SELECT count(*) FROM audit_entries"),
            "checkpoints": count("SELECT count(*) FROM audit_checkpoints"),
        },
    }
