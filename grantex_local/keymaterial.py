"""Key material with no ledger behind it: generating, serialising, parsing and naming keys.

Why apart from :mod:`grantex_local.keys`: the open ledger file parses its stored signing key
(:meth:`grantex_local.ledger.LedgerFile.signing_key`), and a new ledger is founded with a fresh
one, below the modules that keep keys in the ledger and record their rotation in the audit
trail. This module imports no ledger, so both can stand on it. :mod:`~grantex_local.keys`
re-exports every name, so callers keep using ``keys.thumbprint`` and the rest.
"""

from __future__ import annotations

import base64
import hashlib
import json
from dataclasses import dataclass
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa
from jwt.algorithms import OKPAlgorithm, RSAAlgorithm

from . import errors

RSA_KEY_SIZE = 2048


@dataclass(frozen=True)
class NewKey:
    kid: str
    private_pem: bytes
    encrypted: bool
    public_jwk: dict[str, Any]


def thumbprint(jwk: dict[str, Any]) -> str:
    """RFC 7638 JWK thumbprint (SHA-256, base64url): the required members only, sorted."""
    required = {"RSA": ("e", "kty", "n"), "OKP": ("crv", "kty", "x"), "EC": ("crv", "kty", "x", "y")}
    try:
        members = {name: jwk[name] for name in required[jwk["kty"]]}
    except KeyError as exc:
        raise errors.InvalidInput(f"JWK is missing member {exc.args[0]!r}") from None
    canonical = json.dumps(members, separators=(",", ":"), sort_keys=True).encode()
    return base64.urlsafe_b64encode(hashlib.sha256(canonical).digest()).rstrip(b"=").decode()


def _serialize_private(key: Any, passphrase: str | None) -> tuple[bytes, bool]:
    encryption: serialization.KeySerializationEncryption = (
        serialization.BestAvailableEncryption(passphrase.encode())
        if passphrase else serialization.NoEncryption()
    )
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption)
    return pem, bool(passphrase)


def load_private_key(pem: bytes, encrypted: bool, passphrase: str | None) -> Any:
    """Parse a stored private key, decrypting with the passphrase when it is encrypted."""
    if encrypted and not passphrase:
        raise errors.PassphraseError(
            "the ledger's private keys are encrypted: set GRANTEX_LOCAL_PASSPHRASE"
        )
    try:
        return serialization.load_pem_private_key(
            pem, password=passphrase.encode() if encrypted and passphrase else None
        )
    except (ValueError, TypeError):
        raise errors.PassphraseError(
            "cannot read the ledger's private key: wrong GRANTEX_LOCAL_PASSPHRASE?"
        ) from None


def generate_signing_key(passphrase: str | None) -> NewKey:
    key = rsa.generate_private_key(public_exponent=65537, key_size=RSA_KEY_SIZE)
    jwk: dict[str, Any] = RSAAlgorithm.to_jwk(key.public_key(), as_dict=True)
    kid = thumbprint(jwk)
    public_jwk = {"kty": "RSA", "n": jwk["n"], "e": jwk["e"], "alg": "RS256", "use": "sig", "kid": kid}
    pem, encrypted = _serialize_private(key, passphrase)
    return NewKey(kid, pem, encrypted, public_jwk)


def generate_agent_key(passphrase: str | None) -> NewKey:
    key = ed25519.Ed25519PrivateKey.generate()
    jwk: dict[str, Any] = OKPAlgorithm.to_jwk(key.public_key(), as_dict=True)
    public_jwk = {"kty": "OKP", "crv": "Ed25519", "x": jwk["x"]}
    pem, encrypted = _serialize_private(key, passphrase)
    return NewKey(thumbprint(public_jwk), pem, encrypted, public_jwk)
