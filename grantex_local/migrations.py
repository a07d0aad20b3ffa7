"""Schema migrations, recorded in the ledger file itself.

Each migration is a function registered with :func:`migration`; the ones that
have run are listed in ``_migrations`` and counted in ``PRAGMA user_version``.
Opening a ledger compares ``user_version`` with :data:`SCHEMA_VERSION` (one
cheap PRAGMA), so sqlite-utils is only imported when a file needs creating or
upgrading: the command line stays fast. Tables are named with ``db.table(name)`` rather
than ``db[name]`` (which may also answer a view), so the type checker sees each one can be
created and altered.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable

from .clock import iso, system_clock

Migration = Callable[["object"], None]
_MIGRATIONS: list[tuple[str, Callable[..., None]]] = []


def migration(fn: Callable[..., None]) -> Callable[..., None]:
    _MIGRATIONS.append((fn.__name__, fn))
    return fn


@migration
def m001_core(db: object) -> None:
    """Developers, keys, agents, auth requests, grants, tokens, policies, settings."""
    from sqlite_utils import Database

    assert isinstance(db, Database)
    db.table("settings").create({"key": str, "value": str}, pk="key", not_null={"value"})
    db.table("developers").create(
        {"id": str, "name": str, "sandbox": int, "is_default": int, "created_at": str},
        pk="id", not_null={"name", "sandbox", "is_default", "created_at"},
    )
    db.table("api_keys").create(
        {"id": str, "developer_id": str, "name": str, "key_hash": str, "prefix": str,
         "created_at": str, "revoked_at": str},
        pk="id", foreign_keys=[("developer_id", "developers", "id")],
        not_null={"developer_id", "key_hash", "prefix", "created_at"},
    )
    db.table("api_keys").create_index(["key_hash"], unique=True)
    db.table("signing_keys").create(
        {"kid": str, "alg": str, "private_pem": bytes, "encrypted": int, "public_jwk": str,
         "created_at": str, "retired_at": str},
        pk="kid", not_null={"alg", "private_pem", "encrypted", "public_jwk", "created_at"},
    )
    db.table("agents").create(
        {"id": str, "developer_id": str, "did": str, "name": str, "description": str,
         "scopes": str, "redirect_uris": str, "status": str, "created_at": str,
         "updated_at": str, "status_changed_at": str},
        pk="id", foreign_keys=[("developer_id", "developers", "id")],
        not_null={"developer_id", "did", "name", "description", "scopes", "redirect_uris",
                  "status", "created_at", "updated_at"},
    )
    db.table("agents").create_index(["did"], unique=True)
    db.table("agents").create_index(["developer_id", "status"])
    db.table("agent_keys").create(
        {"agent_id": str, "kid": str, "public_jwk": str, "private_pem": bytes, "encrypted": int,
         "created_at": str, "retired_at": str},
        pk=("agent_id", "kid"), foreign_keys=[("agent_id", "agents", "id")],
        not_null={"public_jwk", "encrypted", "created_at"},
    )
    db.table("auth_requests").create(
        {"id": str, "developer_id": str, "agent_id": str, "principal_id": str, "scopes": str,
         "expires_in": str, "redirect_uri": str, "state": str, "audience": str,
         "code_challenge": str, "code_challenge_method": str, "status": str,
         "created_at": str, "expires_at": str, "decided_at": str, "decided_by": str,
         "policy_id": str, "code_hash": str, "code_expires_at": str, "grant_id": str},
        pk="id",
        foreign_keys=[("developer_id", "developers", "id"), ("agent_id", "agents", "id")],
        not_null={"developer_id", "agent_id", "principal_id", "scopes", "expires_in", "status",
                  "created_at", "expires_at"},
    )
    db.table("auth_requests").create_index(["code_hash"], unique=True)
    db.table("auth_requests").create_index(["developer_id", "status"])
    db.table("grants").create(
        {"id": str, "developer_id": str, "agent_id": str, "principal_id": str, "scopes": str,
         "audience": str, "parent_grant_id": str, "parent_token_id": str,
         "delegation_depth": int, "auth_request_id": str, "issued_at": str,
         "expires_at": str, "revoked_at": str},
        pk="id",
        foreign_keys=[("developer_id", "developers", "id"), ("agent_id", "agents", "id"),
                      ("parent_grant_id", "grants", "id")],
        not_null={"developer_id", "agent_id", "principal_id", "scopes", "delegation_depth",
                  "issued_at", "expires_at"},
    )
    db.table("grants").create_index(["parent_grant_id"])
    db.table("grants").create_index(["parent_token_id"])
    db.table("grants").create_index(["agent_id"])
    db.table("grants").create_index(["developer_id", "principal_id"])
    db.table("tokens").create(
        {"jti": str, "grant_id": str, "kid": str, "issued_at": str, "expires_at": str,
         "revoked_at": str, "refresh_hash": str, "refresh_used_at": str},
        pk="jti", foreign_keys=[("grant_id", "grants", "id")],
        not_null={"grant_id", "kid", "issued_at", "expires_at"},
    )
    db.table("tokens").create_index(["grant_id"])
    db.table("tokens").create_index(["kid", "expires_at"])
    db.table("tokens").create_index(["refresh_hash"], unique=True)
    db.table("policies").create(
        {"id": str, "developer_id": str, "name": str, "effect": str, "priority": int,
         "agent_id": str, "principal_id": str, "scopes": str, "time_window": str,
         "created_at": str, "updated_at": str},
        pk="id", foreign_keys=[("developer_id", "developers", "id")],
        not_null={"developer_id", "name", "effect", "priority", "created_at", "updated_at"},
    )


@migration
def m002_audit(db: object) -> None:
    """The hash-chained audit log, its Merkle nodes, checkpoints and the checkpoint key.

    An entry is stored as the exact bytes that were hashed (``preimage``) and
    every queryable field is a generated column read out of those bytes, so
    the fields can never drift from what the hash covers.
    """
    from sqlite_utils import Database

    assert isinstance(db, Database)
    fields = {"id": "id", "developer_id": "developerId", "agent_id": "agentId",
              "agent_did": "agentDid", "grant_id": "grantId", "principal_id": "principalId",
              "action": "action", "status": "status", "timestamp": "timestamp",
              "prev_hash": "prevHash"}
    generated = ",\n".join(
        f"  {column} TEXT GENERATED ALWAYS AS (json_extract(preimage, '$.{key}')) VIRTUAL"
        for column, key in fields.items()
    )
    db.execute(
        "CREATE TABLE audit_entries (\n  seq INTEGER NOT NULL,\n  preimage TEXT NOT NULL,\n"
        f"  hash TEXT NOT NULL,\n{generated}\n)"
    )
    db.table("audit_entries").create_index(["developer_id", "seq"], unique=True)
    db.table("audit_entries").create_index(["id"], unique=True)
    db.table("audit_entries").create_index(["developer_id", "agent_id", "seq"])
    db.table("audit_entries").create_index(["grant_id", "seq"])
    db.table("audit_entries").create_index(["developer_id", "action", "seq"])
    db.table("audit_entries").create_index(["developer_id", "timestamp"])
    db.execute(
        "CREATE TABLE audit_merkle (developer_id TEXT NOT NULL, level INTEGER NOT NULL, "
        "idx INTEGER NOT NULL, hash BLOB NOT NULL, PRIMARY KEY (developer_id, level, idx)) WITHOUT ROWID"
    )
    db.table("audit_checkpoints").create(
        {"id": str, "developer_id": str, "size": int, "root_hash": str, "head_entry_id": str,
         "head_hash": str, "head_timestamp": str, "timestamp": str, "note": str},
        pk="id", not_null={"developer_id", "size", "root_hash", "timestamp", "note"},
    )
    db.table("audit_checkpoints").create_index(["developer_id", "size"])
    db.table("checkpoint_keys").create(
        {"name": str, "public_key": bytes, "private_pem": bytes, "encrypted": int, "created_at": str},
        pk="name", not_null={"public_key", "private_pem", "encrypted", "created_at"},
    )
    import secrets

    db.execute("INSERT OR IGNORE INTO settings (key, value) VALUES ('ledger_id', ?)",
               ["lg_" + secrets.token_hex(8)])
    for table in ("audit_entries", "audit_merkle", "audit_checkpoints"):
        for verb in ("UPDATE", "DELETE"):
            db.execute(
                f"CREATE TRIGGER {table}_no_{verb.lower()} BEFORE {verb} ON {table} "
                f"BEGIN SELECT RAISE(ABORT, '{table} is append-only'); END"
            )


@migration
def m003_revocation_index(db: object) -> None:
    """A small index of revocation entries by grant: "was this action logged after its grant
    was revoked?" is then one index probe per entry, however long the grant's history."""
    from sqlite_utils import Database

    assert isinstance(db, Database)
    db.execute("CREATE INDEX idx_audit_entries_revocations ON audit_entries (grant_id, seq) "
               "WHERE action = 'grantex.grant.revoked'")


@migration
def m004_consent_channel_and_approval_key(db: object) -> None:
    """Through which channel each consent decision came (consent page with a principal session
    or an approval code, CLI, TUI, policy, sandbox...), and the secret the one-time approval
    codes are derived from. The secret lives in its own table, not in ``settings``: settings
    are printed by ``config list`` and ``info``, and exports never read this table.

    Decisions made before this migration get a channel only where ``decided_by`` says it
    unambiguously; the others stay NULL (unknown), never guessed."""
    import secrets

    from sqlite_utils import Database

    assert isinstance(db, Database)
    db.table("auth_requests").add_column("decision_channel", str)
    for channel, condition in (("policy", "decided_by LIKE 'policy:%'"),
                               ("sandbox", "decided_by = 'sandbox'"),
                               ("sandbox-api", "decided_by = 'sandbox api'"),
                               ("consent-page/open", "decided_by = 'consent page'")):
        db.execute(f"UPDATE auth_requests SET decision_channel = ? WHERE {condition}", [channel])
    db.table("local_secrets").create({"name": str, "secret": bytes, "created_at": str}, pk="name",
                               not_null={"secret", "created_at"})
    db.execute("INSERT INTO local_secrets (name, secret, created_at) VALUES ('approval_code_key', ?, ?)",
               [secrets.token_bytes(32), iso(system_clock())])



@migration
def m005_events(db: object) -> None:
    """The event outbox: every change the SSE stream, webhooks and the revocation feed report,
    written in the transaction that makes the change, so no reader sees a change without its
    event or an event for a change that rolled back. ``seq`` (AUTOINCREMENT: never reused, even
    after deletes) is the cursor every consumer resumes from."""
    from sqlite_utils import Database

    assert isinstance(db, Database)
    db.execute("CREATE TABLE events (seq INTEGER PRIMARY KEY AUTOINCREMENT, id TEXT NOT NULL UNIQUE, "
               "developer_id TEXT NOT NULL, type TEXT NOT NULL, created_at TEXT NOT NULL, "
               "body TEXT NOT NULL)")
    db.execute("CREATE INDEX idx_events_developer_seq ON events (developer_id, seq)")


@migration
def m006_webhooks(db: object) -> None:
    """Webhooks and their delivery log. The secret is stored as given (it signs every delivery,
    so it cannot be hashed); exports never read these tables. ``start_seq`` is the outbox seq at
    creation: a webhook hears only what happens after it exists. ``webhook_cursor`` is how far
    the outbox has been turned into delivery rows; UNIQUE(webhook_id, event_seq) keeps a second
    pass (another server process, a restart) from queueing an event twice."""
    from sqlite_utils import Database

    assert isinstance(db, Database)
    db.execute("CREATE TABLE webhooks (id TEXT PRIMARY KEY, developer_id TEXT NOT NULL, "
               "url TEXT NOT NULL, events TEXT NOT NULL, secret TEXT NOT NULL, "
               "start_seq INTEGER NOT NULL, created_at TEXT NOT NULL, deleted_at TEXT)")
    db.execute("CREATE INDEX idx_webhooks_developer ON webhooks (developer_id, deleted_at)")
    db.execute("CREATE TABLE webhook_deliveries (id TEXT PRIMARY KEY, "
               "webhook_id TEXT NOT NULL REFERENCES webhooks(id), event_seq INTEGER NOT NULL, "
               "event_id TEXT NOT NULL, event_type TEXT NOT NULL, status TEXT NOT NULL "
               "CHECK (status IN ('pending', 'delivered', 'failed')), attempts INTEGER NOT NULL, "
               "max_attempts INTEGER NOT NULL, next_attempt_at REAL, lease_until REAL, "
               "last_error TEXT, last_status INTEGER, created_at TEXT NOT NULL, delivered_at TEXT, "
               "UNIQUE (webhook_id, event_seq))")
    db.execute("CREATE INDEX idx_webhook_deliveries_due ON webhook_deliveries "
               "(status, next_attempt_at) WHERE status = 'pending'")
    db.execute("CREATE TABLE webhook_cursor (id INTEGER PRIMARY KEY CHECK (id = 1), "
               "seq INTEGER NOT NULL)")
    db.execute("INSERT INTO webhook_cursor (id, seq) VALUES (1, "
               "(SELECT COALESCE(MAX(seq), 0) FROM events))")



@migration
def m007_anomalies(db: object) -> None:
    """Anomalies found by ``detect`` and the per-developer response policy. ``fingerprint`` is
    what makes detection idempotent: the same finding (type, agent, principal, grant and the
    first audit entry behind it) maps to the same row however often detection runs, so an
    acknowledged anomaly stays acknowledged. ``anomaly_policy`` holds one row per developer
    that changed the default (alert only)."""
    from sqlite_utils import Database

    assert isinstance(db, Database)
    db.execute("CREATE TABLE anomalies (id TEXT PRIMARY KEY, developer_id TEXT NOT NULL, "
               "fingerprint TEXT NOT NULL, type TEXT NOT NULL, severity TEXT NOT NULL, "
               "description TEXT NOT NULL, agent_id TEXT, principal_id TEXT, grant_id TEXT, "
               "metadata TEXT NOT NULL, detected_at TEXT NOT NULL, acknowledged_at TEXT, "
               "acknowledged_by TEXT, UNIQUE (developer_id, fingerprint))")
    db.execute("CREATE INDEX idx_anomalies_open ON anomalies (developer_id, acknowledged_at, detected_at)")
    db.execute("CREATE TABLE anomaly_policy (developer_id TEXT PRIMARY KEY, mode TEXT NOT NULL "
               "CHECK (mode IN ('alert_only', 'revoke_agent_grants')), updated_at TEXT NOT NULL)")


@migration
def m008_scim(db: object) -> None:
    """SCIM 2.0 provisioning, locally: bearer tokens (only their SHA-256 is stored; the token is
    shown once) and the users a provisioning client creates. ``user_name`` is unique per
    developer, as SCIM requires (a duplicate is 409 ``uniqueness``)."""
    from sqlite_utils import Database

    assert isinstance(db, Database)
    db.execute("CREATE TABLE scim_tokens (id TEXT PRIMARY KEY, developer_id TEXT NOT NULL, "
               "label TEXT NOT NULL, token_hash TEXT NOT NULL UNIQUE, created_at TEXT NOT NULL, "
               "last_used_at TEXT, revoked_at TEXT)")
    db.execute("CREATE INDEX idx_scim_tokens_developer ON scim_tokens (developer_id, revoked_at)")
    db.execute("CREATE TABLE scim_users (id TEXT PRIMARY KEY, developer_id TEXT NOT NULL, "
               "external_id TEXT, user_name TEXT NOT NULL, display_name TEXT, "
               "active INTEGER NOT NULL, emails TEXT NOT NULL, created_at TEXT NOT NULL, "
               "last_modified TEXT NOT NULL, UNIQUE (developer_id, user_name))")


@migration
def m009_sso(db: object) -> None:
    """SSO configuration, locally: connections (protocol settings as JSON; secrets are never
    stored, only whether one was given and its SHA-256 fingerprint), the legacy single OIDC
    config, per-developer enforcement, login states (one-time, short-lived) and sessions."""
    from sqlite_utils import Database

    assert isinstance(db, Database)
    db.execute("CREATE TABLE sso_connections (id TEXT PRIMARY KEY, developer_id TEXT NOT NULL, "
               "name TEXT NOT NULL, protocol TEXT NOT NULL CHECK (protocol IN ('oidc', 'saml', 'ldap')), "
               "status TEXT NOT NULL, settings TEXT NOT NULL, secret_fingerprint TEXT, "
               "created_at TEXT NOT NULL, updated_at TEXT NOT NULL)")
    db.execute("CREATE INDEX idx_sso_connections_developer ON sso_connections (developer_id, created_at)")
    db.execute("CREATE TABLE sso_config (developer_id TEXT PRIMARY KEY, issuer_url TEXT NOT NULL, "
               "client_id TEXT NOT NULL, redirect_uri TEXT NOT NULL, secret_fingerprint TEXT NOT NULL, "
               "created_at TEXT NOT NULL, updated_at TEXT NOT NULL)")
    db.execute("CREATE TABLE sso_enforcement (developer_id TEXT PRIMARY KEY, enforce INTEGER NOT NULL, "
               "updated_at TEXT NOT NULL)")
    db.execute("CREATE TABLE sso_states (id TEXT PRIMARY KEY, developer_id TEXT NOT NULL, "
               "connection_id TEXT NOT NULL, state_hash TEXT NOT NULL UNIQUE, nonce TEXT NOT NULL, "
               "redirect_uri TEXT, created_at TEXT NOT NULL, expires_at TEXT NOT NULL, used_at TEXT)")
    db.execute("CREATE TABLE sso_sessions (id TEXT PRIMARY KEY, developer_id TEXT NOT NULL, "
               "connection_id TEXT NOT NULL, idp_subject TEXT NOT NULL, principal_id TEXT, "
               "email TEXT, name TEXT, groups TEXT NOT NULL, mapped_scopes TEXT NOT NULL, "
               "created_at TEXT NOT NULL, expires_at TEXT NOT NULL, revoked_at TEXT)")
    db.execute("CREATE INDEX idx_sso_sessions_developer ON sso_sessions (developer_id, expires_at)")



@migration
def m010_budgets(db: object) -> None:
    """Budgets (issue 13). Money is INTEGER units of 0.0001 (the reference's NUMERIC(18,4)), so
    sums are exact. An allocation keeps its own remaining (what its grant may still spend or
    carve out for a delegated child) and its subtree's spend; ``parent_allocation_id`` is the
    nearest allocated ancestor it was carved from. The CHECKs are the last line: a bug that
    tried to overspend fails the whole transaction instead of writing a negative balance."""
    from sqlite_utils import Database

    assert isinstance(db, Database)
    db.execute("CREATE TABLE budget_allocations (id TEXT PRIMARY KEY, developer_id TEXT NOT NULL, "
               "grant_id TEXT NOT NULL UNIQUE, parent_allocation_id TEXT, currency TEXT NOT NULL, "
               "initial_units INTEGER NOT NULL CHECK (initial_units > 0), "
               "remaining_units INTEGER NOT NULL CHECK (remaining_units >= 0), "
               "spent_units INTEGER NOT NULL DEFAULT 0 CHECK (spent_units >= 0), "
               "carved_units INTEGER NOT NULL DEFAULT 0 CHECK (carved_units >= 0), "
               "subtree_spent_units INTEGER NOT NULL DEFAULT 0 "
               "CHECK (subtree_spent_units >= 0 AND subtree_spent_units <= initial_units), "
               "created_at TEXT NOT NULL, updated_at TEXT NOT NULL)")
    db.execute("CREATE INDEX idx_budget_allocations_developer ON budget_allocations "
               "(developer_id, created_at)")
    db.execute("CREATE TABLE budget_transactions (seq INTEGER PRIMARY KEY AUTOINCREMENT, "
               "id TEXT NOT NULL UNIQUE, developer_id TEXT NOT NULL, grant_id TEXT NOT NULL, "
               "allocation_id TEXT NOT NULL, amount_units INTEGER NOT NULL CHECK (amount_units > 0), "
               "description TEXT, metadata TEXT NOT NULL, created_at TEXT NOT NULL)")
    db.execute("CREATE INDEX idx_budget_transactions_grant ON budget_transactions (grant_id, seq)")


@migration
def m011_decisions(db: object) -> None:
    """Decisions (issue 13): the current version of each case, decision requests (the action as
    canonical JSON with its hash, memo and policy score with theirs, four eyes, the agent it is
    for), and the decision grants minted on approval (the token kept so the requester can fetch
    it; single use: ``consumed_at``, revoked when the case moves to another version)."""
    from sqlite_utils import Database

    assert isinstance(db, Database)
    db.execute("CREATE TABLE decision_cases (developer_id TEXT NOT NULL, case_id TEXT NOT NULL, "
               "case_version TEXT NOT NULL, updated_at TEXT NOT NULL, PRIMARY KEY (developer_id, case_id))")
    db.execute("CREATE TABLE decision_requests (id TEXT PRIMARY KEY, developer_id TEXT NOT NULL, "
               "status TEXT NOT NULL, action TEXT NOT NULL, action_hash TEXT NOT NULL, "
               "case_id TEXT NOT NULL, case_version TEXT NOT NULL, connector TEXT NOT NULL, "
               "memo TEXT NOT NULL, memo_ref TEXT, memo_hash TEXT NOT NULL, policy_score TEXT NOT NULL, "
               "policy_score_ref TEXT, policy_score_hash TEXT NOT NULL, "
               "approvals_required INTEGER NOT NULL, agent_id TEXT, grant_id TEXT, "
               "created_at TEXT NOT NULL, expires_at TEXT NOT NULL, decided_at TEXT)")
    db.execute("CREATE INDEX idx_decision_requests_open ON decision_requests "
               "(developer_id, action_hash, case_version, status)")
    db.execute("CREATE INDEX idx_decision_requests_case ON decision_requests (developer_id, case_id)")
    db.execute("CREATE TABLE decision_grants (jti TEXT PRIMARY KEY, request_id TEXT NOT NULL "
               "REFERENCES decision_requests (id), developer_id TEXT NOT NULL, approver TEXT NOT NULL, "
               "position INTEGER NOT NULL, channel TEXT NOT NULL, dwell_ms INTEGER NOT NULL, "
               "token TEXT NOT NULL, issued_at TEXT NOT NULL, expires_at TEXT NOT NULL, "
               "consumed_at TEXT, revoked_at TEXT, UNIQUE (request_id, approver), "
               "UNIQUE (request_id, position))")


@migration
def m012_vault(db: object) -> None:
    """The credential vault (issue 13). Secrets live only as AES-256-GCM ciphertext (``nonce``,
    ``ciphertext``) whose associated data names the row, so a ciphertext moved to another row
    does not decrypt. ``protection`` says which key: ``passphrase`` (derived with scrypt from
    the ledger's passphrase, salt and parameters in ``vault_kdf`` with a check value that makes a
    wrong passphrase fail before anything is written) or ``insecure`` (a random key in
    ``local_secrets``, only on the owner's explicit ``--insecure-store``). One-time exchange
    references keep only their SHA-256. Exports never read these tables."""
    from sqlite_utils import Database

    assert isinstance(db, Database)
    db.execute("CREATE TABLE vault_credentials (id TEXT PRIMARY KEY, developer_id TEXT NOT NULL, "
               "principal_id TEXT NOT NULL, service TEXT NOT NULL, credential_type TEXT NOT NULL, "
               "token_expires_at TEXT, metadata TEXT NOT NULL, protection TEXT NOT NULL "
               "CHECK (protection IN ('passphrase', 'insecure')), nonce BLOB NOT NULL, "
               "ciphertext BLOB NOT NULL, created_at TEXT NOT NULL, updated_at TEXT NOT NULL, "
               "UNIQUE (developer_id, principal_id, service))")
    db.execute("CREATE TABLE vault_kdf (id INTEGER PRIMARY KEY CHECK (id = 1), kdf TEXT NOT NULL, "
               "salt BLOB NOT NULL, params TEXT NOT NULL, check_nonce BLOB NOT NULL, "
               "check_ciphertext BLOB NOT NULL, created_at TEXT NOT NULL)")
    db.execute("CREATE TABLE vault_references (ref_hash TEXT PRIMARY KEY, credential_id TEXT NOT NULL, "
               "developer_id TEXT NOT NULL, grant_id TEXT NOT NULL, created_at TEXT NOT NULL, "
               "expires_at TEXT NOT NULL, redeemed_at TEXT)")



@migration
def m013_consent_bundles(db: object) -> None:
    """Consent bundles for offline devices (grantex-gemma): the grant they carry, the public
    half of each bundle's Ed25519 audit key (the private half exists only in the bundle handed
    out), the offline expiry, and how far the device's log has been synced (the last offline
    seq and hash accepted, so a re-sent prefix is recognised and skipped)."""
    from sqlite_utils import Database

    assert isinstance(db, Database)
    db.execute("CREATE TABLE consent_bundles (id TEXT PRIMARY KEY, developer_id TEXT NOT NULL, "
               "grant_id TEXT NOT NULL REFERENCES grants(id), agent_id TEXT NOT NULL, "
               "principal_id TEXT NOT NULL, public_key TEXT NOT NULL, "
               "offline_expires_at TEXT NOT NULL, created_at TEXT NOT NULL, revoked_at TEXT, "
               "replaced_by TEXT, last_sync_at TEXT, last_offline_seq INTEGER NOT NULL DEFAULT 0, "
               "last_offline_hash TEXT, synced_entries INTEGER NOT NULL DEFAULT 0)")
    db.execute("CREATE INDEX idx_consent_bundles_grant ON consent_bundles (grant_id)")
    db.execute("CREATE INDEX idx_consent_bundles_developer ON consent_bundles (developer_id, created_at)")


SCHEMA_VERSION = len(_MIGRATIONS)


def apply_migrations(conn: sqlite3.Connection, current_version: int) -> None:
    """Run every migration after ``current_version``; the caller holds the write lock."""
    from sqlite_utils import Database

    db = Database(conn)
    if "_migrations" not in db.table_names():
        db.table("_migrations").create({"name": str, "applied_at": str}, pk="name")
    for index, (name, fn) in enumerate(_MIGRATIONS, start=1):
        if index <= current_version:
            continue
        fn(db)
        conn.execute(
            "INSERT INTO _migrations (name, applied_at) VALUES (?, ?)", (name, iso(system_clock()))
        )
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
