"""Compliance views of one developer's ledger: summary, grants and audit exports, evidence packs.

These are the answers of ``/v1/compliance/*`` (SDK-SURFACE §4). They are built
from the same allow-listed rows as ``grantex-local export`` (:mod:`.export`),
never a second serialisation, so what an auditor reads in a pack is what a
bundle holds. The evidence pack is signed with the ledger's Ed25519
checkpoint key over :func:`.export.pack_signed_bytes` (canonical JSON of the
pack without its ``signature``), and each audit entry carries its stored
preimage, so ``grantex-local verify-export PACK`` checks it offline.

Windows: ``since`` is inclusive and ``until`` exclusive; grants are windowed
by ``issuedAt``, audit entries by ``timestamp``. Grant status is the derived
one (an active grant past its expiry reads "expired"), unlike the hosted
reference, which reports the raw column.
"""

from __future__ import annotations

import base64
import contextlib
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from . import grants, policies
from .audit import checkpoints
from .audit.chain import verify_rows
from .audit.note import Checkpoint
from .audit.stored import stored_checkpoints
from .audit.trail import STATUSES as AUDIT_STATUSES
from .clock import iso
from .errors import ChainBroken, InvalidInput
from .export import (
    PACK_SCHEMA_VERSION,
    PACK_SIGNED_OVER,
    allowed,
    audit_row,
    chain_bytes,
    pack_signed_bytes,
    stored_text,
)
from .text import check_optional_text

if TYPE_CHECKING:
    from .founding import Ledger

PLAN = "local"
FRAMEWORKS = ("soc2", "gdpr", "all")
GRANT_STATUSES = grants.STATUSES
_GRANT_KEYS = ("revokedAt", "parentGrantId")
"""Grant keys the bundle row leaves out when empty but the hosted export always carries (as null)."""
_POLICY_KEYS = ("id", "name", "effect", "priority", "agentId", "principalId", "scopes", "timeOfDayStart",
                "timeOfDayEnd", "createdAt", "updatedAt")


def _bound(value: str | None, name: str) -> str | None:
    """An ISO-8601 bound normalised to the ledger's stamp form (so text comparison is time order)."""
    if value is None:
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except (ValueError, AttributeError, TypeError):
        raise InvalidInput(f"{name} must be an ISO-8601 time such as 2026-02-01T12:00:00Z, "
                           f"not {value!r}") from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return iso(parsed.timestamp())


def _window(since: str | None, until: str | None) -> tuple[str | None, str | None]:
    lo, hi = _bound(since, "since"), _bound(until, "until")
    if lo is not None and hi is not None and hi < lo:
        raise InvalidInput("until must not be before since")
    return lo, hi


def _inside(stamp: str, lo: str | None, hi: str | None) -> bool:
    return (lo is None or stamp >= lo) and (hi is None or stamp < hi)


def _choice(value: str | None, name: str, allowed_values: tuple[str, ...]) -> None:
    if value is not None and value not in allowed_values:
        raise InvalidInput(f"{name} must be one of {', '.join(allowed_values)}, not {value!r}")


def _echo(out: dict[str, Any], since: str | None, until: str | None) -> dict[str, Any]:
    """Echo the bounds as the caller gave them, and only when given (as the hosted service does)."""
    if since is not None:
        out["since"] = since
    if until is not None:
        out["until"] = until
    return out


# ── the parts, each read inside the caller's snapshot ────────────────────────


def _grant_rows(ledger: Ledger, developer_id: str, lo: str | None, hi: str | None,
                status: str | None = None) -> list[dict[str, Any]]:
    return [_with_nulls(allowed("grants", g.to_dict()), _GRANT_KEYS)
            for g in grants.list_grants(ledger, developer_id, status=status) if _inside(g.issued_at, lo, hi)]


def _with_nulls(row: dict[str, Any], keys: tuple[str, ...]) -> dict[str, Any]:
    for key in keys:
        row.setdefault(key, None)
    return row


def _policy_rows(ledger: Ledger, developer_id: str) -> list[dict[str, Any]]:
    return [_with_nulls(allowed("policies", p.to_dict()), _POLICY_KEYS)
            for p in policies.list_policies(ledger, developer_id)]


def _counts(ledger: Ledger, developer_id: str, lo: str | None, hi: str | None) -> dict[str, Any]:
    """The summary's four count objects (agents and policies are not windowed: they have no
    issue time the hosted service filters by)."""
    agent_rows = ledger.query(
        "SELECT status, count(*) AS n FROM agents WHERE developer_id = ? GROUP BY status", (developer_id,))
    by_status = {r["status"]: int(r["n"]) for r in agent_rows}
    grant_rows = _grant_rows(ledger, developer_id, lo, hi)
    sql = "SELECT status, count(*) AS n FROM audit_entries WHERE developer_id = ?"
    params: list[str] = [developer_id]
    if lo is not None:
        sql += " AND timestamp >= ?"
        params.append(lo)
    if hi is not None:
        sql += " AND timestamp < ?"
        params.append(hi)
    audit_counts = {r["status"]: int(r["n"]) for r in ledger.query(sql + " GROUP BY status", params)}
    policy_total = ledger.query_one("SELECT count(*) FROM policies WHERE developer_id = ?", (developer_id,))
    return {
        "agents": {"total": sum(by_status.values()), "active": by_status.get("active", 0),
                   "suspended": by_status.get("suspended", 0),
                   # the hosted service's "revoked" agent is this ledger's deleted one
                   "revoked": by_status.get("deleted", 0)},
        "grants": {"total": len(grant_rows),
                   **{s: sum(1 for g in grant_rows if g["status"] == s) for s in GRANT_STATUSES}},
        "auditEntries": {"total": sum(audit_counts.values()),
                         **{s: audit_counts.get(s, 0) for s in AUDIT_STATUSES}},
        "policies": {"total": int(policy_total[0]) if policy_total is not None else 0},
    }


# ── the four answers ─────────────────────────────────────────────────────────


def summary(ledger: Ledger, developer_id: str, *, since: str | None = None,
            until: str | None = None) -> dict[str, Any]:
    """Counts of agents, grants, audit entries and policies, plus ``plan`` (the SDK requires it)."""
    lo, hi = _window(since, until)
    with ledger.read():
        out = {"generatedAt": iso(ledger.now()), **_counts(ledger, developer_id, lo, hi), "plan": PLAN}
    return _echo(out, since, until)


def export_grants(ledger: Ledger, developer_id: str, *, since: str | None = None, until: str | None = None,
                  status: str | None = None) -> dict[str, Any]:
    """Every grant issued in the window (oldest first), as the bundle's rows."""
    lo, hi = _window(since, until)
    _choice(status, "status", GRANT_STATUSES)
    with ledger.read():
        generated = iso(ledger.now())
        rows = _grant_rows(ledger, developer_id, lo, hi, status)
    return {"generatedAt": generated, "total": len(rows), "grants": rows}


def export_audit(ledger: Ledger, developer_id: str, *, since: str | None = None, until: str | None = None,
                 agent_id: str | None = None, status: str | None = None) -> dict[str, Any]:
    """The developer's audit entries in the window, oldest first, as the bundle's rows (with each
    entry's stored preimage, from which its hash can be recomputed)."""
    lo, hi = _window(since, until)
    _choice(status, "status", AUDIT_STATUSES)
    check_optional_text(agent_id, "agentId")  # SQLite cannot bind a lone surrogate
    sql = "SELECT seq, CAST(preimage AS BLOB), hash FROM audit_entries WHERE developer_id = ?"
    params: list[str] = [developer_id]
    for clause, value in ((" AND agent_id = ?", agent_id), (" AND status = ?", status),
                          (" AND timestamp >= ?", lo), (" AND timestamp < ?", hi)):
        if value is not None:
            sql += clause
            params.append(value)
    with ledger.read():
        generated = iso(ledger.now())
        cursor = ledger.conn.cursor()
        cursor.row_factory = None
        with contextlib.closing(cursor.execute(sql + " ORDER BY seq", params)):
            rows = [audit_row(seq, stored_text(seq, stored), digest) for seq, stored, digest in cursor]
    return {"generatedAt": generated, "total": len(rows), "entries": rows}


def _chain_and_window(ledger: Ledger, developer_id: str, lo: str | None,
                      hi: str | None) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """(chainIntegrity, the window's entries): one pass over the developer's whole chain through
    the ledger's own verifier (and its stored checkpoints), keeping the window's rows as it goes.

    A broken chain is reported, not raised: the pack is evidence, and a break is
    part of it. Rows after the break are still listed (unverified), so the pack
    then fails ``verify-export`` too, at the same entry.
    """
    window: list[dict[str, Any]] = []
    ids: dict[int, str] = {}

    def rows(cursor: Iterable[tuple[int, bytes | str, str]]) -> Iterator[tuple[int, str, str]]:
        for seq, stored, digest in cursor:
            text = stored_text(seq, stored)
            row = audit_row(seq, text, digest)
            ids[seq] = row["entryId"]
            if _inside(row["timestamp"], lo, hi):
                window.append(row)
            yield seq, text, digest

    stored: list[tuple[str, Checkpoint]] = []
    with contextlib.closing(chain_bytes(ledger, developer_id)) as cursor:
        source = rows(cursor)
        try:
            stored = stored_checkpoints(ledger, developer_id)  # a forged one is a break too
            report = verify_rows(source, developer_id=developer_id, checkpoints=[c for _, c in stored],
                                 with_root=False)
            integrity: dict[str, Any] = {
                "valid": True, "checkedEntries": report.entries, "firstBrokenAt": None, "reason": None,
                "headHash": report.head_hash, "storedCheckpointsChecked": len(stored)}
        except ChainBroken as exc:
            for _ in source:  # the rest, listed as stored
                pass
            integrity = {"valid": False, "checkedEntries": max(exc.seq - 1, 0),
                         "firstBrokenAt": ids.get(exc.seq, f"seq {exc.seq}"),
                         "reason": "content" if exc.reason == "content_changed" else "link",
                         "detail": exc.detail, "seq": exc.seq, "storedCheckpointsChecked": len(stored)}
    return integrity, window


def evidence_pack(ledger: Ledger, developer_id: str, *, since: str | None = None, until: str | None = None,
                  framework: str | None = None) -> dict[str, Any]:
    """The signed evidence pack: summary, grants, audit entries and policies of the window, with
    the whole chain's integrity as the ledger's verifier sees it."""
    lo, hi = _window(since, until)
    framework = "all" if framework is None else framework
    _choice(framework, "framework", FRAMEWORKS)
    key_text = checkpoints.verifier_key(ledger)  # before the snapshot: creating the key writes
    with ledger.read():
        meta = _echo({"schemaVersion": PACK_SCHEMA_VERSION, "generatedAt": iso(ledger.now()),
                      "framework": framework}, since, until)
        meta.update(ledgerId=ledger.setting("ledger_id"), issuer=ledger.issuer, developerId=developer_id)
        pack: dict[str, Any] = {
            "meta": meta,
            "summary": _echo({**_counts(ledger, developer_id, lo, hi), "plan": PLAN}, since, until),
            "grants": _grant_rows(ledger, developer_id, lo, hi),
            "policies": _policy_rows(ledger, developer_id),
        }
        pack["chainIntegrity"], pack["auditEntries"] = _chain_and_window(ledger, developer_id, lo, hi)
    key_name, raw = checkpoints.sign_bytes(ledger, pack_signed_bytes(pack))
    pack["signature"] = {"algorithm": "Ed25519", "keyName": key_name,
                         "value": base64.b64encode(raw).decode(), "checkpointKey": key_text,
                         "signedOver": PACK_SIGNED_OVER}
    return pack


__all__ = ["FRAMEWORKS", "PLAN", "evidence_pack", "export_audit", "export_grants", "summary"]
