"""Appending to and reading the hash chain (PROTOCOL §10).

One chain per developer. Appends run inside ``BEGIN IMMEDIATE`` (the
caller's write transaction), so they are serialised across processes: each
entry takes the next ``seq``, links to the head's hash, never gets a time
stamp or id that sorts before the head's, and the chain cannot fork. The
Merkle nodes completed by the append are stored in the same transaction.
"""

from __future__ import annotations

import hashlib
import json
import re
import sqlite3
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ulid import ULID

from .. import errors
from ..clock import iso
from ..ids import new_id
from ..models import AuditEntry
from . import merkle
from .hashing import canonical_json, preimage_text

if TYPE_CHECKING:
    from ..ledger import Ledger

STATUSES = ("success", "failure", "blocked")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
STORED_LEVEL = 4
"""Merkle nodes below this level are recomputed from entry hashes (at most 8 rows), not stored:
storing every level would write two node rows per entry, this writes about one per eight."""
LIFECYCLE_PREFIX = "grantex."
MAX_ACTION = 200
MAX_METADATA_BYTES = 64 * 1024


@dataclass
class _Head:
    seq: int
    hash: str
    id: str
    timestamp: str


class Appender:
    """Appends to one developer's chain inside the caller's write transaction."""

    def __init__(self, ledger: Ledger, conn: sqlite3.Connection, developer_id: str) -> None:
        self.ledger = ledger
        self.conn = conn
        self.developer_id = developer_id
        row = conn.execute(
            "SELECT seq, hash, id, timestamp FROM audit_entries WHERE developer_id = ? "
            "ORDER BY seq DESC LIMIT 1", (developer_id,)).fetchone()
        self.head = _Head(row[0], row[1], row[2], row[3]) if row else None
        self._nodes: dict[tuple[int, int], bytes] = {}
        self._now: str | None = None
        self._entry_rows: list[tuple[int, str, str]] = []
        self._node_rows: list[tuple[str, int, int, bytes]] = []

    def _node(self, level: int, index: int) -> bytes:
        cached = self._nodes.get((level, index))
        if cached is not None:
            return cached
        return tree_node(self.conn, self.developer_id, level, index)

    def _next_id(self) -> str:
        entry_id = new_id("audit")
        if self.head is not None and entry_id <= self.head.id:
            # Another process minted the head in this millisecond: keep ids ordered.
            entry_id = "alog_" + str(ULID.from_int(int(ULID.from_str(self.head.id[5:])) + 1))
        return entry_id

    def add(self, *, action: str, status: str = "success", metadata: Mapping[str, Any] | None = None,
            agent_id: str | None = None, agent_did: str | None = None, grant_id: str | None = None,
            principal_id: str | None = None, timestamp: str | None = None,
            metadata_text: str | None = None) -> AuditEntry:
        """Queue one entry (written by :meth:`flush`, which the caller must call).

        ``metadata_text`` is the canonical JSON of ``metadata`` when already computed.
        """
        head = self.head
        if timestamp is None:
            if self._now is None:  # one instant for everything one transaction appends
                self._now = iso(self.ledger.now())
            timestamp = self._now
        stamp = timestamp
        if head is not None and stamp < head.timestamp:
            stamp = head.timestamp  # time never goes backwards within a chain
        fields = {
            "id": self._next_id(), "agentId": agent_id, "agentDid": agent_did, "grantId": grant_id,
            "principalId": principal_id, "developerId": self.developer_id, "action": action,
            "timestamp": stamp, "prevHash": head.hash if head else None, "status": status,
        }
        meta_text = metadata_text if metadata_text is not None else canonical_json(dict(metadata or {}))
        text = preimage_text(fields, None, meta_text)
        digest = hashlib.sha256(text.encode("utf-8")).hexdigest()
        seq = head.seq + 1 if head else 1
        self._entry_rows.append((seq, text, digest))
        for level, index, h in merkle.new_nodes(seq - 1, merkle.leaf_hash(digest), self._node):
            self._nodes[(level, index)] = h
            if level >= STORED_LEVEL:
                self._node_rows.append((self.developer_id, level, index, h))
        self.head = _Head(seq, digest, fields["id"], stamp)
        return AuditEntry(fields["id"], seq, agent_id, agent_did, grant_id, principal_id,
                          self.developer_id, action, json.loads(meta_text), status, stamp,
                          digest, fields["prevHash"])

    def flush(self) -> None:
        if self._entry_rows:
            self.conn.executemany("INSERT INTO audit_entries (seq, preimage, hash) VALUES (?, ?, ?)",
                                  self._entry_rows)
            self.conn.executemany(
                "INSERT INTO audit_merkle (developer_id, level, idx, hash) VALUES (?, ?, ?, ?)",
                self._node_rows)
        self._entry_rows.clear()
        self._node_rows.clear()


def tree_node(conn: sqlite3.Connection, developer_id: str, level: int, index: int) -> bytes:
    """The hash of perfect subtree (level, index): stored, or folded from its entries' hashes."""
    if level >= STORED_LEVEL:
        row = conn.execute("SELECT hash FROM audit_merkle WHERE developer_id = ? AND level = ? AND idx = ?",
                           (developer_id, level, index)).fetchone()
        if row is None:
            raise errors.ChainBroken(index * (1 << level) + 1, "rewritten",
                                     f"the Merkle tree is missing node ({level}, {index})")
        return bytes(row[0])
    width = 1 << level
    first = index * width + 1
    hashes = [r[0] for r in conn.execute(
        "SELECT hash FROM audit_entries WHERE developer_id = ? AND seq BETWEEN ? AND ? ORDER BY seq",
        (developer_id, first, first + width - 1))]
    if len(hashes) != width:
        raise errors.ChainBroken(first, "seq_gap", f"entries {first}..{first + width - 1} are not all there")
    return merkle.root_of([merkle.leaf_hash(h) for h in hashes])


def record(ledger: Ledger, conn: sqlite3.Connection, developer_id: str, action: str,
           **fields: Any) -> AuditEntry:
    """Write one lifecycle event in the caller's transaction."""
    appender = Appender(ledger, conn, developer_id)
    entry = appender.add(action=action, **fields)
    appender.flush()
    return entry


# ── the SDK's audit.log ──────────────────────────────────────────────────────


def _validated(ledger: Ledger, developer_id: str, item: Mapping[str, Any],
               seen: dict[tuple[str, str], Any]) -> dict[str, Any]:
    """Check one entry against the ledger; returns the fields to append.

    ``seen`` caches agent and grant lookups across one batch.
    """
    unknown = set(item) - {"agent_id", "grant_id", "action", "status", "metadata", "agent_did",
                           "principal_id"}
    if unknown:
        raise errors.InvalidInput(f"unknown audit fields: {', '.join(sorted(unknown))}")
    agent_id, grant_id, action = item.get("agent_id"), item.get("grant_id"), item.get("action")
    for name, value in (("agentId", agent_id), ("grantId", grant_id), ("action", action)):
        if not isinstance(value, str) or not value:
            raise errors.InvalidInput(f"{name} must be a non-empty string")
    assert isinstance(action, str)
    if len(action) > MAX_ACTION or _CONTROL.search(action):
        raise errors.InvalidInput(f"action must be at most {MAX_ACTION} printable characters")
    if action.startswith(LIFECYCLE_PREFIX):
        raise errors.InvalidInput(f"actions starting with {LIFECYCLE_PREFIX!r} are reserved for the ledger")
    status = item.get("status") or "success"
    if status not in STATUSES:
        raise errors.InvalidInput(f"status must be one of {', '.join(STATUSES)}, not {status!r}")
    metadata = item.get("metadata")
    if metadata is None:
        metadata = {}
    if not isinstance(metadata, Mapping):
        raise errors.InvalidInput("metadata must be a JSON object")
    metadata_text = canonical_json(metadata)
    if len(metadata_text) > MAX_METADATA_BYTES:  # characters: a cheap first bound
        raise errors.InvalidInput(f"metadata is larger than {MAX_METADATA_BYTES} bytes")
    if ("grant", grant_id) not in seen:
        seen[("grant", grant_id)] = ledger.query_one(
            "SELECT g.agent_id, g.principal_id, g.developer_id FROM grants g WHERE g.id = ?", (grant_id,))
    if ("agent", agent_id) not in seen:
        seen[("agent", agent_id)] = ledger.query_one(
            "SELECT developer_id, did FROM agents WHERE id = ?", (agent_id,))
    row, agent = seen[("grant", grant_id)], seen[("agent", agent_id)]
    if agent is None or agent["developer_id"] != developer_id:
        raise errors.NotFound(f"agent {agent_id} not found")
    if row is None or row["developer_id"] != developer_id:
        raise errors.NotFound(f"grant {grant_id} not found")
    if row["agent_id"] != agent_id:
        raise errors.InvalidInput(f"grant {grant_id} does not belong to agent {agent_id}")
    agent_did, principal_id = item.get("agent_did"), item.get("principal_id")
    if agent_did is not None and agent_did != agent["did"]:
        raise errors.InvalidInput(f"agentDid does not match agent {agent_id}")
    if principal_id is not None and principal_id != row["principal_id"]:
        raise errors.InvalidInput(f"principalId does not match grant {grant_id}")
    return {"agent_id": agent_id, "agent_did": agent["did"], "grant_id": grant_id,
            "principal_id": row["principal_id"], "action": action, "status": status,
            "metadata": metadata, "metadata_text": metadata_text}


def log(ledger: Ledger, developer_id: str, **item: Any) -> AuditEntry:
    """Append one action (``agent_id, grant_id, action, status, metadata``) to the chain.

    Actions under a revoked or expired grant are recorded all the same: the
    log records what happened, and the entry is flagged when read.
    """
    return log_many(ledger, developer_id, [item])[0]


def log_many(ledger: Ledger, developer_id: str, items: Iterable[Mapping[str, Any]]) -> list[AuditEntry]:
    """Append many actions in one transaction: all of them or, on any bad item, none."""
    checked = []
    seen: dict[tuple[str, str], Any] = {}
    for position, item in enumerate(items):
        try:
            checked.append(_validated(ledger, developer_id, item, seen))
        except errors.GrantexLocalError as exc:
            if position == 0 and not checked:
                raise
            raise type(exc)(f"entry {position}: {exc.message}") from None
    with ledger.write() as conn:
        appender = Appender(ledger, conn, developer_id)
        out = [appender.add(**fields) for fields in checked]
        appender.flush()
    return out


# ── reading ──────────────────────────────────────────────────────────────────

_SELECT = (
    "SELECT e.seq, e.preimage, e.hash, "
    # After revocation is decided from the chain alone: a revocation entry for
    # the grant that comes earlier in the chain (by seq, not by clock).
    "CASE WHEN e.action NOT LIKE 'grantex.%' AND e.grant_id IS NOT NULL AND EXISTS ("
    " SELECT 1 FROM audit_entries r INDEXED BY idx_audit_entries_revocations"
    " WHERE r.action = 'grantex.grant.revoked' AND r.grant_id = e.grant_id AND r.seq < e.seq"
    " AND r.developer_id = e.developer_id"
    ") THEN 1 ELSE 0 END AS after_revocation, "
    "CASE WHEN e.action NOT LIKE 'grantex.%' AND g.expires_at <= e.timestamp "
    "THEN 1 ELSE 0 END AS after_expiry "
    "FROM audit_entries e LEFT JOIN grants g ON g.id = e.grant_id"
)


def entry_from_row(row: sqlite3.Row | tuple[Any, ...]) -> AuditEntry:
    fields = json.loads(row[1])
    flags = tuple(name for name, on in (("after_revocation", row[3]), ("after_expiry", row[4])) if on) \
        if len(row) > 3 else ()
    return AuditEntry(
        entry_id=fields["id"], seq=row[0], agent_id=fields["agentId"], agent_did=fields["agentDid"],
        grant_id=fields["grantId"], principal_id=fields["principalId"],
        developer_id=fields["developerId"], action=fields["action"], metadata=fields["metadata"],
        status=fields["status"], timestamp=fields["timestamp"], hash=row[2],
        prev_hash=fields["prevHash"], flags=flags,
    )


def list_entries(
    ledger: Ledger,
    developer_id: str | None,
    *,
    agent_id: str | None = None,
    grant_id: str | None = None,
    principal_id: str | None = None,
    action: str | None = None,
    status: str | None = None,
    since: str | None = None,
    until: str | None = None,
    page: int = 1,
    page_size: int = 100,
    newest_first: bool = False,
) -> list[AuditEntry]:
    """Entries matching every filter given, oldest first (by seq) unless asked otherwise."""
    if isinstance(page, bool) or not isinstance(page, int) or page < 1:
        raise errors.InvalidInput("page must be a whole number from 1")
    if isinstance(page_size, bool) or not isinstance(page_size, int) or not 1 <= page_size <= 10_000:
        raise errors.InvalidInput("pageSize must be a whole number from 1 to 10000")
    if status is not None and status not in STATUSES:
        raise errors.InvalidInput(f"status must be one of {', '.join(STATUSES)}")
    sql, params = f"{_SELECT} WHERE 1 = 1", []
    for column, value in (("e.developer_id", developer_id), ("e.agent_id", agent_id),
                          ("e.grant_id", grant_id), ("e.principal_id", principal_id),
                          ("e.action", action), ("e.status", status)):
        if value is not None:
            sql += f" AND {column} = ?"
            params.append(value)
    for op, value, name in ((">=", since, "since"), ("<", until, "until")):
        if value is not None:
            sql += f" AND e.timestamp {op} ?"
            params.append(_timestamp_bound(value, name))
    order = "DESC" if newest_first else "ASC"
    sql += f" ORDER BY e.developer_id, e.seq {order} LIMIT ? OFFSET ?"
    params += [page_size, (page - 1) * page_size]
    return [entry_from_row(r) for r in ledger.query(sql, params)]


def _timestamp_bound(value: str, name: str) -> str:
    """Accept ISO-8601 UTC (with or without milliseconds/Z) and normalise for text comparison."""
    from datetime import UTC, datetime

    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except (ValueError, AttributeError):
        raise errors.InvalidInput(f"{name} must be an ISO-8601 time such as 2026-02-01T12:00:00Z") from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return iso(parsed.timestamp())


def get_entry(ledger: Ledger, developer_id: str | None, entry_id: str) -> AuditEntry:
    if not isinstance(entry_id, str) or not entry_id:
        raise errors.InvalidInput("entry id must be a non-empty string")
    row = ledger.query_one(f"{_SELECT} WHERE e.id = ?", (entry_id,))
    if row is None or (developer_id is not None and json.loads(row[1])["developerId"] != developer_id):
        raise errors.NotFound(f"audit entry {entry_id} not found")
    return entry_from_row(row)


def count_entries(ledger: Ledger, developer_id: str | None = None) -> int:
    if developer_id is None:
        return ledger.query_one("SELECT count(*) FROM audit_entries")[0]  # type: ignore[index]
    return ledger.query_one("SELECT count(*) FROM audit_entries WHERE developer_id = ?",  # type: ignore[index]
                            (developer_id,))[0]
