"""Issuer signing keys (RSA-2048, RS256) and agent key pairs (Ed25519) behind DIDs.

The issuer key signs grant tokens; its ``kid`` is the RFC 7638 JWK
thumbprint, so a kid names one key forever (never a month). Rotation adds a
new key and retires the old one; a retired key stays in the JWKS while any
token it signed is unexpired, so nothing issued before a rotation breaks.

Agent keys are separate: they never appear in the issuer JWKS, only in the
agent's DID document.
"""

from __future__ import annotations

import json
import sqlite3
from typing import TYPE_CHECKING, Any

from jwt.algorithms import OKPAlgorithm, RSAAlgorithm

from . import errors
from .clock import iso

# Key material lives one floor down (no ledger there); keys.X stays the public spelling.
from .keymaterial import RSA_KEY_SIZE as RSA_KEY_SIZE
from .keymaterial import NewKey as NewKey
from .keymaterial import _serialize_private as _serialize_private
from .keymaterial import generate_agent_key as generate_agent_key
from .keymaterial import generate_signing_key as generate_signing_key
from .keymaterial import load_private_key as load_private_key
from .keymaterial import thumbprint as thumbprint

if TYPE_CHECKING:
    from .ledger import LedgerFile

# ── issuer signing keys ──────────────────────────────────────────────────────


def insert_signing_key(conn: sqlite3.Connection, key: NewKey, now: str) -> None:
    conn.execute(
        "INSERT INTO signing_keys (kid, alg, private_pem, encrypted, public_jwk, created_at) "
        "VALUES (?, 'RS256', ?, ?, ?, ?)",
        (key.kid, key.private_pem, int(key.encrypted), json.dumps(key.public_jwk), now),
    )


def rotate_signing_key(ledger: LedgerFile) -> dict[str, Any]:
    """Add a new signing key and retire the current one; returns ``{kid, retiredKids, rotatedAt}``."""
    fresh = generate_signing_key(ledger.passphrase_for_new_keys())
    now = iso(ledger.now())
    with ledger.write() as conn:
        old = conn.execute(
            "SELECT kid FROM signing_keys WHERE retired_at IS NULL"
        ).fetchall()
        conn.execute("UPDATE signing_keys SET retired_at = ? WHERE retired_at IS NULL", (now,))
        insert_signing_key(conn, fresh, now)
        from .audit.trail import record
        from .developers import default_developer

        record(ledger, conn, default_developer(ledger).id, "grantex.key.rotated",
               metadata={"kid": fresh.kid, "retiredKids": [r["kid"] for r in old]})
    ledger.forget_keys()
    return {"kid": fresh.kid, "retiredKids": [r["kid"] for r in old], "rotatedAt": now}


def list_signing_keys(ledger: LedgerFile) -> list[dict[str, Any]]:
    rows = ledger.query(
        "SELECT k.kid, k.created_at, k.retired_at, k.encrypted, "
        "(SELECT max(t.expires_at) FROM tokens t WHERE t.kid = k.kid) AS last_expiry "
        "FROM signing_keys k ORDER BY k.created_at"
    )
    now = iso(ledger.now())
    out = []
    for r in rows:
        if r["retired_at"] is None:
            status = "active"
        elif r["last_expiry"] is not None and r["last_expiry"] > now:
            status = "retired (still verifying)"
        else:
            status = "retired"
        out.append({"kid": r["kid"], "createdAt": r["created_at"], "retiredAt": r["retired_at"],
                    "encrypted": bool(r["encrypted"]), "status": status,
                    "lastTokenExpiry": r["last_expiry"]})
    return out


def jwks(ledger: LedgerFile, *, include_all: bool = False) -> dict[str, Any]:
    """The issuer JWKS: the active key plus retired keys with unexpired tokens.

    ``include_all`` keeps every key (the ledger's own verifier uses it: an
    expired token must fail as expired, not as an unknown kid).
    """
    rows = ledger.query(
        "SELECT k.public_jwk, k.retired_at, "
        "(SELECT max(t.expires_at) FROM tokens t WHERE t.kid = k.kid) AS last_expiry "
        "FROM signing_keys k ORDER BY k.created_at DESC"
    )
    now = iso(ledger.now())
    keys = [
        json.loads(r["public_jwk"]) for r in rows
        if include_all or r["retired_at"] is None
        or (r["last_expiry"] is not None and r["last_expiry"] > now)
    ]
    return {"keys": keys}


# ── agent keys and DID documents ─────────────────────────────────────────────


def import_agent_public_jwk(jwk: object) -> NewKey:
    """An agent's own public key (it keeps the private half); Ed25519, P-256 or RSA."""
    if not isinstance(jwk, dict):
        raise errors.InvalidInput("publicJwk must be a JSON object")
    if any(k in jwk for k in ("d", "p", "q", "dp", "dq", "qi")):
        raise errors.InvalidInput("publicJwk contains private key material; send only the public key")
    kty = jwk.get("kty")
    try:
        if kty == "OKP" and jwk.get("crv") == "Ed25519":
            OKPAlgorithm.from_jwk(jwk)
            public = {"kty": "OKP", "crv": "Ed25519", "x": jwk["x"]}
        elif kty == "EC" and jwk.get("crv") == "P-256":
            from jwt.algorithms import ECAlgorithm

            ECAlgorithm.from_jwk(jwk)
            public = {"kty": "EC", "crv": "P-256", "x": jwk["x"], "y": jwk["y"]}
        elif kty == "RSA":
            loaded = RSAAlgorithm.from_jwk(jwk)
            if getattr(loaded, "key_size", 0) < 2048:
                raise errors.InvalidInput("an RSA publicJwk must be at least 2048 bits")
            public = {"kty": "RSA", "n": jwk["n"], "e": jwk["e"]}
        else:
            raise errors.InvalidInput("publicJwk must be an Ed25519 (OKP), P-256 (EC) or RSA key")
    except errors.GrantexLocalError:
        raise
    except Exception:
        raise errors.InvalidInput("publicJwk is not a valid public key") from None
    return NewKey(thumbprint(public), b"", False, public)


def insert_agent_key(conn: sqlite3.Connection, agent_id: str, key: NewKey, now: str) -> None:
    conn.execute(
        "INSERT INTO agent_keys (agent_id, kid, public_jwk, private_pem, encrypted, created_at) "
        "VALUES (?, ?, ?, ?, ?, ?)",
        (agent_id, key.kid, json.dumps(key.public_jwk), key.private_pem or None,
         int(key.encrypted), now),
    )


def did_document(did: str, key_rows: list[sqlite3.Row] | list[dict[str, Any]]) -> dict[str, Any]:
    """A DID document whose verification methods are the agent's current keys."""
    methods = []
    for row in key_rows:
        if row["retired_at"] is not None:
            continue
        methods.append({
            "id": f"{did}#{row['kid']}",
            "type": "JsonWebKey2020",
            "controller": did,
            "publicKeyJwk": json.loads(row["public_jwk"]),
        })
    refs = [m["id"] for m in methods]
    return {
        "@context": ["https://www.w3.org/ns/did/v1", "https://w3id.org/security/suites/jws-2020/v1"],
        "id": did,
        "verificationMethod": methods,
        "authentication": refs,
        "assertionMethod": refs,
    }
