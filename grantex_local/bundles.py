"""Consent bundles for offline devices (the ``grantex-gemma`` kit, SDK-SURFACE §21).

A bundle is an ordinary grant, issued through the normal flow (policies, sandbox, or a
human's consent), plus a per-bundle Ed25519 key the device signs its own hash-chained log
with. The ledger keeps only the key's public half: the private half exists in the answer (or
the 0600 file the CLI writes) and nowhere else, so a synced log proves it came from whoever
holds the bundle.

Syncing checks each offline entry exactly as the package builds it (``_hash_chain.py``,
``_audit_log.py``): the SHA-256 of the nine content fields, the link to the previous entry
(the package's genesis is 64 zeros), the Ed25519 signature over the hex hash, seq + 1, and the
bundle's grant and agent. The longest valid prefix is appended to the developer's chain in one
transaction, one ordinary audit entry per offline entry, its origin under ``metadata.offline``.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import sqlite3
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from . import agents, authorization, errors, events, keys, tokens
from .audit.hashing import canonical_object
from .audit.trail import Appender, record
from .clock import iso, parse_expires_in, parse_iso
from .grants import revoke_and_record
from .ids import PREFIXES, new_id
from .progress import Progress, Tally
from .text import check_text

if TYPE_CHECKING:
    from .founding import Ledger

PREFIX = PREFIXES["consent_bundle"]
MAX_OFFLINE_TTL = 30 * 86400
"""A device may act offline at most 30 days on one bundle (and never beyond the ledger's
``max_expires_in``): the grant carries the same lifetime, so the offline expiry IS the grant's."""
RENEW_FRACTION = 0.2
"""A sync within the last 20 % of a bundle's offline lifetime, under a live grant, hands out a
fresh bundle (``newBundle``)."""
GENESIS_HASH = "0" * 64
"""The package's ``prev_hash`` of a log's first entry (``OfflineAuditLog._prev_hash``)."""
MAX_ENTRIES = 100_000
"""Per sync call: the package sends batches of 100; a sneakernet log may be long."""
SYNC_ENDPOINT = "/v1/audit/offline-sync"
_STATUS = {"success": "success", "failure": "failure", "failed": "failure", "error": "failure",
           "blocked": "blocked", "denied": "blocked"}
"""Device ``result`` → audit status; anything else is recorded as ``failure`` (the device's own
word stays in ``metadata.offline.result``)."""
_CAMEL = {"agentDID": "agent_did", "agentDid": "agent_did", "grantId": "grant_id", "prevHash": "prev_hash"}
_FIELDS = ("seq", "timestamp", "action", "agent_did", "grant_id", "scopes", "result", "metadata",
           "prev_hash", "hash", "signature")


class ConsentPending(errors.GrantexLocalError):
    """The bundle's grant waits for a human: nothing to hand out yet. ``consent_url`` is where
    the person approves; the approval's code, sent back as ``code``, turns into the bundle."""

    code = "CONSENT_REQUIRED"
    status = 409

    def __init__(self, message: str, consent_url: str, auth_request_id: str) -> None:
        super().__init__(message)
        self.consent_url = consent_url
        self.auth_request_id = auth_request_id


@dataclass(frozen=True)
class OfflineEntry:
    """One device log line, its fields checked for type (not yet for truth)."""

    seq: int
    timestamp: str
    action: str
    agent_did: str
    grant_id: str
    scopes: list[str]
    result: str
    metadata: dict[str, Any]
    prev_hash: str
    hash: str
    signature: str

    def content_hash(self) -> str:
        """The package's ``compute_entry_hash``, byte for byte."""
        canonical = {"seq": self.seq, "timestamp": self.timestamp, "action": self.action,
                     "agent_did": self.agent_did, "grant_id": self.grant_id, "scopes": self.scopes,
                     "result": self.result, "metadata": self.metadata, "prev_hash": self.prev_hash}
        payload = json.dumps(canonical, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(payload.encode("utf-8")).hexdigest()


def parse_entry(raw: object, index: int) -> OfflineEntry:
    """A device entry (snake_case as the Python package writes it; camelCase names of the
    TypeScript kit accepted too), or InvalidInput naming the entry and field."""
    if not isinstance(raw, Mapping):
        raise errors.InvalidInput(f"entries[{index}] must be an object")
    item = {_CAMEL.get(k, k): v for k, v in raw.items()}
    missing = [f for f in _FIELDS if f not in item]
    if missing:
        raise errors.InvalidInput(f"entries[{index}] lacks {', '.join(missing)}")
    seq = item["seq"]
    if not isinstance(seq, int) or isinstance(seq, bool) or seq < 1:
        raise errors.InvalidInput(f"entries[{index}].seq must be a positive integer")
    for name in ("timestamp", "action", "agent_did", "grant_id", "result", "prev_hash", "hash", "signature"):
        if not isinstance(item[name], str):
            raise errors.InvalidInput(f"entries[{index}].{name} must be a string")
    scopes = item["scopes"]
    if not isinstance(scopes, list) or not all(isinstance(s, str) for s in scopes):
        raise errors.InvalidInput(f"entries[{index}].scopes must be a list of strings")
    if not isinstance(item["metadata"], dict):
        raise errors.InvalidInput(f"entries[{index}].metadata must be an object")
    return OfflineEntry(seq, item["timestamp"], item["action"], item["agent_did"], item["grant_id"],
                        scopes, item["result"], item["metadata"], item["prev_hash"], item["hash"],
                        item["signature"])


def parse_entries(raw: object) -> list[OfflineEntry]:
    if not isinstance(raw, list):
        raise errors.InvalidInput("entries must be a list")
    if len(raw) > MAX_ENTRIES:
        raise errors.InvalidInput(f"at most {MAX_ENTRIES} entries per sync")
    return [parse_entry(e, i) for i, e in enumerate(raw)]


# ── creating ─────────────────────────────────────────────────────────────────


def _bundle_id(value: object) -> str:
    if not isinstance(value, str) or not value.startswith(PREFIX) or len(value) > 64:
        raise errors.NotFound(f"consent bundle {str(value)[:64]!r} not found")
    return check_text(value, "bundle id")


def _offline_ttl(ledger: Ledger, value: object) -> int:
    """The bundle's grant lives as long as the device may act offline, so the ledger's own cap
    on grant lifetimes (``max_expires_in``, 1 day unless set) bounds it as well as 30 days."""
    cap = min(MAX_OFFLINE_TTL, ledger.max_expires_in)
    try:
        return parse_expires_in(value, maximum=cap)
    except errors.InvalidExpiresIn as exc:
        hint = "" if cap == MAX_OFFLINE_TTL else (
            " (the bundle's grant lives as long as its offline TTL: raise the ledger's cap with "
            "'grantex-local config set max_expires_in 30d')")
        raise errors.InvalidExpiresIn(f"offlineTTL: {exc.message}{hint}") from None


def create(ledger: Ledger, developer_id: str, *, agent_id: str, principal_id: str, scopes: list[str],
           offline_ttl: object = "72h", code: str | None = None, approve_as: str | None = None,
           channel: str = "cli", replaces: str | None = None) -> dict[str, Any]:
    """Issue a grant through the normal flow and wrap it in a bundle (the package's shape).

    The grant lives exactly ``offline_ttl``. With ``code`` (from a consent the person already
    gave) the authorization step is skipped. Without it, a request no policy or sandbox
    approves raises :class:`ConsentPending`, unless ``approve_as`` names the local human (the
    CLI), who then approves on ``channel``. The exchange, the bundle row and its audit entry
    are one transaction.
    """
    ttl = _offline_ttl(ledger, offline_ttl)
    assert isinstance(offline_ttl, str)
    if code is None:
        request = authorization.authorize(ledger, developer_id, agent_id=agent_id, principal_id=principal_id,
                                          scopes=scopes, expires_in=offline_ttl)
        code = request.code
        if code is None:
            if approve_as is None:
                raise ConsentPending(
                    f"the bundle's grant waits for consent at {request.consent_url}; send the "
                    "approval's code back as 'code' with the same request", request.consent_url,
                    request.request_id)
            code = authorization.approve(ledger, request.request_id, decided_by=approve_as,
                                         developer_id=developer_id, channel=channel).code
            assert code is not None
    private = Ed25519PrivateKey.generate()
    private_pem = private.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                        serialization.NoEncryption()).decode("ascii")
    public_pem = private.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode("ascii")
    bundle_id = new_id("consent_bundle")
    with ledger.write() as conn:
        issued = tokens.exchange(ledger, developer_id, code=code, agent_id=agent_id)
        grant = conn.execute("SELECT * FROM grants WHERE id = ?", (issued.grant_id,)).fetchone()
        if abs(ttl - (parse_iso(grant["expires_at"]) - parse_iso(grant["issued_at"]))) > 2:
            raise errors.InvalidInput("the approved request's lifetime differs from offlineTTL")
        now = iso(ledger.now())
        conn.execute(
            "INSERT INTO consent_bundles (id, developer_id, grant_id, agent_id, principal_id, public_key, "
            "offline_expires_at, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (bundle_id, developer_id, grant["id"], grant["agent_id"], grant["principal_id"], public_pem,
             grant["expires_at"], now))
        agent_did = agents.get(ledger, developer_id, agent_id, include_deleted=True).did
        meta = {"bundleId": bundle_id, "offlineExpiresAt": grant["expires_at"],
                "scopes": json.loads(grant["scopes"]), **({"replaces": replaces} if replaces else {})}
        record(ledger, conn, developer_id, "grantex.bundle.created", agent_id=grant["agent_id"],
               agent_did=agent_did, grant_id=grant["id"], principal_id=grant["principal_id"], metadata=meta)
        events.emit(ledger, conn, developer_id, "consent_bundle.created",
                    {"bundleId": bundle_id, "grantId": grant["id"], "agentId": grant["agent_id"],
                     "principalId": grant["principal_id"], "offlineExpiresAt": grant["expires_at"]})
        if replaces is not None:
            conn.execute("UPDATE consent_bundles SET replaced_by = ? WHERE id = ?", (bundle_id, replaces))
        jwks = keys.jwks(ledger)
    return {
        "bundleId": bundle_id,
        "grantToken": issued.grant_token,
        "jwksSnapshot": {"keys": jwks["keys"], "fetchedAt": now, "validUntil": grant["expires_at"]},
        "offlineAuditKey": {"publicKey": public_pem, "privateKey": private_pem, "algorithm": "Ed25519"},
        "checkpointAt": int(parse_iso(now) * 1000),
        "syncEndpoint": ledger.issuer.rstrip("/") + SYNC_ENDPOINT,
        "offlineExpiresAt": grant["expires_at"],
    }


# ── reading ──────────────────────────────────────────────────────────────────


def _grant_revoked_at(conn: sqlite3.Connection, grant_id: str) -> str | None:
    """When the grant, or the earliest of its ancestors, was revoked (None: not revoked)."""
    found: list[str] = []
    cursor: str | None = grant_id
    while cursor is not None:
        row = conn.execute("SELECT revoked_at, parent_grant_id FROM grants WHERE id = ?",
                           (cursor,)).fetchone()
        if row is None:
            break
        if row["revoked_at"] is not None:
            found.append(row["revoked_at"])
        cursor = row["parent_grant_id"]
    return min(found) if found else None


def _to_dict(ledger: Ledger, conn: sqlite3.Connection, row: sqlite3.Row) -> dict[str, Any]:
    revoked = row["revoked_at"] or _grant_revoked_at(conn, row["grant_id"])
    now = iso(ledger.now())
    status = ("revoked" if revoked else "replaced" if row["replaced_by"]
              else "expired" if row["offline_expires_at"] <= now else "active")
    return {"id": row["id"], "developerId": row["developer_id"], "grantId": row["grant_id"],
            "agentId": row["agent_id"], "principalId": row["principal_id"], "status": status,
            "createdAt": row["created_at"], "offlineExpiresAt": row["offline_expires_at"],
            "revokedAt": revoked, "replacedBy": row["replaced_by"], "lastSyncAt": row["last_sync_at"],
            "lastOfflineSeq": row["last_offline_seq"], "lastOfflineHash": row["last_offline_hash"],
            "syncedEntries": row["synced_entries"], "publicKey": row["public_key"]}


def _row(conn: sqlite3.Connection, developer_id: str | None, bundle_id: object) -> sqlite3.Row:
    bid = _bundle_id(bundle_id)
    row = conn.execute("SELECT * FROM consent_bundles WHERE id = ?", (bid,)).fetchone()
    if row is None or (developer_id is not None and row["developer_id"] != developer_id):
        raise errors.NotFound(f"consent bundle {bid} not found")
    return row


def get(ledger: Ledger, developer_id: str | None, bundle_id: object) -> dict[str, Any]:
    """A bundle's state (never key material beyond the public half)."""
    with ledger.read() as conn:
        return _to_dict(ledger, conn, _row(conn, developer_id, bundle_id))


def list_bundles(ledger: Ledger, developer_id: str | None = None, *,
                 grant_id: str | None = None) -> list[dict[str, Any]]:
    sql, params = "SELECT * FROM consent_bundles WHERE 1 = 1", list[str]()
    if developer_id is not None:
        sql, params = sql + " AND developer_id = ?", [*params, developer_id]
    if grant_id is not None:
        sql, params = sql + " AND grant_id = ?", [*params, grant_id]
    with ledger.read() as conn:
        return [_to_dict(ledger, conn, r) for r in conn.execute(sql + " ORDER BY created_at, id", params)]


# ── revoking ─────────────────────────────────────────────────────────────────


def revoke(ledger: Ledger, developer_id: str | None, bundle_id: object) -> dict[str, Any]:
    """Revoke the bundle's grant (cascading, as any grant revocation) and mark every bundle of
    it, in one transaction. A bundle whose grant is already revoked is only marked."""
    with ledger.write() as conn:
        row = _row(conn, developer_id, bundle_id)
        if row["revoked_at"] is not None:
            raise errors.InvalidState(f"consent bundle {row['id']} is already revoked")
        now = iso(ledger.now())
        grant = conn.execute("SELECT revoked_at FROM grants WHERE id = ?", (row["grant_id"],)).fetchone()
        revoked_grants = [] if grant["revoked_at"] else revoke_and_record(
            ledger, conn, [row["grant_id"]], now, cause="bundle_revoked")
        marked = [r[0] for r in conn.execute(
            "SELECT id FROM consent_bundles WHERE revoked_at IS NULL AND (id = ? OR grant_id IN "
            f"({','.join('?' * len(revoked_grants))}))" if revoked_grants else
            "SELECT id FROM consent_bundles WHERE revoked_at IS NULL AND id = ?",
            (row["id"], *revoked_grants))]
        conn.executemany("UPDATE consent_bundles SET revoked_at = ? WHERE id = ?", [(now, b) for b in marked])
        for bid in marked:
            record(ledger, conn, row["developer_id"], "grantex.bundle.revoked", agent_id=row["agent_id"],
                   grant_id=row["grant_id"], principal_id=row["principal_id"],
                   metadata={"bundleId": bid, "revokedAt": now, "revokedGrants": len(revoked_grants)})
            events.emit(ledger, conn, row["developer_id"], "consent_bundle.revoked",
                        {"bundleId": bid, "grantId": row["grant_id"], "revokedAt": now})
    return {"bundleId": row["id"], "revokedAt": now, "grantId": row["grant_id"],
            "revokedGrants": revoked_grants, "bundlesRevoked": marked}


# ── syncing ──────────────────────────────────────────────────────────────────


def _signature_ok(public: Ed25519PublicKey, entry: OfflineEntry) -> bool:
    text = entry.signature
    try:
        raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
        public.verify(raw, entry.hash.encode("utf-8"))
    except (InvalidSignature, binascii.Error, ValueError):
        return False
    return True


def _device_time(text: str) -> float | None:
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment.timestamp() if moment.tzinfo is not None else None


def _synced_hashes(conn: sqlite3.Connection, row: sqlite3.Row, low: int) -> dict[int, str]:
    """Offline seq → hash of this bundle's entries already in the chain from ``low`` on."""
    out: dict[int, str] = {}
    for seq, digest in conn.execute(
            "SELECT json_extract(preimage, '$.metadata.offline.offlineSeq'), "
            "json_extract(preimage, '$.metadata.offline.hash') FROM audit_entries "
            "WHERE grant_id = ? AND json_extract(preimage, '$.metadata.offline.bundleId') = ? "
            "AND json_extract(preimage, '$.metadata.offline.offlineSeq') >= ?",
            (row["grant_id"], row["id"], low)):
        out[int(seq)] = digest
    return out


@dataclass
class SyncOutcome:
    accepted: int
    rejected: int
    duplicates: int
    rejections: list[dict[str, Any]]
    revocation_status: str
    bundle: dict[str, Any]
    new_bundle: dict[str, Any] | None = None
    renewal_consent_url: str | None = None

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"accepted": self.accepted, "rejected": self.rejected,
                               "revocationStatus": self.revocation_status, "duplicates": self.duplicates,
                               "rejections": self.rejections, "bundleId": self.bundle["id"],
                               "lastOfflineSeq": self.bundle["lastOfflineSeq"]}
        if self.new_bundle is not None:
            out["newBundle"] = self.new_bundle
        if self.renewal_consent_url is not None:
            out["renewalConsentUrl"] = self.renewal_consent_url
        return out


def sync(ledger: Ledger, developer_id: str | None, bundle_id: object, entries: Sequence[OfflineEntry], *,
         renew: bool = False, progress: Progress | None = None) -> SyncOutcome:
    """Check the device's entries in order and append the longest valid prefix (see module doc).

    Entries at offline seqs already synced are duplicates when their hash is the one stored
    and ``conflict`` otherwise. The first bad entry stops the walk: it and every entry after it
    are rejected (the later ones with reason ``after_rejected``). With ``renew``, a live grant
    near its offline expiry gets a fresh bundle after the sync commits. ``progress`` is told the
    entries checked (each signature check is the slow part), of all given.
    """
    now_ts = ledger.now()
    now = iso(now_ts)
    with ledger.write() as conn:
        row = _row(conn, developer_id, bundle_id)
        developer = row["developer_id"]
        public = serialization.load_pem_public_key(row["public_key"].encode("ascii"))
        assert isinstance(public, Ed25519PublicKey)
        agent_did = agents.get(ledger, developer, row["agent_id"], include_deleted=True).did
        revoked_at = _grant_revoked_at(conn, row["grant_id"])
        revoked_ts = parse_iso(revoked_at) if revoked_at else None
        head_seq, head_hash = row["last_offline_seq"], row["last_offline_hash"] or GENESIS_HASH
        known: dict[int, str] | None = None
        accepted: list[OfflineEntry] = []
        after_flags: list[bool] = []
        duplicates = 0
        rejections: list[dict[str, Any]] = []
        tally = Tally(progress, len(entries))
        for index, entry in enumerate(entries):
            tally.reach(index)
            reason: str | None = None
            if entry.content_hash() != entry.hash:
                reason = "hash_mismatch"
            elif entry.seq <= row["last_offline_seq"]:
                if known is None:
                    known = _synced_hashes(conn, row, min(e.seq for e in entries))
                if known.get(entry.seq) == entry.hash:
                    duplicates += 1
                    continue
                reason = "conflict"
            elif entry.prev_hash != head_hash:
                reason = "broken_link"
            elif not _signature_ok(public, entry):
                reason = "bad_signature"
            elif entry.seq != head_seq + 1:
                reason = "seq_gap"
            elif entry.grant_id != row["grant_id"] or entry.agent_did != agent_did:
                reason = "wrong_grant"
            else:
                device_ts = _device_time(entry.timestamp)
                if device_ts is None:
                    reason = "bad_timestamp"
                else:
                    accepted.append(entry)
                    after_flags.append(revoked_ts is not None and device_ts >= revoked_ts)
                    head_seq, head_hash = entry.seq, entry.hash
                    continue
            rejections.append({"seq": entry.seq, "reason": reason})
            rejections += [{"seq": e.seq, "reason": "after_rejected"} for e in entries[index + 1:]]
            break
        tally.finish()  # every entry is judged: accepted, a duplicate, or rejected with those after it
        contexts, texts, parsed = [], [], []
        for entry, late in zip(accepted, after_flags, strict=True):
            offline = {"bundleId": row["id"], "offlineSeq": entry.seq, "deviceTimestamp": entry.timestamp,
                       "signature": entry.signature, "hash": entry.hash, "syncedAt": now,
                       "afterRevocation": late, "result": entry.result}
            meta = {**entry.metadata, "offline": offline}
            if entry.scopes:
                meta["scope"] = entry.scopes[0]
            text, obj = canonical_object(meta)
            contexts.append((row["agent_id"], agent_did, row["grant_id"], row["principal_id"], entry.action,
                             _STATUS.get(entry.result, "failure")))
            texts.append(text)
            parsed.append(obj)
        trail = Appender(ledger, conn, developer)
        if accepted:
            trail.add_many(contexts, texts, parsed, entries=False)
        first_bad = rejections[0] if rejections else None
        trail.add(action="grantex.bundle.synced", agent_id=row["agent_id"], agent_did=agent_did,
                  grant_id=row["grant_id"], principal_id=row["principal_id"],
                  status="success" if first_bad is None else "failure",
                  metadata={"bundleId": row["id"], "accepted": len(accepted), "rejected": len(rejections),
                            "duplicates": duplicates,
                            "firstRejectedSeq": first_bad["seq"] if first_bad else None,
                            "reason": first_bad["reason"] if first_bad else None,
                            "afterRevocation": sum(after_flags)})
        trail.flush()
        conn.execute(
            "UPDATE consent_bundles SET last_sync_at = ?, last_offline_seq = ?, last_offline_hash = ?, "
            "synced_entries = synced_entries + ?, revoked_at = COALESCE(revoked_at, ?) WHERE id = ?",
            (now, head_seq, None if head_hash == GENESIS_HASH else head_hash, len(accepted), revoked_at,
             row["id"]))
        events.emit(ledger, conn, developer, "consent_bundle.synced",
                    {"bundleId": row["id"], "grantId": row["grant_id"], "accepted": len(accepted),
                     "rejected": len(rejections), "duplicates": duplicates})
        grant = conn.execute("SELECT expires_at, scopes FROM grants WHERE id = ?",
                             (row["grant_id"],)).fetchone()
        fresh = conn.execute("SELECT * FROM consent_bundles WHERE id = ?", (row["id"],)).fetchone()
        outcome = SyncOutcome(len(accepted), len(rejections), duplicates, rejections,
                              "revoked" if revoked_at else "active", _to_dict(ledger, conn, fresh))
    lifetime = parse_iso(row["offline_expires_at"]) - parse_iso(row["created_at"])
    left = parse_iso(row["offline_expires_at"]) - now_ts
    if (renew and revoked_at is None and row["replaced_by"] is None and grant["expires_at"] > now
            and left <= RENEW_FRACTION * lifetime):
        scopes = json.loads(grant["scopes"])
        try:
            outcome.new_bundle = create(
                ledger, developer, agent_id=row["agent_id"], principal_id=row["principal_id"], scopes=scopes,
                offline_ttl=_ttl_text(lifetime), replaces=row["id"])
        except ConsentPending as exc:
            outcome.renewal_consent_url = exc.consent_url
    return outcome


def _ttl_text(seconds: float) -> str:
    whole = max(60, min(MAX_OFFLINE_TTL, round(seconds)))
    return f"{whole}s"
