"""The credential vault: upstream secrets an agent gets by presenting a live grant token.

The point of the vault is that an agent never holds the user's secrets longer than one call, and
the ledger file never holds them in the clear:

- **Encryption at rest.** Each secret (access and refresh token, as one JSON object) is sealed
  with AES-256-GCM under a fresh 96-bit nonce. The associated data names the row (vault format,
  id, developer, principal, service, protection), so a ciphertext copied onto another row fails
  to decrypt instead of handing one principal's secret to another.
- **The key** comes from the ledger's passphrase through scrypt (n=2^15, r=8, p=1, a random
  per-ledger salt; all recorded in ``vault_kdf``). A check value sealed under the key when the
  first secret is stored makes a wrong passphrase fail before anything is written or read
  (:class:`~grantex_local.errors.VaultLocked`), never a garbled answer. A ledger opened without
  a passphrase refuses to store, unless the owner asked for ``insecure`` (``vault store
  --insecure-store``, ``serve --insecure-store``): then the key is a random one in
  ``local_secrets``, the row says ``protection = 'insecure'`` and every answer about it says
  plainly that it is not protected by a passphrase.
- **Nothing secret leaves** except through :func:`exchange` (to a live grant token with a vault
  scope) and :func:`redeem_reference` (one-time, short-lived references). Lists, gets, audit
  entries, events and exports carry only metadata; exports never read the vault's tables.
"""

from __future__ import annotations

import hashlib
import json
import re
import secrets
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

from . import errors, events
from .audit import trail
from .clock import iso
from .ids import new_id
from .online import verify_online
from .text import check_json, check_text

if TYPE_CHECKING:
    import sqlite3

    from .founding import Ledger

SERVICE = re.compile(r"[a-z0-9][a-z0-9._-]{0,63}", re.IGNORECASE)
CREDENTIAL_TYPE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,63}")
MAX_SECRET = 16 * 1024
MAX_PRINCIPAL = 256
MAX_METADATA = 8 * 1024
SCRYPT_PARAMS = {"n": 2**15, "r": 8, "p": 1}
INSECURE_KEY_NAME = "vault_insecure_key"
REFERENCE_TTL = 60
"""Seconds a one-time credential reference may wait to be redeemed."""
FORMAT = "grantex-local vault v1"
_CHECK_AD = b"grantex-local vault key check v1"
_CHECK_PLAINTEXT = b"this key opens the grantex-local vault"
INSECURE_WARNING = ("secrets stored with --insecure-store are NOT protected by a passphrase: "
                    "anyone who can read the ledger file can read them")
HOW_TO_UNLOCK = ("the vault stores secrets only in a ledger opened with a passphrase: set "
                 "GRANTEX_LOCAL_PASSPHRASE (or pass passphrase=) and start again, or opt in to "
                 "unprotected storage with --insecure-store")

_derived: dict[tuple[bytes, str, bytes], bytes] = {}
"""Derived keys by (salt, parameters, SHA-256 of the passphrase): scrypt costs ~0.1 s by design,
and a server derives for every request otherwise."""


@dataclass(frozen=True)
class VaultCredential:
    """What the vault says about a stored credential: never the secret."""

    id: str
    developer_id: str
    principal_id: str
    service: str
    credential_type: str
    token_expires_at: str | None
    metadata: dict[str, Any]
    protected: bool
    created_at: str
    updated_at: str

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "id": self.id, "principalId": self.principal_id, "service": self.service,
            "credentialType": self.credential_type, "tokenExpiresAt": self.token_expires_at,
            "metadata": self.metadata, "createdAt": self.created_at, "updatedAt": self.updated_at,
            "protected": self.protected,
        }
        if not self.protected:
            out["warning"] = INSECURE_WARNING
        return out


@dataclass(frozen=True)
class Exchanged:
    """The upstream credential handed to a live grant token (the one place a secret goes out)."""

    access_token: str = field(repr=False)
    service: str
    credential_type: str
    token_expires_at: str | None
    metadata: dict[str, Any]
    credential_id: str
    protected: bool

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"accessToken": self.access_token, "service": self.service,
                               "credentialType": self.credential_type,
                               "tokenExpiresAt": self.token_expires_at, "metadata": self.metadata}
        if not self.protected:
            out["warning"] = INSECURE_WARNING
        return out


@dataclass(frozen=True)
class ExchangedReference:
    """A one-time reference to a credential, for a relying party to redeem (SDK
    ``exchange_reference``): the agent itself never holds the secret."""

    credential_ref: str = field(repr=False)
    service: str
    credential_type: str
    token_expires_at: str | None
    metadata: dict[str, Any]
    reference_expires_at: str

    def to_dict(self) -> dict[str, Any]:
        return {"credentialRef": self.credential_ref, "service": self.service,
                "credentialType": self.credential_type, "tokenExpiresAt": self.token_expires_at,
                "metadata": self.metadata, "referenceExpiresAt": self.reference_expires_at}


# ── input ────────────────────────────────────────────────────────────────────


def check_service(service: object) -> str:
    """The service name, lower-cased (scopes match it case-insensitively, so rows must too)."""
    if not isinstance(service, str) or not SERVICE.fullmatch(service):
        raise errors.InvalidInput("service must match ^[a-z0-9][a-z0-9._-]{0,63}$ (e.g. 'github')")
    return service.lower()


def _check_principal(principal_id: object) -> str:
    if not isinstance(principal_id, str) or not principal_id.strip() or len(principal_id) > MAX_PRINCIPAL:
        raise errors.InvalidInput(
            f"principalId must be a non-empty string of at most {MAX_PRINCIPAL} characters")
    return check_text(principal_id, "principalId")


def _check_secret(value: object, name: str, *, required: bool) -> str | None:
    """A secret's shape; the error never repeats the value."""
    if value is None and not required:
        return None
    if not isinstance(value, str) or not value or len(value) > MAX_SECRET:
        raise errors.InvalidInput(f"{name} must be a non-empty string of at most {MAX_SECRET} characters")
    return check_text(value, name)


def _check_expires_at(value: object) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or len(value) > 64:
        raise errors.InvalidInput("tokenExpiresAt must be an ISO 8601 time stamp")
    try:
        datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise errors.InvalidInput("tokenExpiresAt must be an ISO 8601 time stamp") from None
    return value


def _check_metadata(value: object) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise errors.InvalidInput("metadata must be a JSON object")
    check_json(value, "metadata")
    if len(json.dumps(value, ensure_ascii=False)) > MAX_METADATA:
        raise errors.InvalidInput(f"metadata must be at most {MAX_METADATA} characters of JSON")
    return value


# ── keys ─────────────────────────────────────────────────────────────────────


def _derive(passphrase: str, salt: bytes, params_text: str) -> bytes:
    cache_key = (salt, params_text, hashlib.sha256(passphrase.encode()).digest())
    key = _derived.get(cache_key)
    if key is None:
        params = json.loads(params_text)
        key = Scrypt(salt=salt, length=32, n=int(params["n"]), r=int(params["r"]),
                     p=int(params["p"])).derive(passphrase.encode())
        _derived[cache_key] = key
    return key


def _opened(row: sqlite3.Row | tuple[Any, ...], passphrase: str) -> bytes:
    """The key from a ``vault_kdf`` row, proven against its check value (fails closed)."""
    salt, params_text, check_nonce, check_ct = row[0], row[1], row[2], row[3]
    key = _derive(passphrase, bytes(salt), params_text)
    try:
        AESGCM(key).decrypt(bytes(check_nonce), bytes(check_ct), _CHECK_AD)
    except InvalidTag:
        raise errors.VaultLocked("the passphrase does not open this ledger's vault "
                                 "(it is not the one its secrets were stored under)") from None
    return key


_KDF_ROW = "SELECT salt, params, check_nonce, check_ciphertext FROM vault_kdf WHERE id = 1"


def _passphrase_key(ledger: Ledger, *, create: bool) -> bytes:
    """The passphrase-derived key; with ``create``, the first store records salt and check."""
    passphrase = ledger.passphrase
    if not passphrase:
        raise errors.VaultLocked(HOW_TO_UNLOCK)
    ledger.passphrase_for_new_keys()  # encrypted signing keys: a wrong passphrase stops here too
    row = ledger.query_one(_KDF_ROW)
    if row is not None:
        return _opened(row, passphrase)
    if not create:
        raise errors.VaultLocked("this ledger's vault has no passphrase-protected key yet")
    salt, params_text = secrets.token_bytes(16), json.dumps(SCRYPT_PARAMS, sort_keys=True)
    key = _derive(passphrase, salt, params_text)
    nonce = secrets.token_bytes(12)
    check = AESGCM(key).encrypt(nonce, _CHECK_PLAINTEXT, _CHECK_AD)
    with ledger.write() as conn:
        conn.execute("INSERT OR IGNORE INTO vault_kdf (id, kdf, salt, params, check_nonce, "
                     "check_ciphertext, created_at) VALUES (1, 'scrypt', ?, ?, ?, ?, ?)",
                     (salt, params_text, nonce, check, iso(ledger.now())))
    row = ledger.query_one(_KDF_ROW)  # another process may have made it first
    assert row is not None
    return _opened(row, passphrase)


def _insecure_key(ledger: Ledger, conn: sqlite3.Connection | None) -> bytes:
    """The random key of unprotected rows (made on the first insecure store, in its transaction)."""
    query = "SELECT secret FROM local_secrets WHERE name = ?"
    if conn is not None:
        conn.execute("INSERT OR IGNORE INTO local_secrets (name, secret, created_at) VALUES (?, ?, ?)",
                     (INSECURE_KEY_NAME, secrets.token_bytes(32), iso(ledger.now())))
        found = conn.execute(query, (INSECURE_KEY_NAME,)).fetchone()
    else:
        found = ledger.query_one(query, (INSECURE_KEY_NAME,))
    if found is None:
        raise errors.LedgerCorrupt("the vault's unprotected key is missing from the ledger")
    return bytes(found[0])


def _associated(credential_id: str, developer_id: str, principal_id: str, service: str,
                protection: str) -> bytes:
    return json.dumps([FORMAT, credential_id, developer_id, principal_id, service, protection],
                      separators=(",", ":"), ensure_ascii=False).encode()


# ── rows ─────────────────────────────────────────────────────────────────────

_COLUMNS = ("id, developer_id, principal_id, service, credential_type, token_expires_at, metadata, "
            "protection, created_at, updated_at")


def _credential(row: sqlite3.Row | tuple[Any, ...]) -> VaultCredential:
    return VaultCredential(
        id=row[0], developer_id=row[1], principal_id=row[2], service=row[3], credential_type=row[4],
        token_expires_at=row[5], metadata=json.loads(row[6]), protected=row[7] == "passphrase",
        created_at=row[8], updated_at=row[9])


def store(ledger: Ledger, developer_id: str, principal_id: object, service: object,
          access_token: object, *, credential_type: object = None, refresh_token: object = None,
          token_expires_at: object = None, metadata: object = None,
          insecure: bool = False) -> VaultCredential:
    """Store (or replace) the credential of ``principal_id`` for ``service``; returns its metadata.

    An upsert on (developer, principal, service): the id stays, the secret and its details are
    replaced. ``insecure`` is the owner's explicit consent to a key without a passphrase, used
    only when the ledger has none."""
    principal = _check_principal(principal_id)
    name = check_service(service)
    secret = _check_secret(access_token, "accessToken", required=True)
    refresh = _check_secret(refresh_token, "refreshToken", required=False)
    kind = "oauth2" if credential_type is None else credential_type
    if not isinstance(kind, str) or not CREDENTIAL_TYPE.fullmatch(kind):
        raise errors.InvalidInput("credentialType must be a short name such as 'oauth2' or 'api_key'")
    expires_at = _check_expires_at(token_expires_at)
    meta = _check_metadata(metadata)
    if ledger.passphrase:
        protection, key = "passphrase", _passphrase_key(ledger, create=True)
    elif insecure:
        protection, key = "insecure", b""
    else:
        raise errors.VaultLocked(HOW_TO_UNLOCK)
    plaintext = json.dumps({"accessToken": secret, "refreshToken": refresh}, ensure_ascii=False).encode()
    now = iso(ledger.now())
    with ledger.write() as conn:
        if protection == "insecure":
            key = _insecure_key(ledger, conn)
        found = conn.execute("SELECT id, created_at FROM vault_credentials WHERE developer_id = ? "
                             "AND principal_id = ? AND service = ?",
                             (developer_id, principal, name)).fetchone()
        credential_id, created_at = (found[0], found[1]) if found else (new_id("vault_credential"), now)
        nonce = secrets.token_bytes(12)
        sealed = AESGCM(key).encrypt(nonce, plaintext,
                                     _associated(credential_id, developer_id, principal, name, protection))
        conn.execute(
            "INSERT INTO vault_credentials (id, developer_id, principal_id, service, credential_type, "
            "token_expires_at, metadata, protection, nonce, ciphertext, created_at, updated_at) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (id) DO UPDATE SET "
            "credential_type = excluded.credential_type, token_expires_at = excluded.token_expires_at, "
            "metadata = excluded.metadata, protection = excluded.protection, nonce = excluded.nonce, "
            "ciphertext = excluded.ciphertext, updated_at = excluded.updated_at",
            (credential_id, developer_id, principal, name, kind, expires_at,
             json.dumps(meta, ensure_ascii=False), protection, nonce, sealed, created_at, now))
        about = {"credentialId": credential_id, "service": name, "credentialType": kind,
                 "protected": protection == "passphrase", "replaced": found is not None}
        trail.record(ledger, conn, developer_id, "grantex.vault.credential_stored",
                     principal_id=principal, metadata=about)
        events.emit(ledger, conn, developer_id, "vault.credential.stored",
                    {**about, "principalId": principal})
    return get(ledger, developer_id, credential_id)


def list_credentials(ledger: Ledger, developer_id: str, *, principal_id: str | None = None,
                     service: str | None = None) -> list[VaultCredential]:
    """The developer's stored credentials (metadata only), oldest first."""
    sql, args = f"SELECT {_COLUMNS} FROM vault_credentials WHERE developer_id = ?", [developer_id]
    if principal_id is not None:
        sql, args = sql + " AND principal_id = ?", [*args, principal_id]
    if service is not None:
        sql, args = sql + " AND service = ?", [*args, check_service(service)]
    return [_credential(r) for r in ledger.query(sql + " ORDER BY created_at, id", tuple(args))]


def get(ledger: Ledger, developer_id: str, credential_id: str) -> VaultCredential:
    """One credential's metadata; another developer's is as unknown as a missing one."""
    row = ledger.query_one(f"SELECT {_COLUMNS} FROM vault_credentials WHERE id = ? AND developer_id = ?",
                           (credential_id, developer_id))
    if row is None:
        raise errors.NotFound(f"no vault credential {credential_id!r}")
    return _credential(row)


def delete(ledger: Ledger, developer_id: str, credential_id: str) -> None:
    """Remove the credential (and any unredeemed references to it)."""
    with ledger.write() as conn:
        row = conn.execute("DELETE FROM vault_credentials WHERE id = ? AND developer_id = ? "
                           "RETURNING principal_id, service", (credential_id, developer_id)).fetchone()
        if row is None:
            raise errors.NotFound(f"no vault credential {credential_id!r}")
        conn.execute("DELETE FROM vault_references WHERE credential_id = ?", (credential_id,))
        about = {"credentialId": credential_id, "service": row[1]}
        trail.record(ledger, conn, developer_id, "grantex.vault.credential_deleted",
                     principal_id=row[0], metadata=about)
        events.emit(ledger, conn, developer_id, "vault.credential.deleted", {**about, "principalId": row[0]})


def _reveal(ledger: Ledger, row: sqlite3.Row | tuple[Any, ...]) -> dict[str, Any]:
    """Decrypt a row (id, developer, principal, service, protection, nonce, ciphertext)."""
    credential_id, developer_id, principal, service, protection, nonce, sealed = row
    key = (_passphrase_key(ledger, create=False) if protection == "passphrase"
           else _insecure_key(ledger, None))
    try:
        plain = AESGCM(key).decrypt(bytes(nonce), bytes(sealed),
                                    _associated(credential_id, developer_id, principal, service, protection))
    except InvalidTag:
        raise errors.VaultLocked(f"vault credential {credential_id} does not decrypt: the key is "
                                 "wrong or the row was altered") from None
    opened: dict[str, Any] = json.loads(plain)
    return opened


_SECRET_ROW = ("SELECT id, developer_id, principal_id, service, protection, nonce, ciphertext "
               "FROM vault_credentials WHERE ")


def reveal(ledger: Ledger, developer_id: str, credential_id: str) -> dict[str, Any]:
    """The decrypted secret of a credential, for the ledger's owner (tests, recovery); the faces
    never call it."""
    row = ledger.query_one(_SECRET_ROW + "id = ? AND developer_id = ?", (credential_id, developer_id))
    if row is None:
        raise errors.NotFound(f"no vault credential {credential_id!r}")
    return _reveal(ledger, row)


def scope_allows(scopes: list[str] | tuple[str, ...], service: str) -> bool:
    """Whether a grant's scopes let it take ``service``'s credential (SDK-SURFACE §14's list)."""
    wanted = {"*", f"{service}:*", f"{service}:read", f"{service}:credentials:read",
              f"vault:{service}:*", f"vault:{service}:read", "vault:credentials:exchange"}
    return any(s.lower() in wanted for s in scopes)


def exchange(ledger: Ledger, grant_token: str, service: object, *,
             delivery: object = None) -> Exchanged | ExchangedReference:
    """The credential for the token's principal and ``service``, to a live grant token.

    Live means signature, expiry and revocation of the token, its grant and every ancestor
    (:func:`~grantex_local.online.verify_online`): a failure is :class:`TokenInvalid` (401). A
    token without a vault scope for the service is :class:`InsufficientScope` (403); no
    credential is :class:`NotFound`. ``delivery="reference"`` answers a one-time reference
    (:func:`redeem_reference`) instead of the secret. Each exchange is audited and evented
    without the secret."""
    if delivery not in (None, "direct", "reference"):
        raise errors.InvalidInput("delivery must be 'direct' or 'reference'")
    name = check_service(service)
    if not isinstance(grant_token, str) or not grant_token:
        raise errors.TokenInvalid("missing grant token: send 'Authorization: Bearer <grant token>'")
    answer = verify_online(ledger, grant_token)
    if not answer.valid:
        reason = answer.reason or "invalid"
        kind = (errors.GrantRevoked if "revoked" in reason
                else errors.TokenExpired if "expired" in reason else errors.TokenInvalid)
        raise kind(f"the grant token is not live ({reason})", reason)
    grant = ledger.query_one("SELECT developer_id, principal_id, agent_id FROM grants WHERE id = ?",
                             (answer.grant_id,))
    if grant is None:
        raise errors.TokenInvalid("the grant token's grant is unknown", "unknown_grant")
    developer_id, principal, agent_id = grant[0], grant[1], grant[2]

    def refused(reason: str) -> None:
        """An agent with a live grant reaching for a credential it may not have is what an
        auditor looks for: the refusal is recorded (status blocked) before it is answered."""
        with ledger.write() as conn:
            trail.record(ledger, conn, developer_id, "grantex.vault.exchange_refused",
                         agent_id=agent_id, agent_did=answer.agent, grant_id=answer.grant_id,
                         principal_id=principal, status="blocked",
                         metadata={"service": name, "reason": reason})

    if not scope_allows(answer.scopes or [], name):
        refused("insufficient_scope")
        raise errors.InsufficientScope(
            f"the grant's scopes do not include access to the {name!r} vault credential (one of "
            f"{name}:read, {name}:*, {name}:credentials:read, vault:{name}:read, vault:{name}:*, "
            "vault:credentials:exchange)")
    row = ledger.query_one(_SECRET_ROW + "developer_id = ? AND principal_id = ? AND service = ?",
                           (developer_id, principal, name))
    if row is None:
        refused("no_credential")
        raise errors.NotFound(f"no vault credential for this principal and service {name!r}")
    credential = get(ledger, developer_id, row[0])
    opened = _reveal(ledger, row)  # before anything is written: a locked vault records nothing
    about = {"credentialId": credential.id, "service": name, "credentialType": credential.credential_type,
             "delivery": delivery or "direct"}
    reference: str | None = None
    expires_at = iso(ledger.now() + REFERENCE_TTL)
    with ledger.write() as conn:
        if delivery == "reference":
            reference = "vref_" + secrets.token_urlsafe(32)
            conn.execute("INSERT INTO vault_references (ref_hash, credential_id, developer_id, grant_id, "
                         "created_at, expires_at) VALUES (?, ?, ?, ?, ?, ?)",
                         (_ref_hash(reference), credential.id, developer_id, answer.grant_id,
                          iso(ledger.now()), expires_at))
        trail.record(ledger, conn, developer_id, "grantex.vault.credential_exchanged",
                     agent_id=agent_id, agent_did=answer.agent, grant_id=answer.grant_id,
                     principal_id=principal, metadata=about)
        events.emit(ledger, conn, developer_id, "vault.credential.exchanged",
                    {**about, "principalId": principal, "grantId": answer.grant_id, "agentDid": answer.agent})
    if reference is not None:
        return ExchangedReference(reference, name, credential.credential_type, credential.token_expires_at,
                                  credential.metadata, expires_at)
    return Exchanged(opened["accessToken"], name, credential.credential_type, credential.token_expires_at,
                     credential.metadata, credential.id, credential.protected)


def _ref_hash(reference: str) -> str:
    return hashlib.sha256(reference.encode()).hexdigest()


def redeem_reference(ledger: Ledger, developer_id: str, credential_ref: object) -> Exchanged:
    """The credential behind a reference from ``exchange(delivery="reference")``, once.

    The relying party redeems it with the developer's API key (``POST
    /v1/vault/references/redeem``) within :data:`REFERENCE_TTL` seconds, while the grant that took
    it is still unrevoked and unexpired; a second redemption, a late one or another developer's
    is :class:`NotFound`. Only the reference's SHA-256 is stored."""
    if not isinstance(credential_ref, str) or not credential_ref.startswith("vref_"):
        raise errors.InvalidInput("credentialRef must be a reference from a vault exchange")
    now = iso(ledger.now())
    with ledger.write() as conn:
        found = conn.execute(
            "UPDATE vault_references SET redeemed_at = ? WHERE ref_hash = ? AND developer_id = ? "
            "AND redeemed_at IS NULL AND expires_at > ? RETURNING credential_id, grant_id",
            (now, _ref_hash(credential_ref), developer_id, now)).fetchone()
        if found is None:
            raise errors.NotFound("unknown, expired or already redeemed credential reference")
        grant = conn.execute("SELECT revoked_at, expires_at, agent_id, principal_id FROM grants WHERE id = ?",
                             (found[1],)).fetchone()
        if grant is None or grant[0] is not None or grant[1] <= now:
            raise errors.GrantRevoked("the grant that took this reference is no longer live", "grant_revoked")
        row = conn.execute(_SECRET_ROW + "id = ?", (found[0],)).fetchone()
        if row is None:
            raise errors.NotFound("the referenced vault credential was deleted")
        credential = get(ledger, developer_id, row[0])
        opened = _reveal(ledger, row)
        about = {"credentialId": credential.id, "service": credential.service,
                 "credentialType": credential.credential_type, "delivery": "reference-redeemed"}
        trail.record(ledger, conn, developer_id, "grantex.vault.credential_exchanged",
                     agent_id=grant[2], grant_id=found[1], principal_id=grant[3], metadata=about)
        events.emit(ledger, conn, developer_id, "vault.credential.exchanged",
                    {**about, "principalId": grant[3], "grantId": found[1]})
    return Exchanged(opened["accessToken"], credential.service, credential.credential_type,
                     credential.token_expires_at, credential.metadata, credential.id, credential.protected)
