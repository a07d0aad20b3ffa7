"""The event outbox: one row per change other parties may want to hear about.

Why an outbox in the ledger rather than an in-process bus: every face (library, CLI, TUI,
server) writes the same file, often from different processes, and a grant revoked by the CLI
must still reach the server's SSE subscribers and webhooks. So each change writes its event in
the same transaction (:func:`emit`, called inside the caller's ``with ledger.write() as conn``);
consumers poll :func:`read_events` from a ``seq`` cursor. A rolled-back change leaves no event,
and a committed one is never lost.

The envelope (``body``) is serialised once, compact, in the key order id, type, createdAt,
data (SDK-SURFACE §2.2): webhooks sign and send that exact string, the stream sends it as-is.

This module stands on the file alone (``ledger`` and the pure floor): grants, tokens,
delegation, agents and authorization import it, so it must import none of them.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Collection, Iterable
from dataclasses import dataclass
from typing import Any

from ulid import ULIDGenerator

from . import errors
from .clock import iso
from .ledger import LedgerFile

WEBHOOK_EVENT_TYPES: tuple[str, ...] = ("grant.created", "grant.revoked", "token.issued")
"""The only types a webhook may subscribe to (the reference server refuses the rest)."""

LEDGER_EVENT_TYPES: tuple[str, ...] = (
    *WEBHOOK_EVENT_TYPES,
    "token.revoked",
    "agent.registered", "agent.updated", "agent.deleted",
    "agent.suspended", "agent.reactivated",
    "consent.approved", "consent.denied",
    "sso.connection.created", "sso.connection.updated", "sso.connection.deleted",
    "anomaly.auto_revoked",
    "budget.threshold", "budget.exhausted",
    "vault.credential.stored", "vault.credential.deleted", "vault.credential.exchanged",
    "consent_bundle.created", "consent_bundle.synced", "consent_bundle.revoked",
)
"""Every type this ledger emits."""

SDK_STREAM_EVENT_TYPES: tuple[str, ...] = (
    "fido.registered", "fido.assertion",
    "vc.issued", "sd-jwt.issued", "sd-jwt.presented",
    "passport.issued", "passport.revoked", "passport.token-exchange",
    "sso.login",
    "dpdp.consent.created", "dpdp.consent.withdrawn", "dpdp.grievance.filed",
    "dpdp.erasure.completed",
)
"""The hosted service's stream-only types (SDK-SURFACE §2.2). Nothing here emits them, but
code written against the hosted service filters on them, and a filter must not be refused for
naming a type that merely never occurs locally."""

EVENT_TYPES: frozenset[str] = frozenset(LEDGER_EVENT_TYPES + SDK_STREAM_EVENT_TYPES)

MAX_READ = 10_000

_ids = ULIDGenerator()
"""Event ids come from their own monotonic generator, not :func:`grantex_local.ids.new_id`'s:
seeded demos and the sample ledger make every other id reproducible from one shared sequence,
and events written along the way must not shift it."""


@dataclass(frozen=True)
class Event:
    """One outbox row. ``seq`` is the cursor (global, monotonic, never reused)."""

    seq: int
    id: str
    developer_id: str
    type: str
    created_at: str
    body: str

    @property
    def data(self) -> dict[str, Any]:
        """The payload, parsed from the stored envelope (the envelope is the one truth)."""
        data: dict[str, Any] = json.loads(self.body).get("data") or {}
        return data

    @property
    def envelope(self) -> dict[str, Any]:
        envelope: dict[str, Any] = json.loads(self.body)
        return envelope


def envelope_json(event_id: str, type: str, created_at: str, data: dict[str, Any]) -> str:
    """The envelope exactly as ``JSON.stringify`` would write it: compact, non-ASCII kept."""
    return json.dumps({"id": event_id, "type": type, "createdAt": created_at, "data": data},
                      separators=(",", ":"), ensure_ascii=False)


def emit(ledger: LedgerFile, conn: sqlite3.Connection, developer_id: str, type: str,
         data: dict[str, Any]) -> Event:
    """Append one event in the caller's open write transaction (``conn`` from
    ``ledger.write()``): it commits or rolls back with the change it reports."""
    if type not in EVENT_TYPES:
        raise errors.InvalidInput(f"unknown event type {type!r}")
    event_id = "evt_" + str(_ids.generate())
    created_at = iso(ledger.now())
    body = envelope_json(event_id, type, created_at, data)
    cursor = conn.execute(
        "INSERT INTO events (id, developer_id, type, created_at, body) VALUES (?, ?, ?, ?, ?)",
        (event_id, developer_id, type, created_at, body))
    seq = cursor.lastrowid
    assert seq is not None
    return Event(seq, event_id, developer_id, type, created_at, body)


def read_events(ledger: LedgerFile, developer_id: str | None, *, after: int = 0,
                types: Collection[str] | None = None, limit: int = 1000) -> list[Event]:
    """Events with ``seq > after`` in seq order, of one developer (``None``: all of them),
    optionally of the given types only. ``types`` is not validated here: callers taking it from
    outside run :func:`check_types` first."""
    if limit < 1 or limit > MAX_READ:
        raise errors.InvalidInput(f"limit must be between 1 and {MAX_READ}")
    if after < 0:
        raise errors.InvalidInput("after must be a sequence number of 0 or more")
    sql = "SELECT seq, id, developer_id, type, created_at, body FROM events WHERE seq > ?"
    params: list[Any] = [after]
    if developer_id is not None:
        sql += " AND developer_id = ?"
        params.append(developer_id)
    if types is not None:
        wanted = list(dict.fromkeys(types))
        if not wanted:
            return []
        sql += f" AND type IN ({', '.join('?' * len(wanted))})"
        params.extend(wanted)
    sql += " ORDER BY seq LIMIT ?"
    params.append(limit)
    return [Event(int(r[0]), r[1], r[2], r[3], r[4], r[5]) for r in ledger.query(sql, params)]


def last_seq(ledger: LedgerFile, developer_id: str | None = None) -> int:
    """The newest event's seq (0 when none): where a consumer that wants only what comes next
    starts. Per developer when given."""
    if developer_id is None:
        row = ledger.query_one("SELECT MAX(seq) FROM events")
    else:
        row = ledger.query_one("SELECT MAX(seq) FROM events WHERE developer_id = ?", (developer_id,))
    return int(row[0]) if row is not None and row[0] is not None else 0


def check_types(types: Iterable[str]) -> tuple[str, ...]:
    """Validated event types from outside (a query string, CLI options, a webhook): blanks
    dropped, duplicates removed, order kept; unknown names refused by name."""
    cleaned: list[str] = []
    for raw in types:
        if not isinstance(raw, str):
            raise errors.InvalidInput("event types must be strings")
        name = raw.strip()
        if name and name not in cleaned:
            cleaned.append(name)
    unknown = [name for name in cleaned if name not in EVENT_TYPES]
    if unknown:
        shown = ", ".join(repr(n[:60]) for n in unknown[:5])
        raise errors.InvalidInput(f"unknown event type(s): {shown}")
    return tuple(cleaned)
