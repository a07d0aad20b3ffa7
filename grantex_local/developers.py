"""Developers and their API keys.

A ledger holds one default local developer (sandbox on: authorize returns a
code at once) and may hold more. API keys are shown once, when created, and
stored only as SHA-256 hashes: they carry 256 bits of entropy, so a slow hash
adds nothing.
"""

from __future__ import annotations

import hashlib
import sqlite3
from dataclasses import dataclass
from typing import TYPE_CHECKING

from . import errors
from .audit.trail import record
from .clock import iso
from .ids import new_id, new_secret
from .text import check_name

if TYPE_CHECKING:
    from .ledger import LedgerFile

API_KEY_PREFIX = "gxl_"


@dataclass(frozen=True)
class Developer:
    id: str
    name: str
    sandbox: bool
    is_default: bool
    created_at: str

    def to_dict(self) -> dict[str, object]:
        return {"id": self.id, "developerId": self.id, "name": self.name, "sandbox": self.sandbox,
                "isDefault": self.is_default, "createdAt": self.created_at}


@dataclass(frozen=True)
class ApiKey:
    id: str
    developer_id: str
    key: str  # the secret; exists only in the object returned at creation
    prefix: str
    created_at: str

    def to_dict(self) -> dict[str, object]:
        return {"id": self.id, "developerId": self.developer_id, "key": self.key,
                "prefix": self.prefix, "createdAt": self.created_at}


def _from_row(row: sqlite3.Row) -> Developer:
    return Developer(row["id"], row["name"], bool(row["sandbox"]), bool(row["is_default"]),
                     row["created_at"])


def hash_secret(secret: str) -> str:
    # surrogatepass: a presented secret with a lone surrogate hashes (to nothing we issued)
    # rather than raising, so a lookup answers "unknown" instead of crashing.
    return hashlib.sha256(secret.encode("utf-8", "surrogatepass")).hexdigest()


def insert_default_developer(conn: sqlite3.Connection, now: str) -> str:
    dev_id = new_id("developer")
    conn.execute(
        "INSERT INTO developers (id, name, sandbox, is_default, created_at) VALUES (?, ?, 1, 1, ?)",
        (dev_id, "local developer", now),
    )
    return dev_id


def default_developer(ledger: LedgerFile) -> Developer:
    row = ledger.query_one("SELECT * FROM developers WHERE is_default = 1")
    if row is None:
        raise errors.LedgerCorrupt(f"ledger {ledger.path} has no default developer")
    return _from_row(row)


def get_developer(ledger: LedgerFile, developer_id: str) -> Developer:
    row = ledger.query_one("SELECT * FROM developers WHERE id = ?", (developer_id,))
    if row is None:
        raise errors.NotFound(f"developer {developer_id} not found")
    return _from_row(row)


def list_developers(ledger: LedgerFile) -> list[Developer]:
    return [_from_row(r) for r in ledger.query("SELECT * FROM developers ORDER BY created_at, id")]


def create_developer(ledger: LedgerFile, name: str, *, sandbox: bool = False) -> Developer:
    if not isinstance(name, str) or not name.strip():
        raise errors.InvalidInput("developer name must not be empty")
    check_name(name, "developer name")
    dev_id = new_id("developer")
    now = iso(ledger.now())
    with ledger.write() as conn:
        conn.execute(
            "INSERT INTO developers (id, name, sandbox, is_default, created_at) VALUES (?, ?, ?, 0, ?)",
            (dev_id, name.strip(), int(sandbox), now),
        )
        record(ledger, conn, dev_id, "grantex.developer.created",
               metadata={"name": name.strip(), "sandbox": sandbox})
    return get_developer(ledger, dev_id)


def set_sandbox(ledger: LedgerFile, developer_id: str, sandbox: bool) -> Developer:
    with ledger.write() as conn:
        cur = conn.execute("UPDATE developers SET sandbox = ? WHERE id = ?", (int(sandbox), developer_id))
        if cur.rowcount == 0:
            raise errors.NotFound(f"developer {developer_id} not found")
        record(ledger, conn, developer_id, "grantex.developer.updated", metadata={"sandbox": sandbox})
    return get_developer(ledger, developer_id)


def create_api_key(ledger: LedgerFile, developer_id: str, name: str = "") -> ApiKey:
    """A new API key; the returned object is the only place the secret ever appears."""
    if not isinstance(name, str):
        raise errors.InvalidInput("API key name must be a string")
    check_name(name, "API key name")
    get_developer(ledger, developer_id)
    secret = new_secret(API_KEY_PREFIX)
    key_id = new_id("api_key")
    now = iso(ledger.now())
    with ledger.write() as conn:
        conn.execute(
            "INSERT INTO api_keys (id, developer_id, name, key_hash, prefix, created_at) "
            "VALUES (?, ?, ?, ?, ?, ?)",
            (key_id, developer_id, name, hash_secret(secret), secret[:8], now),
        )
        record(ledger, conn, developer_id, "grantex.api_key.created",
               metadata={"keyId": key_id, "name": name})
    return ApiKey(key_id, developer_id, secret, secret[:8], now)


def developer_for_api_key(ledger: LedgerFile, secret: str) -> Developer:
    """The developer an API key belongs to; NotFound for unknown or revoked keys."""
    row = ledger.query_one(
        "SELECT d.* FROM api_keys k JOIN developers d ON d.id = k.developer_id "
        "WHERE k.key_hash = ? AND k.revoked_at IS NULL",
        (hash_secret(secret),),
    )
    if row is None:
        raise errors.NotFound("unknown or revoked API key")
    return _from_row(row)


# ── listing and revoking keys ────────────────────────────────────────────────


@dataclass(frozen=True)
class ApiKeyInfo:
    """What may be shown about an existing key: its id, prefix and dates, never the secret or its hash."""

    id: str
    developer_id: str
    name: str
    prefix: str
    created_at: str
    revoked_at: str | None

    @property
    def revoked(self) -> bool:
        return self.revoked_at is not None

    def to_dict(self) -> dict[str, object]:
        return {"id": self.id, "developerId": self.developer_id, "name": self.name, "prefix": self.prefix,
                "createdAt": self.created_at, "revokedAt": self.revoked_at, "revoked": self.revoked}


_KEY_COLUMNS = "id, developer_id, name, prefix, created_at, revoked_at"


def _key_from_row(row: sqlite3.Row) -> ApiKeyInfo:
    return ApiKeyInfo(row["id"], row["developer_id"], row["name"] or "", row["prefix"], row["created_at"],
                      row["revoked_at"])


def list_api_keys(ledger: LedgerFile, developer_id: str | None = None) -> list[ApiKeyInfo]:
    """Keys of one developer (None: of every developer), revoked ones included, oldest first.

    Revoked keys stay listed: someone checking which key leaked needs to see it is dead.
    """
    if developer_id is None:
        rows = ledger.query(f"SELECT {_KEY_COLUMNS} FROM api_keys ORDER BY created_at, id")
    else:
        get_developer(ledger, developer_id)  # an unknown developer is NotFound, not an empty list
        rows = ledger.query(f"SELECT {_KEY_COLUMNS} FROM api_keys WHERE developer_id = ? "
                            "ORDER BY created_at, id", (developer_id,))
    return [_key_from_row(r) for r in rows]


def get_api_key(ledger: LedgerFile, key_id: str) -> ApiKeyInfo:
    if not isinstance(key_id, str) or not key_id:
        raise errors.InvalidInput("API key id must be a non-empty string")
    row = ledger.query_one(f"SELECT {_KEY_COLUMNS} FROM api_keys WHERE id = ?", (key_id,))
    if row is None:
        raise errors.NotFound(f"API key {key_id} not found")
    return _key_from_row(row)


def revoke_api_key(ledger: LedgerFile, key_id: str) -> ApiKeyInfo:
    """Revoke a key for good: the very next request made with it is refused (401).

    The server looks every request's key up in the file, so no restart or cache flush is
    needed, whichever process revokes. Revoking twice is an error rather than a silent no-op,
    so a typo'd or stale id never looks like it worked.
    """
    get_api_key(ledger, key_id)  # type and existence checks before the write lock
    with ledger.write() as conn:
        row = conn.execute(f"SELECT {_KEY_COLUMNS} FROM api_keys WHERE id = ?", (key_id,)).fetchone()
        if row is None:
            raise errors.NotFound(f"API key {key_id} not found")
        if row["revoked_at"] is not None:
            raise errors.InvalidState(f"API key {key_id} was already revoked at {row['revoked_at']}")
        now = iso(ledger.now())
        conn.execute("UPDATE api_keys SET revoked_at = ? WHERE id = ?", (now, key_id))
        record(ledger, conn, row["developer_id"], "grantex.api_key.revoked",
               metadata={"keyId": key_id, "name": row["name"] or ""})
    return get_api_key(ledger, key_id)


# ── account settings and key rotation (issue 11) ─────────────────────────────


def update_developer(ledger: LedgerFile, developer_id: str, *, name: str | None = None,
                     sandbox: bool | None = None) -> tuple[Developer, dict[str, object]]:
    """Change a developer's name and/or sandbox mode in one transaction with one
    ``grantex.developer.updated`` entry (the action :func:`set_sandbox` records), so a request
    that changes both never half-applies. Returns the developer and what actually changed;
    asking for the current values changes, and records, nothing.

    Which changes a caller may ask for is the face's decision (the server refuses turning
    sandbox *on* for an API key holder: it makes authorize approve without consent).
    """
    if name is not None:
        if not isinstance(name, str) or not name.strip():
            raise errors.InvalidInput("developer name must not be empty")
        check_name(name, "developer name")
        name = name.strip()
    if sandbox is not None and not isinstance(sandbox, bool):
        raise errors.InvalidInput("sandbox must be true or false")
    with ledger.write() as conn:
        row = conn.execute("SELECT * FROM developers WHERE id = ?", (developer_id,)).fetchone()
        if row is None:
            raise errors.NotFound(f"developer {developer_id} not found")
        before = _from_row(row)
        changes: dict[str, object] = {}
        if name is not None and name != before.name:
            changes["name"] = name
        if sandbox is not None and sandbox != before.sandbox:
            changes["sandbox"] = sandbox
        if changes:
            conn.execute("UPDATE developers SET name = ?, sandbox = ? WHERE id = ?",
                         (changes.get("name", before.name), int(bool(changes.get("sandbox", before.sandbox))),
                          developer_id))
            metadata = dict(changes)
            if "name" in changes:
                metadata["previousName"] = before.name
            record(ledger, conn, developer_id, "grantex.developer.updated", metadata=metadata)
    return get_developer(ledger, developer_id), changes


@dataclass(frozen=True)
class RotatedApiKey:
    """The outcome of a rotation: the new key (its secret appears only here) and the old one,
    now revoked."""

    new: ApiKey
    old: ApiKeyInfo


def rotate_api_key(ledger: LedgerFile, *, secret: str | None = None,
                   key_id: str | None = None) -> RotatedApiKey:
    """Replace one live API key (named by its secret, as a request presents it, or by its id)
    with a new key of the same developer and name, revoking the old one in the same
    transaction: there is no moment with both keys dead, nor one with both alive after the
    answer. The old key is refused on the very next request (every request looks its key up).

    Two rotations racing with the same key: the write lock orders them, the second finds the
    key revoked and gets NotFound, so one key never yields two successors.
    """
    if (secret is None) == (key_id is None):
        raise errors.InvalidInput("name the key to rotate by its secret or by its id (one of them)")
    if secret is not None:
        if not isinstance(secret, str) or not secret:
            raise errors.InvalidInput("API key must be a non-empty string")
        where, param = "key_hash = ?", hash_secret(secret)
    else:
        if not isinstance(key_id, str) or not key_id:
            raise errors.InvalidInput("API key id must be a non-empty string")
        where, param = "id = ?", key_id
    new_key = new_secret(API_KEY_PREFIX)
    new_key_id = new_id("api_key")
    now = iso(ledger.now())
    with ledger.write() as conn:
        row = conn.execute(f"SELECT {_KEY_COLUMNS} FROM api_keys WHERE {where}", (param,)).fetchone()
        if row is None:
            raise errors.NotFound("unknown API key" if key_id is None else f"API key {key_id} not found")
        if row["revoked_at"] is not None:
            raise errors.InvalidState(f"API key {row['id']} was revoked at {row['revoked_at']}; "
                                      "only a live key can be rotated")
        old = _key_from_row(row)
        conn.execute("UPDATE api_keys SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL", (now, old.id))
        conn.execute(
            "INSERT INTO api_keys (id, developer_id, name, key_hash, prefix, created_at) "
            "VALUES (?, ?, ?, ?, ?, ?)",
            (new_key_id, old.developer_id, old.name, hash_secret(new_key), new_key[:8], now),
        )
        record(ledger, conn, old.developer_id, "grantex.api_key.created",
               metadata={"keyId": new_key_id, "name": old.name, "rotatedFrom": old.id})
        record(ledger, conn, old.developer_id, "grantex.api_key.revoked",
               metadata={"keyId": old.id, "name": old.name, "rotatedTo": new_key_id})
    return RotatedApiKey(ApiKey(new_key_id, old.developer_id, new_key, new_key[:8], now),
                         ApiKeyInfo(old.id, old.developer_id, old.name, old.prefix, old.created_at, now))
