"""Stored anomalies (SDK-SURFACE §3): what detection found, its acknowledgement, and the
per-developer response policy.

Why the detectors are not here: they are pandas code in :mod:`.analysis`, a floor above this one.
:mod:`.analysis.detection` runs them and hands this module plain :class:`Finding` objects, so the
library (and the server's cold path) never imports pandas to list or acknowledge.

Why a fingerprint: the reference server deletes every open anomaly and inserts them again on each
run, so ids change and an anomaly a person is looking at disappears. Here each finding carries a
stable fingerprint (type, grouping key, first audit seq); ``UNIQUE (developer_id, fingerprint)``
keeps the same anomaly from being stored twice, and an acknowledged one stays acknowledged.

Auditing: one ``grantex.anomaly.detected`` entry per newly stored anomaly (a run that finds
nothing new writes nothing), one ``grantex.anomaly.acknowledged`` per first acknowledgement, one
``grantex.anomaly.policy_changed`` per real change of the response policy.

The response policy defaults to ``alert_only``: a developer looping actions locally must not lose
every grant of an agent silently (the reference revokes always). ``revoke_agent_grants`` revokes
through :func:`.grants.revoke_and_record`, the normal path (cascade, audit entries,
``grant.revoked`` events), in the same transaction that stores the anomalies.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from . import errors, events
from .audit.trail import Appender, record
from .clock import iso
from .ids import new_id
from .text import check_text

if TYPE_CHECKING:
    from .founding import Ledger

MODES = ("alert_only", "revoke_agent_grants")
DEFAULT_MODE = "alert_only"
SEVERITIES = ("low", "medium", "high", "critical")
"""Ascending; the same scale as the analysis detectors."""
REVOKING_SEVERITIES = frozenset({"high", "critical"})
REVOKE_CAUSE = "anomaly_auto_revoke"

_COLUMNS = ("id, developer_id, type, severity, description, agent_id, principal_id, grant_id, "
            "metadata, detected_at, acknowledged_at, acknowledged_by")
_SEVERITY_ORDER = ("CASE severity WHEN 'critical' THEN 3 WHEN 'high' THEN 2 WHEN 'medium' THEN 1 "
                   "ELSE 0 END")


@dataclass(frozen=True)
class Finding:
    """One anomaly as a person reads it, before it is stored: what detection hands over."""

    type: str
    severity: str
    description: str
    key: tuple[str, ...]
    """What groups the evidence rows into this anomaly (agent and burst, grant and scope, ...)."""
    first_seq: int | None
    agent_id: str | None = None
    principal_id: str | None = None
    grant_id: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)

    @property
    def fingerprint(self) -> str:
        """Stable across runs: the same group of evidence always hashes the same."""
        text = json.dumps([self.type, list(self.key), self.first_seq], separators=(",", ":"))
        return hashlib.sha256(text.encode("utf-8")).hexdigest()[:32]


@dataclass(frozen=True)
class Anomaly:
    """A stored anomaly; :meth:`to_dict` is the SDK's shape with every key present."""

    id: str
    developer_id: str
    type: str
    severity: str
    description: str
    agent_id: str | None
    principal_id: str | None
    grant_id: str | None
    metadata: dict[str, Any]
    detected_at: str
    acknowledged_at: str | None
    acknowledged_by: str | None

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "type": self.type, "severity": self.severity,
                "description": self.description, "detectedAt": self.detected_at,
                "agentId": self.agent_id, "principalId": self.principal_id,
                "grantId": self.grant_id, "metadata": self.metadata,
                "acknowledgedAt": self.acknowledged_at}


@dataclass(frozen=True)
class DetectResult:
    """What one detection run changed.

    ``anomalies`` are the ones stored by this run (new); ``open_total`` counts every
    unacknowledged anomaly of the developer afterwards, so "nothing new" is never read as
    "nothing open".
    """

    detected_at: str
    anomalies: tuple[Anomaly, ...]
    response_mode: str
    revoked_grants: tuple[str, ...]
    open_total: int
    findings: int
    """How many findings detection handed over (new or already stored)."""

    def to_dict(self) -> dict[str, Any]:
        return {"detectedAt": self.detected_at, "total": len(self.anomalies),
                "anomalies": [a.to_dict() for a in self.anomalies],
                "responseMode": self.response_mode,
                "autoRevokedGrants": len(self.revoked_grants),
                "revokedGrantIds": list(self.revoked_grants),
                "openTotal": self.open_total, "findings": self.findings}


def _row(r: sqlite3.Row | Sequence[Any]) -> Anomaly:
    try:
        metadata = json.loads(r[8])
    except (TypeError, ValueError):
        metadata = {}
    return Anomaly(r[0], r[1], r[2], r[3], r[4], r[5], r[6], r[7],
                   metadata if isinstance(metadata, dict) else {}, r[9], r[10], r[11])


def _check_finding(f: Finding) -> None:
    if f.severity not in SEVERITIES:
        raise errors.InvalidInput(f"unknown anomaly severity {f.severity!r}")
    check_text(f.type, "anomaly type")
    check_text(f.description, "anomaly description")


def _mode(conn: sqlite3.Connection, developer_id: str) -> str:
    row = conn.execute("SELECT mode FROM anomaly_policy WHERE developer_id = ?", (developer_id,)).fetchone()
    return str(row[0]) if row is not None else DEFAULT_MODE


def _open_count(conn: sqlite3.Connection, developer_id: str) -> int:
    row = conn.execute("SELECT count(*) FROM anomalies WHERE developer_id = ? AND acknowledged_at IS NULL",
                       (developer_id,)).fetchone()
    return int(row[0])


def store(ledger: Ledger, developer_id: str, findings: Iterable[Finding]) -> DetectResult:
    """Store the findings not stored before, audit each new one, then apply the response policy,
    all in one transaction (a failure leaves neither anomalies nor revocations behind)."""
    found = list(findings)
    for f in found:
        _check_finding(f)
    with ledger.write() as conn:
        now = iso(ledger.now())
        mode = _mode(conn, developer_id)
        new: list[Anomaly] = []
        trail = Appender(ledger, conn, developer_id)
        for f in found:
            anomaly_id = new_id("anomaly")
            metadata_text = json.dumps(f.metadata, sort_keys=True, separators=(",", ":"), default=str)
            cursor = conn.execute(
                "INSERT INTO anomalies (id, developer_id, fingerprint, type, severity, description, "
                "agent_id, principal_id, grant_id, metadata, detected_at) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (developer_id, fingerprint) DO NOTHING",
                (anomaly_id, developer_id, f.fingerprint, f.type, f.severity, f.description,
                 f.agent_id, f.principal_id, f.grant_id, metadata_text, now))
            if cursor.rowcount != 1:
                continue
            new.append(Anomaly(anomaly_id, developer_id, f.type, f.severity, f.description, f.agent_id,
                               f.principal_id, f.grant_id, json.loads(metadata_text), now, None, None))
            trail.add(action="grantex.anomaly.detected", timestamp=now,
                      agent_id=f.agent_id, grant_id=f.grant_id, principal_id=f.principal_id,
                      metadata={"anomalyId": anomaly_id, "type": f.type, "severity": f.severity})
        trail.flush()
        revoked: list[str] = []
        if mode == "revoke_agent_grants":
            revoked = _auto_revoke(ledger, conn, developer_id, new, now)
        open_total = _open_count(conn, developer_id)
    return DetectResult(now, tuple(new), mode, tuple(revoked), open_total, len(found))


def _auto_revoke(ledger: Ledger, conn: sqlite3.Connection, developer_id: str,
                 new: Sequence[Anomaly], now: str) -> list[str]:
    """Every active grant of an agent with a new high or critical anomaly, and what descends
    from them, revoked the normal way."""
    from . import grants  # the grants namespace is only needed when the policy revokes

    serious = [a for a in new if a.severity in REVOKING_SEVERITIES and a.agent_id]
    agents = sorted({a.agent_id for a in serious if a.agent_id})
    if not agents:
        return []
    marks = ",".join("?" * len(agents))
    roots = [r[0] for r in conn.execute(
        f"SELECT id FROM grants WHERE developer_id = ? AND agent_id IN ({marks}) "
        "AND revoked_at IS NULL AND expires_at > ? ORDER BY id",
        [developer_id, *agents, now])]
    if not roots:
        return []
    revoked = grants.revoke_and_record(ledger, conn, roots, now, cause=REVOKE_CAUSE)
    if revoked:
        events.emit(ledger, conn, developer_id, "anomaly.auto_revoked",
                    {"revokedGrants": revoked, "anomalyCount": len(serious),
                     "agentIds": agents, "anomalyIds": [a.id for a in serious]})
    return revoked


def list_anomalies(ledger: Ledger, developer_id: str | None, *, unacknowledged: bool = False,
                   limit: int | None = None) -> list[Anomaly]:
    """Newest first (``developer_id=None``: every developer's, for the local administrator)."""
    sql = f"SELECT {_COLUMNS} FROM anomalies WHERE 1 = 1"
    params: list[Any] = []
    if developer_id is not None:
        sql += " AND developer_id = ?"
        params.append(developer_id)
    if unacknowledged:
        sql += " AND acknowledged_at IS NULL"
    sql += " ORDER BY detected_at DESC, id DESC"
    if limit is not None:
        sql += " LIMIT ?"
        params.append(int(limit))
    return [_row(r) for r in ledger.query(sql, params)]


def most_severe_open(ledger: Ledger, developer_id: str | None, limit: int = 3) -> tuple[int, list[Anomaly]]:
    """How many anomalies are open, and the ``limit`` most severe of them (newest first within
    a severity): what an overview shows without listing everything."""
    where = "acknowledged_at IS NULL"
    params: list[Any] = []
    if developer_id is not None:
        where += " AND developer_id = ?"
        params.append(developer_id)
    row = ledger.query_one(f"SELECT count(*) FROM anomalies WHERE {where}", params)
    count = int(row[0]) if row is not None else 0
    top = [_row(r) for r in ledger.query(
        f"SELECT {_COLUMNS} FROM anomalies WHERE {where} "
        f"ORDER BY {_SEVERITY_ORDER} DESC, detected_at DESC, id DESC LIMIT ?", [*params, int(limit)])]
    return count, top


def get_anomaly(ledger: Ledger, developer_id: str | None, anomaly_id: str) -> Anomaly:
    """One anomaly; NotFound for an unknown id or another developer's (never a hint it exists)."""
    if not isinstance(anomaly_id, str) or not anomaly_id:
        raise errors.NotFound("anomaly not found")
    sql = f"SELECT {_COLUMNS} FROM anomalies WHERE id = ?"
    params: list[Any] = [anomaly_id]
    if developer_id is not None:
        sql += " AND developer_id = ?"
        params.append(developer_id)
    row = ledger.query_one(sql, params)
    if row is None:
        raise errors.NotFound(f"anomaly {anomaly_id} not found")
    return _row(row)


def acknowledge(ledger: Ledger, developer_id: str | None, anomaly_id: str, *, by: str) -> Anomaly:
    """Mark an anomaly seen. Idempotent: a second acknowledgement keeps the first time and
    writes nothing. ``developer_id=None`` (the CLI, acting on the whole file) finds any
    developer's anomaly and records it in that developer's chain."""
    check_text(by, "acknowledged by")
    with ledger.write() as conn:
        current = get_anomaly(ledger, developer_id, anomaly_id)
        if current.acknowledged_at is not None:
            return current
        now = iso(ledger.now())
        conn.execute("UPDATE anomalies SET acknowledged_at = ?, acknowledged_by = ? "
                     "WHERE id = ? AND acknowledged_at IS NULL", (now, by, current.id))
        record(ledger, conn, current.developer_id, "grantex.anomaly.acknowledged", timestamp=now,
               agent_id=current.agent_id, grant_id=current.grant_id, principal_id=current.principal_id,
               metadata={"anomalyId": current.id, "type": current.type, "severity": current.severity,
                         "by": by})
    return get_anomaly(ledger, current.developer_id, current.id)


def get_policy(ledger: Ledger, developer_id: str) -> str:
    """The developer's response mode: ``alert_only`` unless changed."""
    row = ledger.query_one("SELECT mode FROM anomaly_policy WHERE developer_id = ?", (developer_id,))
    return str(row[0]) if row is not None else DEFAULT_MODE


def set_policy(ledger: Ledger, developer_id: str, mode: object) -> str:
    """Select what detection does with a new high or critical anomaly; audited when it changes."""
    if not isinstance(mode, str) or mode not in MODES:
        raise errors.InvalidInput("mode must be alert_only or revoke_agent_grants")
    with ledger.write() as conn:
        previous = _mode(conn, developer_id)
        if previous == mode:
            return mode
        now = iso(ledger.now())
        conn.execute("INSERT INTO anomaly_policy (developer_id, mode, updated_at) VALUES (?, ?, ?) "
                     "ON CONFLICT (developer_id) DO UPDATE SET mode = excluded.mode, "
                     "updated_at = excluded.updated_at", (developer_id, mode, now))
        record(ledger, conn, developer_id, "grantex.anomaly.policy_changed", timestamp=now,
               metadata={"mode": mode, "previous": previous})
    return mode
