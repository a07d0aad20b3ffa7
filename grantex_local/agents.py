"""Agents: registration, lifecycle and their DID-backed key pairs.

An agent is ``ag_<ULID>`` with DID ``did:grantex:ag_<ULID>``. Suspending an
agent makes every token it holds (and every token delegated from its grants)
fail online verification at once; reactivating restores them. Deleting is a
tombstone: the row stays so that grants and the audit trail keep their
references, and the agent can never be used again.
"""

from __future__ import annotations

import json
import sqlite3
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from . import errors, events, keys
from .audit.trail import record
from .clock import iso
from .ids import new_id
from .models import Agent
from .scopes import normalize_scopes
from .text import check_name, check_text

if TYPE_CHECKING:
    from .founding import Ledger

STATUSES = ("active", "suspended", "deleted")
MAX_NAME = 200
MAX_DESCRIPTION = 2000


def _from_row(row: sqlite3.Row, key_row: sqlite3.Row | None = None) -> Agent:
    public_jwk = json.loads(key_row["public_jwk"]) if key_row is not None else None
    return Agent(
        id=row["id"], did=row["did"], name=row["name"], description=row["description"],
        scopes=tuple(json.loads(row["scopes"])), status=row["status"],
        developer_id=row["developer_id"], created_at=row["created_at"],
        updated_at=row["updated_at"], redirect_uris=tuple(json.loads(row["redirect_uris"])),
        public_jwk=public_jwk, key_thumbprint=key_row["kid"] if key_row is not None else None,
        status_changed_at=row["status_changed_at"],
    )


def _name(value: object) -> str:
    if not isinstance(value, str) or not value.strip():
        raise errors.InvalidInput("agent name must be a non-empty string")
    check_name(value, "agent name")
    if len(value) > MAX_NAME:
        raise errors.InvalidInput(f"agent name must be at most {MAX_NAME} characters")
    return value.strip()


def _description(value: object) -> str:
    if value is None:
        return ""
    if not isinstance(value, str) or len(value) > MAX_DESCRIPTION:
        raise errors.InvalidInput(f"description must be a string of at most {MAX_DESCRIPTION} characters")
    return check_name(value, "agent description")


def validate_redirect_uris(value: object) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str) or not isinstance(value, list):
        raise errors.InvalidInput("redirectUris must be a list of URLs")
    out = []
    for uri in value:
        parts = None
        if isinstance(uri, str):
            check_text(uri, "redirect URI")
            try:
                parts = urlsplit(uri)
            except ValueError:  # e.g. an unclosed "[" of an IPv6 host
                parts = None
        if parts is None or parts.scheme not in ("http", "https") or not parts.netloc or parts.fragment:
            raise errors.InvalidInput(
                f"redirect URI {uri!r} must be an absolute http(s) URL without a fragment")
        out.append(uri)
    return out


def register(
    ledger: Ledger,
    developer_id: str,
    *,
    name: str,
    scopes: list[str],
    description: str = "",
    redirect_uris: list[str] | None = None,
    public_jwk: dict[str, Any] | None = None,
) -> Agent:
    """Register an agent with its own key pair (or the public JWK it brings)."""
    clean_name = _name(name)
    clean_description = _description(description)
    clean_scopes = normalize_scopes(scopes, allow_empty=True)
    uris = validate_redirect_uris(redirect_uris)
    key = (keys.import_agent_public_jwk(public_jwk) if public_jwk is not None
           else keys.generate_agent_key(ledger.passphrase_for_new_keys()))
    agent_id = new_id("agent")
    now = iso(ledger.now())
    with ledger.write() as conn:
        if conn.execute("SELECT 1 FROM developers WHERE id = ?", (developer_id,)).fetchone() is None:
            raise errors.NotFound(f"developer {developer_id} not found")
        conn.execute(
            "INSERT INTO agents (id, developer_id, did, name, description, scopes, redirect_uris, "
            "status, created_at, updated_at, status_changed_at) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, 'active', ?, ?, ?)",
            (agent_id, developer_id, "did:grantex:" + agent_id, clean_name, clean_description,
             json.dumps(clean_scopes), json.dumps(uris), now, now, now),
        )
        keys.insert_agent_key(conn, agent_id, key, now)
        record(ledger, conn, developer_id, "grantex.agent.registered", agent_id=agent_id,
               agent_did="did:grantex:" + agent_id,
               metadata={"name": clean_name, "scopes": clean_scopes, "keyThumbprint": key.kid,
                         "ownKey": public_jwk is not None})
        events.emit(ledger, conn, developer_id, "agent.registered", {"agentId": agent_id})
    return get(ledger, developer_id, agent_id)


def _row(ledger: Ledger, developer_id: str | None, agent_id: object) -> sqlite3.Row:
    if not isinstance(agent_id, str) or not agent_id:
        raise errors.InvalidInput("agent id must be a non-empty string")
    check_text(agent_id, "agent id")
    row = ledger.query_one("SELECT * FROM agents WHERE id = ?", (agent_id,))
    if row is None or (developer_id is not None and row["developer_id"] != developer_id):
        raise errors.NotFound(f"agent {agent_id} not found")
    return row


def _current_key(ledger: Ledger, agent_id: str) -> sqlite3.Row | None:
    return ledger.query_one(
        "SELECT * FROM agent_keys WHERE agent_id = ? AND retired_at IS NULL "
        "ORDER BY created_at DESC LIMIT 1", (agent_id,),
    )


def get(ledger: Ledger, developer_id: str | None, agent_id: str, *, include_deleted: bool = False) -> Agent:
    row = _row(ledger, developer_id, agent_id)
    if row["status"] == "deleted" and not include_deleted:
        raise errors.NotFound(f"agent {agent_id} not found (deleted)")
    return _from_row(row, _current_key(ledger, agent_id))


def require_active(ledger: Ledger, developer_id: str, agent_id: object, what: str = "agent") -> Agent:
    """The agent, or a typed error naming why it cannot act (unknown, suspended, deleted)."""
    row = _row(ledger, developer_id, agent_id)
    if row["status"] == "deleted":
        raise errors.NotFound(f"{what} {agent_id} not found (deleted)")
    if row["status"] != "active":
        raise errors.AgentInactive(f"{what} {agent_id} is {row['status']}")
    return _from_row(row)


def list_agents(ledger: Ledger, developer_id: str | None, *, status: str | None = None,
                include_deleted: bool = False) -> list[Agent]:
    sql = "SELECT * FROM agents WHERE 1 = 1"
    params: list[Any] = []
    if developer_id is not None:
        sql += " AND developer_id = ?"
        params.append(developer_id)
    if status is not None:
        if status not in STATUSES:
            raise errors.InvalidInput(f"status must be one of {', '.join(STATUSES)}")
        sql += " AND status = ?"
        params.append(status)
    elif not include_deleted:
        sql += " AND status != 'deleted'"
    sql += " ORDER BY created_at, id"
    return [_from_row(r) for r in ledger.query(sql, params)]


def update(
    ledger: Ledger,
    developer_id: str | None,
    agent_id: str,
    *,
    name: str | None = None,
    description: str | None = None,
    scopes: list[str] | None = None,
    redirect_uris: list[str] | None = None,
    status: str | None = None,
) -> Agent:
    """Change fields; ``status`` may be ``active`` or ``suspended`` (delete with :func:`delete`)."""
    changes: dict[str, Any] = {}
    if name is not None:
        changes["name"] = _name(name)
    if description is not None:
        changes["description"] = _description(description)
    if scopes is not None:
        changes["scopes"] = json.dumps(normalize_scopes(scopes, allow_empty=True))
    if redirect_uris is not None:
        changes["redirect_uris"] = json.dumps(validate_redirect_uris(redirect_uris))
    if status is not None and status not in ("active", "suspended"):
        raise errors.InvalidInput("status must be 'active' or 'suspended'")
    now = iso(ledger.now())
    with ledger.write() as conn:
        row = _row(ledger, developer_id, agent_id)
        if row["status"] == "deleted":
            raise errors.NotFound(f"agent {agent_id} not found (deleted)")
        if status is not None and status != row["status"]:
            changes["status"] = status
            changes["status_changed_at"] = now
        if changes:
            changes["updated_at"] = now
            assignments = ", ".join(f"{k} = ?" for k in changes)
            conn.execute(f"UPDATE agents SET {assignments} WHERE id = ?", [*changes.values(), agent_id])
            edited = sorted(k for k in changes if k not in ("status", "status_changed_at", "updated_at"))
            who = {"agent_id": agent_id, "agent_did": row["did"]}
            if edited:
                record(ledger, conn, row["developer_id"], "grantex.agent.updated", **who,
                       metadata={"changed": edited})
                events.emit(ledger, conn, row["developer_id"], "agent.updated", {"agentId": agent_id})
            if "status" in changes:
                verb = "suspended" if status == "suspended" else "reactivated"
                record(ledger, conn, row["developer_id"], f"grantex.agent.{verb}", **who)
                # The grants live at this moment: the revocation feed turns them into
                # "suspended"/"resumed" entries, each remembered until its expiry.
                live = conn.execute(
                    "SELECT id, expires_at FROM grants WHERE agent_id = ? AND revoked_at IS NULL "
                    "AND expires_at > ? ORDER BY id", (agent_id, now)).fetchall()
                events.emit(ledger, conn, row["developer_id"], f"agent.{verb}", {
                    "agentId": agent_id,
                    "grants": [{"grantId": g["id"], "expiresAt": g["expires_at"]} for g in live]})
    return get(ledger, developer_id, agent_id)


def suspend(ledger: Ledger, developer_id: str | None, agent_id: str) -> Agent:
    return update(ledger, developer_id, agent_id, status="suspended")


def reactivate(ledger: Ledger, developer_id: str | None, agent_id: str) -> Agent:
    return update(ledger, developer_id, agent_id, status="active")


def delete(ledger: Ledger, developer_id: str | None, agent_id: str) -> None:
    """Tombstone the agent: its tokens stop verifying and it cannot be used again."""
    now = iso(ledger.now())
    with ledger.write() as conn:
        row = _row(ledger, developer_id, agent_id)
        if row["status"] == "deleted":
            raise errors.NotFound(f"agent {agent_id} not found (deleted)")
        conn.execute(
            "UPDATE agents SET status = 'deleted', updated_at = ?, status_changed_at = ? WHERE id = ?",
            (now, now, agent_id),
        )
        conn.execute("UPDATE agent_keys SET retired_at = ? WHERE agent_id = ? AND retired_at IS NULL",
                     (now, agent_id))
        record(ledger, conn, row["developer_id"], "grantex.agent.deleted", agent_id=agent_id,
               agent_did=row["did"])
        events.emit(ledger, conn, row["developer_id"], "agent.deleted", {"agentId": agent_id})


def rotate_key(ledger: Ledger, developer_id: str | None, agent_id: str,
               public_jwk: dict[str, Any] | None = None) -> Agent:
    """Give the agent a new key pair; the DID stays the same."""
    key = (keys.import_agent_public_jwk(public_jwk) if public_jwk is not None
           else keys.generate_agent_key(ledger.passphrase_for_new_keys()))
    now = iso(ledger.now())
    with ledger.write() as conn:
        row = _row(ledger, developer_id, agent_id)
        if row["status"] == "deleted":
            raise errors.NotFound(f"agent {agent_id} not found (deleted)")
        if conn.execute("SELECT 1 FROM agent_keys WHERE agent_id = ? AND kid = ?",
                        (agent_id, key.kid)).fetchone():
            raise errors.InvalidInput("that key has been used by this agent before; use a new one")
        conn.execute("UPDATE agent_keys SET retired_at = ? WHERE agent_id = ? AND retired_at IS NULL",
                     (now, agent_id))
        keys.insert_agent_key(conn, agent_id, key, now)
        conn.execute("UPDATE agents SET updated_at = ? WHERE id = ?", (now, agent_id))
        record(ledger, conn, row["developer_id"], "grantex.agent.key_rotated", agent_id=agent_id,
               agent_did=row["did"], metadata={"keyThumbprint": key.kid})
    return get(ledger, developer_id, agent_id)


def did_document(ledger: Ledger, developer_id: str | None, agent_id: str) -> dict[str, Any]:
    row = _row(ledger, developer_id, agent_id)
    key_rows = ledger.query("SELECT * FROM agent_keys WHERE agent_id = ? ORDER BY created_at", (agent_id,))
    doc = keys.did_document(row["did"], key_rows)
    doc["controller"] = row["developer_id"]
    return doc


def agent_private_key(ledger: Ledger, agent_id: str) -> Any:
    """The agent's current private key object, when the ledger holds it (None otherwise)."""
    row = _current_key(ledger, agent_id)
    if row is None or row["private_pem"] is None:
        return None
    return keys.load_private_key(bytes(row["private_pem"]), bool(row["encrypted"]), ledger.passphrase)
