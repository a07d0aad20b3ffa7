"""Appending to and reading the hash chain (PROTOCOL §10).

One chain per developer. Appends run inside ``BEGIN IMMEDIATE`` (the
caller's write transaction), so they are serialised across processes: each
entry takes the next ``seq``, links to the head's hash, never gets a time
stamp or id that sorts before the head's, and the chain cannot fork. The
Merkle nodes completed by the append are stored in the same transaction.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import re
import sqlite3
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import replace
from operator import methodcaller
from typing import TYPE_CHECKING, Any

from ulid import ULID

from .. import errors, ids, paging
from ..clock import iso
from ..models import AuditEntry
from ..text import check_json, check_optional_text, check_text, is_clean
from . import merkle
from .hashing import canonical_object, js_string

if TYPE_CHECKING:
    from ..ledger import LedgerFile

STATUSES = ("success", "failure", "blocked")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
STORED_LEVEL = 4
"""Merkle nodes below this level are recomputed from entry hashes (at most 8 rows), not stored:
storing every level would write two node rows per entry, this writes about one per eight."""
LIFECYCLE_PREFIX = "grantex."
MAX_ACTION = 200
MAX_METADATA_BYTES = 64 * 1024
_ITEM_FIELDS = frozenset({"agent_id", "grant_id", "action", "status", "metadata", "agent_did",
                          "principal_id"})

_ID_PREFIX = ids.PREFIXES["audit"]


def _json_field(name: str, value: object) -> str:
    """One string field of the preimage as ``JSON.stringify`` writes it (null when absent)."""
    if value is None:
        return "null"
    if not isinstance(value, str):
        raise errors.InvalidInput(f"audit field {name} must be a string")
    return js_string(value)


def _may_hold_unclean(metadata_text: str) -> bool:
    """False when canonical metadata text certainly holds no lone surrogate or non-character:
    the canonical form writes non-ASCII raw and escapes only controls and lone surrogates, so
    ASCII without a ``\\u`` escape (nearly all metadata) needs no walk."""
    return not metadata_text.isascii() or "\\u" in metadata_text


_Context = tuple[str | None, str | None, str | None, str | None, str, str]
"""(agent id, agent DID, grant id, principal id, action, status): the fields entries of a batch share."""


class Appender:
    """Appends to one developer's chain inside the caller's write transaction.

    The preimage is assembled from pieces that repeat across a batch (the
    fields between the id and the metadata, the time stamp, the status), each
    escaped once; the id and the previous hash need no escaping (base 32 and
    hex). The text is the one :func:`~grantex_local.audit.hashing.preimage_text`
    builds, byte for byte (the tests hold them together).
    """

    def __init__(self, ledger: LedgerFile, conn: sqlite3.Connection, developer_id: str) -> None:
        self.ledger = ledger
        self.conn = conn
        self.developer_id = developer_id
        row = conn.execute(
            "SELECT seq, hash, id, timestamp FROM audit_entries WHERE developer_id = ? "
            "ORDER BY seq DESC LIMIT 1", (developer_id,)).fetchone()
        # The head: what the next entry follows (seq 0 and empty strings before the first entry).
        self._seq: int = row[0] if row else 0
        self._hash: str | None = row[1] if row else None
        self._id: str = row[2] if row else ""
        self._stamp: str = row[3] if row else ""
        self._prev_text = f',"prevHash":{_json_field("prevHash", row[1] if row else None)}'
        self._edge: dict[int, bytes] = {}
        """The Merkle tree's right edge by level, as far as this appender built it: each a perfect
        subtree still waiting for its right sibling. The older part is read from the ledger."""
        self._now: str | None = None
        self._fixed: dict[_Context, tuple[str, str]] = {}
        self._texts: list[str] = []  # with the hashes, the rows flush writes (strings: no GC work)
        self._hashes: list[str] = []
        self._digests: list[bytes] = []

    def add(self, *, action: str, status: str = "success", metadata: Mapping[str, Any] | None = None,
            agent_id: str | None = None, agent_did: str | None = None, grant_id: str | None = None,
            principal_id: str | None = None, timestamp: str | None = None,
            metadata_text: str | None = None) -> AuditEntry:
        """Queue one entry (written by :meth:`flush`, which the caller must call).

        ``metadata_text`` is the canonical JSON of ``metadata`` when already computed.
        """
        if metadata_text is None:
            metadata_text, parsed = canonical_object(dict(metadata or {}))
        else:
            parsed = json.loads(metadata_text)
        # The last line of defence for what the library itself records: a lone surrogate or a
        # non-character that got past a caller's check stops the write here (the caller's
        # transaction rolls back), instead of being stored and breaking every reader after.
        for name, value in (("agentId", agent_id), ("agentDid", agent_did), ("grantId", grant_id),
                            ("principalId", principal_id), ("action", action), ("status", status)):
            check_optional_text(value, f"audit {name}")
        if _may_hold_unclean(metadata_text):
            check_json(parsed, "audit metadata")
        context = (agent_id, agent_did, grant_id, principal_id, action, status)
        return self.add_many([context], [metadata_text], [parsed], timestamp)[0]

    def add_many(self, contexts: Sequence[_Context], metadata_texts: Sequence[str],
                 metadata: Sequence[dict[str, Any] | None], timestamp: str | None = None, *,
                 entries: bool = True) -> list[AuditEntry]:
        """Queue entries given as columns: shared fields, canonical metadata, and the metadata
        as parsed back from that text (what each entry reports). With ``entries=False``
        nothing is reported (``metadata`` may hold None) and an empty list comes back: a
        cascade that writes thousands of entries nobody reads skips building them.

        Columns rather than a tuple per entry, and one loop with what it needs
        in local names: a bulk append spends most of its Python time here, and
        objects that live until the batch is written are what wakes the
        garbage collector.
        """
        if timestamp is None:
            if self._now is None:  # one instant for everything one transaction appends
                self._now = iso(self.ledger.now())
            timestamp = self._now
        elif not isinstance(timestamp, str):
            raise errors.InvalidInput("audit field timestamp must be a string")
        stamp = timestamp if timestamp >= self._stamp else self._stamp  # never backwards in a chain
        stamp_text = f',"timestamp":{_json_field("timestamp", stamp)}'
        fixed_texts, developer_id, sha256 = self._fixed, self.developer_id, hashlib.sha256
        texts, hashes, digests = self._texts, self._hashes, self._digests
        out: list[AuditEntry] = []
        seq, last_hash, last_id, prev_text = self._seq, self._hash, self._id, self._prev_text
        try:
            for context, metadata_text, parsed in zip(contexts, metadata_texts, metadata, strict=True):
                try:
                    fixed = fixed_texts.get(context)
                except TypeError:  # an unhashable field: refused by _fixed_text
                    fixed = None
                if fixed is None:
                    fixed = fixed_texts[context] = self._fixed_text(context)
                entry_id = ids.new_id("audit")
                if entry_id <= last_id:
                    # Another process minted the head in this millisecond: keep ids ordered.
                    entry_id = _ID_PREFIX + str(ULID.from_int(int(ULID.from_str(last_id[5:])) + 1))
                text = f'{{"id":"{entry_id}{fixed[0]}{metadata_text}{stamp_text}{prev_text}{fixed[1]}'
                digest = sha256(text.encode()).digest()
                hash_hex = digest.hex()
                if entries:
                    agent_id, agent_did, grant_id, principal_id, action, status = context
                    # With entries=True every metadata is a dict (None only rides along when nothing
                    # is reported); no check here, in the loop a bulk append spends its time in.
                    out.append(AuditEntry(entry_id, seq + 1, agent_id, agent_did, grant_id, principal_id,
                                          developer_id, action, parsed,  # type: ignore[arg-type]
                                          status, stamp, hash_hex, last_hash))
                texts.append(text)
                hashes.append(hash_hex)
                digests.append(digest)
                seq, last_hash, last_id, prev_text = seq + 1, hash_hex, entry_id, f',"prevHash":"{hash_hex}"'
        finally:  # the head is the last entry queued, whatever stopped the loop
            if seq != self._seq:
                self._seq, self._hash, self._id, self._prev_text, self._stamp = (
                    seq, last_hash, last_id, prev_text, stamp)
        return out

    def _fixed_text(self, context: _Context) -> tuple[str, str]:
        """The preimage's text from the id to the metadata, and from the status to the end."""
        agent_id, agent_did, grant_id, principal_id, action, status = context
        return (f'","agentId":{_json_field("agentId", agent_id)},'
                f'"agentDid":{_json_field("agentDid", agent_did)},'
                f'"grantId":{_json_field("grantId", grant_id)},'
                f'"principalId":{_json_field("principalId", principal_id)},'
                f'"developerId":{_json_field("developerId", self.developer_id)},'
                f'"action":{_json_field("action", action)},"metadata":',
                f',"status":{_json_field("status", status)}}}')

    def flush(self) -> None:
        """Write the queued entries and the Merkle nodes they complete."""
        if not self._texts:
            return
        first = self._seq - len(self._texts) + 1
        nodes = self._completed_nodes(first - 1, self._digests)
        self.conn.executemany("INSERT INTO audit_entries (seq, preimage, hash) VALUES (?, ?, ?)",
                              zip(itertools.count(first), self._texts, self._hashes))
        if nodes:
            self.conn.executemany(
                "INSERT INTO audit_merkle (developer_id, level, idx, hash) VALUES (?, ?, ?, ?)", nodes)
        self._texts.clear()
        self._hashes.clear()
        self._digests.clear()

    def _completed_nodes(self, start: int, digests: list[bytes]) -> list[tuple[str, int, int, bytes]]:
        """The stored-level Merkle nodes completed by leaves ``start``… (RFC 6962), a level at a time.

        Each level pairs its nodes in one pass of C calls instead of a loop per
        entry: a first node with an odd index takes its left sibling from the
        edge, a last node with an even index becomes the edge at its level.
        """
        sha256, digest = hashlib.sha256, methodcaller("digest")
        nodes = list(map(digest, map(sha256, map(b"\x00".__add__, digests))))
        level, stored = 0, []
        while nodes:
            if start & 1:
                left = self._edge.pop(level, None)
                if left is None:
                    left = tree_node(self.conn, self.developer_id, level, start - 1)
                nodes.insert(0, left)
                start -= 1
            if len(nodes) & 1:
                self._edge[level] = nodes.pop()
            nodes = list(map(digest, map(sha256, map(bytes.__add__, map(b"\x01".__add__, nodes[0::2]),
                                                         nodes[1::2]))))
            level, start = level + 1, start >> 1
            if level >= STORED_LEVEL:
                stored += [(self.developer_id, level, start + i, h) for i, h in enumerate(nodes)]
        return stored


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


def record(ledger: LedgerFile, conn: sqlite3.Connection, developer_id: str, action: str,
           **fields: Any) -> AuditEntry:
    """Write one lifecycle event in the caller's transaction."""
    appender = Appender(ledger, conn, developer_id)
    entry = appender.add(action=action, **fields)
    appender.flush()
    return entry


# ── the SDK's audit.log ──────────────────────────────────────────────────────

class _Checker:
    """Checks the items of one batch and keeps what :meth:`Appender.add_many` needs of each.

    The checks and their order are those of a single item: which error an item
    gets does not depend on the items before it; only what one item proved
    (an agent's grant, an action's spelling) is not looked up again. What is
    kept is three lists, with the contexts shared: a batch then leaves no
    object per item for the garbage collector to walk until it is written.
    """

    def __init__(self, ledger: LedgerFile, developer_id: str) -> None:
        self.ledger = ledger
        self.developer_id = developer_id
        self.actions: set[str] = set()
        self.pairs: dict[tuple[str, str], tuple[str, str]] = {}
        self.known_contexts: dict[_Context, _Context] = {}
        self.contexts: list[_Context] = []
        self.metadata_texts: list[str] = []
        self.metadata: list[dict[str, Any]] = []

    def check(self, item: Mapping[str, Any]) -> None:
        if type(item) is not dict and not isinstance(item, Mapping):
            raise errors.InvalidInput("an audit entry must be an object")
        if not item.keys() <= _ITEM_FIELDS:
            unknown = set(item) - _ITEM_FIELDS
            raise errors.InvalidInput(f"unknown audit fields: {', '.join(sorted(unknown))}")
        get = item.get
        agent_id, grant_id, action = get("agent_id"), get("grant_id"), get("action")
        if not isinstance(agent_id, str) or not agent_id:
            raise errors.InvalidInput("agentId must be a non-empty string")
        if not isinstance(grant_id, str) or not grant_id:
            raise errors.InvalidInput("grantId must be a non-empty string")
        if not isinstance(action, str) or not action:
            raise errors.InvalidInput("action must be a non-empty string")
        if action not in self.actions:
            check_text(action, "action")
            if len(action) > MAX_ACTION or _CONTROL.search(action):
                raise errors.InvalidInput(f"action must be at most {MAX_ACTION} printable characters")
            if action.startswith(LIFECYCLE_PREFIX):
                raise errors.InvalidInput(
                    f"actions starting with {LIFECYCLE_PREFIX!r} are reserved for the ledger")
            self.actions.add(action)
        status = get("status") or "success"
        if status not in STATUSES:
            raise errors.InvalidInput(f"status must be one of {', '.join(STATUSES)}, not {status!r}")
        metadata = get("metadata")
        if metadata is None:
            metadata = {}
        if type(metadata) is not dict and not isinstance(metadata, Mapping):
            raise errors.InvalidInput("metadata must be a JSON object")
        metadata_text, parsed = canonical_object(metadata)
        if len(metadata_text) > MAX_METADATA_BYTES:  # characters: a cheap first bound
            raise errors.InvalidInput(f"metadata is larger than {MAX_METADATA_BYTES} bytes")
        if _may_hold_unclean(metadata_text):
            check_json(metadata, "metadata")
        pair = (agent_id, grant_id)
        known = self.pairs.get(pair)
        if known is None:
            check_text(agent_id, "agentId")  # before they are looked up
            check_text(grant_id, "grantId")
            known = self.pairs[pair] = self._owners(agent_id, grant_id)
        agent_did, principal_id = known
        claimed_did, claimed_principal = get("agent_did"), get("principal_id")
        if claimed_did is not None and claimed_did != agent_did:
            raise errors.InvalidInput(f"agentDid does not match agent {agent_id}")
        if claimed_principal is not None and claimed_principal != principal_id:
            raise errors.InvalidInput(f"principalId does not match grant {grant_id}")
        context = (agent_id, agent_did, grant_id, principal_id, action, status)
        self.contexts.append(self.known_contexts.setdefault(context, context))
        self.metadata_texts.append(metadata_text)
        self.metadata.append(parsed)

    def _owners(self, agent_id: str, grant_id: str) -> tuple[str, str]:
        """(agent DID, principal) when the grant is this agent's and both are this developer's."""
        row = self.ledger.query_one(
            "SELECT g.agent_id, g.principal_id, g.developer_id FROM grants g WHERE g.id = ?", (grant_id,))
        agent = self.ledger.query_one("SELECT developer_id, did FROM agents WHERE id = ?", (agent_id,))
        if agent is None or agent["developer_id"] != self.developer_id:
            raise errors.NotFound(f"agent {agent_id} not found")
        if row is None or row["developer_id"] != self.developer_id:
            raise errors.NotFound(f"grant {grant_id} not found")
        if row["agent_id"] != agent_id:
            raise errors.InvalidInput(f"grant {grant_id} does not belong to agent {agent_id}")
        return agent["did"], row["principal_id"]


def log(ledger: LedgerFile, developer_id: str, **item: Any) -> AuditEntry:
    """Append one action (``agent_id, grant_id, action, status, metadata``) to the chain.

    Actions under a revoked or expired grant are recorded all the same: the
    log records what happened, and the entry is flagged when read.
    """
    return log_many(ledger, developer_id, [item])[0]


def log_many(ledger: LedgerFile, developer_id: str, items: Iterable[Mapping[str, Any]]) -> list[AuditEntry]:
    """Append many actions in one transaction: all of them or, on any bad item, none."""
    checker = _Checker(ledger, developer_id)
    for position, item in enumerate(items):
        try:
            checker.check(item)
        except errors.GrantexLocalError as exc:
            if position == 0:
                raise
            raise type(exc)(f"entry {position}: {exc.message}") from None
    with ledger.write() as conn:
        appender = Appender(ledger, conn, developer_id)
        out = appender.add_many(checker.contexts, checker.metadata_texts, checker.metadata)
        appender.flush()
        return _flagged(conn, developer_id, out)


def _flagged(conn: sqlite3.Connection, developer_id: str, entries: list[AuditEntry]) -> list[AuditEntry]:
    """The new entries with the flags a read of them shows (the CASEs of ``_SELECT``), so what an
    append answers agrees with what ``audit list`` says of the same entry.

    One query per grant, not per entry: a bulk append is usually one grant. Every revocation
    entry of the grant is earlier in the chain than the entries just appended.
    """
    flags: dict[tuple[str | None, str], tuple[str, ...]] = {}
    for grant_id, stamp in {(e.grant_id, e.timestamp) for e in entries}:
        row = conn.execute(
            "SELECT EXISTS (SELECT 1 FROM audit_entries INDEXED BY idx_audit_entries_revocations "
            "WHERE action = 'grantex.grant.revoked' AND grant_id = ?1 AND developer_id = ?2), "
            "(SELECT expires_at <= ?3 FROM grants WHERE id = ?1)", (grant_id, developer_id, stamp)).fetchone()
        flags[(grant_id, stamp)] = tuple(
            name for name, on in (("after_revocation", row[0]), ("after_expiry", row[1])) if on)
    return [replace(e, flags=found) if (found := flags[(e.grant_id, e.timestamp)]) else e for e in entries]


# ── reading ──────────────────────────────────────────────────────────────────

_SELECT = (
    # The preimage as bytes: a row whose stored text is not UTF-8 (only ever written behind the
    # ledger's back) would otherwise fail the driver's decoding, and with it the whole listing.
    "SELECT e.seq, CAST(e.preimage AS BLOB), e.hash, "
    # After revocation is decided from the chain alone: a revocation entry for
    # the grant that comes earlier in the chain (by seq, not by clock). An entry synced from an
    # offline device lands in the chain at sync time, so for it the sync's own verdict (device
    # time against the revocation, metadata.offline.afterRevocation) decides instead; it is
    # read only for entries that already have an earlier revocation.
    "CASE WHEN e.action NOT LIKE 'grantex.%' AND e.grant_id IS NOT NULL AND EXISTS ("
    " SELECT 1 FROM audit_entries r INDEXED BY idx_audit_entries_revocations"
    " WHERE r.action = 'grantex.grant.revoked' AND r.grant_id = e.grant_id AND r.seq < e.seq"
    " AND r.developer_id = e.developer_id"
    ") THEN (CASE WHEN json_valid(e.preimage) THEN"
    " COALESCE(json_extract(e.preimage, '$.metadata.offline.afterRevocation'), 1) ELSE 1 END)"
    " ELSE 0 END AS after_revocation, "
    "CASE WHEN e.action NOT LIKE 'grantex.%' AND g.expires_at <= e.timestamp "
    "THEN 1 ELSE 0 END AS after_expiry "
    "FROM audit_entries e LEFT JOIN grants g ON g.id = e.grant_id"
)


UNRENDERABLE = "unrenderable"
"""The flag of an entry whose stored text holds what the ledger refuses today (a lone surrogate,
a non-character, bytes that are not UTF-8): written before the checks existed, or behind the
ledger's back. Its values are returned as stored (undecodable bytes as ``\\udcxx``); readers
show them escaped with :func:`grantex_local.text.escape` and the chain verifier judges the bytes."""


_UNREADABLE: dict[str, Any] = {"id": "", "agentId": None, "agentDid": None, "grantId": None,
                               "principalId": None, "developerId": "", "action": "(unreadable entry)",
                               "metadata": {}, "status": "", "timestamp": "", "prevHash": None}
"""What a stored entry that does not parse as an entry is listed as (flagged; the chain verifier
names its seq and why)."""
_FIELD_NAMES = frozenset(_UNREADABLE)


def _preimage_fields(stored: str | bytes) -> tuple[dict[str, Any], bool]:
    """(the preimage's fields, whether they hold text the ledger would refuse today).

    Nearly every preimage is ASCII without a ``\\u`` escape (the canonical form writes lone
    surrogates as ``\\udxxx`` and non-characters raw), which is clean without a walk.
    """
    unclean = False
    if isinstance(stored, bytes):
        try:
            text = stored.decode("utf-8")
        except UnicodeDecodeError:
            text, unclean = stored.decode("utf-8", "surrogateescape"), True
    else:
        text = stored
    try:
        fields = json.loads(text)
    except ValueError:  # SQLite's JSON5 took it in; Python's JSON cannot read it
        fields = None
    if not isinstance(fields, dict) or not _FIELD_NAMES <= fields.keys():
        return dict(_UNREADABLE), True
    if unclean or (text.isascii() and "\\u" not in text):
        return fields, unclean
    return fields, not is_clean(fields)


def entry_from_row(row: sqlite3.Row | tuple[Any, ...]) -> AuditEntry:
    fields, unclean = _preimage_fields(row[1])
    flags = tuple(name for name, on in (("after_revocation", row[3]), ("after_expiry", row[4])) if on) \
        if len(row) > 3 else ()
    if unclean:
        flags += (UNRENDERABLE,)
    return AuditEntry(
        entry_id=fields["id"], seq=row[0], agent_id=fields["agentId"], agent_did=fields["agentDid"],
        grant_id=fields["grantId"], principal_id=fields["principalId"],
        developer_id=fields["developerId"], action=fields["action"], metadata=fields["metadata"],
        status=fields["status"], timestamp=fields["timestamp"], hash=row[2],
        prev_hash=fields["prevHash"], flags=flags,
    )


def list_entries(
    ledger: LedgerFile,
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
    limit, offset = paging.window(page, page_size)
    if status is not None and status not in STATUSES:
        raise errors.InvalidInput(f"status must be one of {', '.join(STATUSES)}")
    for name, value in (("developer id", developer_id), ("agent id", agent_id), ("grant id", grant_id),
                        ("principal id", principal_id), ("action", action)):
        check_optional_text(value, name)  # filters are looked up: SQLite cannot bind a lone surrogate
    sql = f"{_SELECT} WHERE 1 = 1"
    params: list[str | int] = []
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
    params += [limit, offset]
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


def get_entry(ledger: LedgerFile, developer_id: str | None, entry_id: str) -> AuditEntry:
    if not isinstance(entry_id, str) or not entry_id:
        raise errors.InvalidInput("entry id must be a non-empty string")
    check_text(entry_id, "entry id")
    row = ledger.query_one(f"{_SELECT} WHERE e.id = ?", (entry_id,))
    entry = entry_from_row(row) if row is not None else None
    if entry is None or (developer_id is not None and entry.developer_id != developer_id):
        raise errors.NotFound(f"audit entry {entry_id} not found")
    return entry


def first_undecodable(ledger: LedgerFile, developer_id: str) -> int | None:
    """The seq of the first entry whose stored preimage is not UTF-8, if there is one.

    Such a row (only ever written behind the ledger's back) stops any query that reads its text
    with a driver error that names no seq; readers that meet that error ask here which entry it
    is, so they can report it as the broken entry it is.
    """
    cursor = ledger.conn.execute(
        "SELECT seq, CAST(preimage AS BLOB) FROM audit_entries WHERE developer_id = ? ORDER BY seq",
        (developer_id,))
    try:
        for seq, stored in cursor:
            try:
                stored.decode("utf-8")
            except UnicodeDecodeError:
                return int(seq)
        return None
    finally:
        cursor.close()


NOT_UTF8 = "the stored bytes are not UTF-8 text, which the ledger never writes"


def count_entries(ledger: LedgerFile, developer_id: str | None = None) -> int:
    if developer_id is None:
        row = ledger.query_one("SELECT count(*) FROM audit_entries")
    else:
        row = ledger.query_one("SELECT count(*) FROM audit_entries WHERE developer_id = ?", (developer_id,))
    return int(row[0]) if row is not None else 0  # count(*) always answers one row
