"""The revocation feed: what the SDK's ``enforce(revocation_check="feed")`` keeps in memory.

The SDK verifies grant tokens offline, so on its own it never learns of a revocation. The feed
gives it (SDK-SURFACE §10) a *snapshot* of everything revoked or suspended now, then the
*changes* after the snapshot's cursor, which it applies on top.

Why the snapshot is computed from the current rows and not replayed from the event outbox:
the outbox only holds what happened since it existed, and a snapshot must be the whole truth
(the SDK swaps it in as a whole, so a missing entry would be an allowed call on a revoked
grant). Its cursor is read *before* the rows, in the same read transaction: whatever the client
then replays after that cursor was already applied or is newer, and every entry here is
idempotent (revoked sets, suspended sets, resumed removes), so replaying it converges.

Changes come from the outbox (:mod:`.events`): ``grant.revoked`` → one ``revoked`` entry per
grant of the cascade, ``token.revoked`` → ``token_revoked`` per jti, ``agent.suspended`` /
``agent.reactivated`` → ``suspended`` / ``resumed`` per grant of the agent, ``agent.deleted``
→ ``revoked`` for the agent's grants still live. A ``resumed`` or ``suspended`` entry for a
grant that is revoked by the time it is read is sent as ``revoked``: the SDK's ``resumed``
removes a grant whatever its action, and must never un-revoke one.
"""

from __future__ import annotations

import base64
import binascii
import json
import sqlite3
from dataclasses import dataclass
from typing import Any

from . import errors, events
from .clock import iso
from .founding import Ledger

DEFAULT_PAGE_SIZE = 500
MAX_PAGE_SIZE = 1000
DELTA_LIMIT = 1000
"""Events read per delta; a client further behind gets the rest on its next request."""

FEED_EVENT_TYPES: tuple[str, ...] = (
    "grant.revoked", "token.revoked", "agent.suspended", "agent.reactivated", "agent.deleted")


@dataclass(frozen=True)
class Entry:
    """One feed entry, in the SDK's wire shape once :meth:`to_dict` is called."""

    seq: int
    action: str  # revoked | suspended | resumed | token_revoked
    grant_id: str
    expires_at: str
    at: str
    jti: str | None = None

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"seq": self.seq, "action": self.action, "grantId": self.grant_id}
        if self.jti is not None:
            out["jti"] = self.jti
        out["expiresAt"] = self.expires_at
        out["at"] = self.at
        return out


@dataclass(frozen=True)
class SnapshotPage:
    entries: list[Entry]
    cursor: int
    next_page_token: str | None

    def to_dict(self) -> dict[str, Any]:
        return {"entries": [e.to_dict() for e in self.entries], "cursor": self.cursor,
                "nextPageToken": self.next_page_token}


@dataclass(frozen=True)
class Delta:
    entries: list[Entry]
    cursor: int

    def to_dict(self) -> dict[str, Any]:
        return {"entries": [e.to_dict() for e in self.entries], "cursor": self.cursor}


# ── parsing what a client sends ──────────────────────────────────────────────


def parse_cursor(value: object, what: str = "since") -> int:
    """A cursor from a query string: a whole number of 0 or more."""
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    if isinstance(value, str) and value.isascii() and value.isdigit() and len(value) <= 18:
        return int(value)
    raise errors.InvalidInput(f"{what} must be a cursor (a whole number of 0 or more)")


def _encode_token(cursor: int, phase: str, after: str) -> str:
    raw = json.dumps([cursor, phase, after], separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def _decode_token(token: str) -> tuple[int, str, str]:
    bad = errors.InvalidInput("pageToken is not one this server handed out")
    if not isinstance(token, str) or not token or len(token) > 512:
        raise bad
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        value = json.loads(raw)
    except (binascii.Error, ValueError, UnicodeDecodeError):
        raise bad from None
    if (not isinstance(value, list) or len(value) != 3 or type(value[0]) is not int or value[0] < 0
            or value[1] not in ("g", "t") or not isinstance(value[2], str)):
        raise bad
    return value[0], value[1], value[2]


# ── the snapshot ─────────────────────────────────────────────────────────────

_GRANTS_SQL = (
    "SELECT g.id, g.expires_at, g.revoked_at, a.status, a.status_changed_at, a.updated_at "
    "FROM grants g JOIN agents a ON a.id = g.agent_id "
    "WHERE g.developer_id = ? AND g.expires_at > ? AND g.id > ? "
    "AND (g.revoked_at IS NOT NULL OR a.status IN ('suspended', 'deleted')) "
    "ORDER BY g.id LIMIT ?")
_TOKENS_SQL = (
    "SELECT t.jti, t.grant_id, t.expires_at, t.revoked_at FROM tokens t "
    "JOIN grants g ON g.id = t.grant_id "
    "WHERE g.developer_id = ? AND t.revoked_at IS NOT NULL AND t.expires_at > ? AND t.jti > ? "
    "AND g.revoked_at IS NULL ORDER BY t.jti LIMIT ?")


def snapshot(ledger: Ledger, developer_id: str, *, page_token: str | None = None,
             page_size: int = DEFAULT_PAGE_SIZE) -> SnapshotPage:
    """One page of everything revoked or suspended now for ``developer_id``.

    Grants first (revoked, of a deleted agent: ``revoked``; of a suspended agent:
    ``suspended``), then tokens revoked on their own while their grant is not. Only what has
    not expired: an expired credential is refused by offline verification anyway.

    Every page answers the cursor of the first page (it travels in the page token): the
    client keeps the last page's cursor and replays from it, and a cursor newer than the
    earliest page read would skip changes to rows that page had already passed.
    """
    if isinstance(page_size, bool) or not isinstance(page_size, int) or not 1 <= page_size <= MAX_PAGE_SIZE:
        raise errors.InvalidInput(f"pageSize must be between 1 and {MAX_PAGE_SIZE}")
    now = iso(ledger.now())
    entries: list[Entry] = []
    with ledger.read() as conn:
        if page_token:
            cursor, phase, after = _decode_token(page_token)
        else:
            cursor, phase, after = events.last_seq(ledger, developer_id), "g", ""
        if phase == "g":
            rows = conn.execute(_GRANTS_SQL, (developer_id, now, after, page_size + 1)).fetchall()
            for row in rows[:page_size]:
                if row["revoked_at"] is not None:
                    action, at = "revoked", row["revoked_at"]
                else:
                    action = "suspended" if row["status"] == "suspended" else "revoked"
                    at = row["status_changed_at"] or row["updated_at"]
                entries.append(Entry(cursor, action, row["id"], row["expires_at"], at))
            if len(rows) > page_size:
                return SnapshotPage(entries, cursor, _encode_token(cursor, "g", entries[-1].grant_id))
            phase, after = "t", ""
        room = page_size - len(entries)
        if room == 0:  # the grants filled this page exactly: tokens on the next one
            return SnapshotPage(entries, cursor, _encode_token(cursor, "t", ""))
        rows = conn.execute(_TOKENS_SQL, (developer_id, now, after, room + 1)).fetchall()
        for row in rows[:room]:
            entries.append(Entry(cursor, "token_revoked", row["grant_id"], row["expires_at"],
                                 row["revoked_at"], jti=row["jti"]))
        if len(rows) > room:
            last = entries[-1].jti
            assert last is not None
            return SnapshotPage(entries, cursor, _encode_token(cursor, "t", last))
    return SnapshotPage(entries, cursor, None)


def snapshot_all(ledger: Ledger, developer_id: str, *, page_size: int = MAX_PAGE_SIZE) -> SnapshotPage:
    """Every page of :func:`snapshot` joined, as the SDK assembles them (for tests and tools)."""
    page = snapshot(ledger, developer_id, page_size=page_size)
    entries = list(page.entries)
    while page.next_page_token:
        page = snapshot(ledger, developer_id, page_token=page.next_page_token, page_size=page_size)
        entries.extend(page.entries)
    return SnapshotPage(entries, page.cursor, None)


# ── the changes ──────────────────────────────────────────────────────────────


def delta(ledger: Ledger, developer_id: str, since: int, *, limit: int = DELTA_LIMIT) -> Delta:
    """The entries of the outbox events after ``since``, and the cursor to ask from next.

    The cursor passes events of other types too (the newest seq of this developer when the
    read was not cut short by ``limit``), so a client does not re-read them on every poll.
    """
    since = parse_cursor(since)
    with ledger.read() as conn:
        newest = events.last_seq(ledger, developer_id)
        if newest <= since:
            return Delta([], since)
        found = events.read_events(ledger, developer_id, after=since, types=FEED_EVENT_TYPES,
                                   limit=limit)
        cursor = found[-1].seq if len(found) >= limit else max(newest, since, *(e.seq for e in found))
        entries: list[Entry] = []
        for event in found:
            entries.extend(_entries_of(conn, event))
        if not entries:
            return Delta([], cursor)
        # Suspended/resumed entries for grants revoked since: sent as what they are now.
        reversible = sorted({e.grant_id for e in entries if e.action in ("suspended", "resumed")})
        revoked: set[str] = set()
        for start in range(0, len(reversible), 500):
            chunk = reversible[start:start + 500]
            revoked.update(r[0] for r in conn.execute(
                f"SELECT id FROM grants WHERE id IN ({','.join('?' * len(chunk))}) "
                "AND revoked_at IS NOT NULL", chunk))
    if revoked:
        entries = [Entry(e.seq, "revoked", e.grant_id, e.expires_at, e.at)
                   if e.grant_id in revoked and e.action in ("suspended", "resumed") else e
                   for e in entries]
    return Delta(entries, cursor)


def _entries_of(conn: sqlite3.Connection, event: events.Event) -> list[Entry]:
    data = event.data
    seq, at = event.seq, event.created_at
    if event.type == "grant.revoked":
        return [Entry(seq, "revoked", g["grantId"], g["expiresAt"], at)
                for g in data.get("revokedGrants") or [] if g.get("grantId")]
    if event.type == "token.revoked":
        if not data.get("tokenId") or not data.get("grantId"):
            return []
        return [Entry(seq, "token_revoked", data["grantId"], data["expiresAt"], at,
                      jti=data["tokenId"])]
    if event.type in ("agent.suspended", "agent.reactivated"):
        action = "suspended" if event.type == "agent.suspended" else "resumed"
        return [Entry(seq, action, g["grantId"], g["expiresAt"], at)
                for g in data.get("grants") or [] if g.get("grantId")]
    if event.type == "agent.deleted" and data.get("agentId"):
        # The event names only the agent: its grants still live are the ones it took down.
        rows = conn.execute(
            "SELECT id, expires_at FROM grants WHERE agent_id = ? AND revoked_at IS NULL "
            "AND expires_at > ? ORDER BY id", (data["agentId"], at)).fetchall()
        return [Entry(seq, "revoked", r["id"], r["expires_at"], at) for r in rows]
    return []
