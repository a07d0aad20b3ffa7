"""Checkpoints as C2SP signed notes (tlog-checkpoint + signed-note).

A checkpoint is the text::

    <origin>
    <tree size>
    <base64 root hash>
    timestamp <ISO-8601>

followed by a blank line and one signature line per signer:
``— <key name> <base64(key id ‖ Ed25519 signature)>``. The key id is the
first four bytes of SHA-256(key name ‖ 0x0A ‖ 0x01 ‖ public key), as the
signed-note spec defines for Ed25519. Anyone holding the public key can check
a checkpoint kept outside the ledger file.
"""

from __future__ import annotations

import base64
import hashlib
from dataclasses import dataclass

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from ..errors import InvalidInput

SIGNATURE_PREFIX = "\u2014 "  # em dash and a space
ED25519_ALG = b"\x01"


@dataclass(frozen=True)
class Checkpoint:
    origin: str
    size: int
    root_hash: bytes
    timestamp: str

    def body(self) -> str:
        root = base64.b64encode(self.root_hash).decode()
        return f"{self.origin}\n{self.size}\n{root}\ntimestamp {self.timestamp}\n"


class CheckpointInvalid(InvalidInput):
    """A checkpoint that does not parse or whose signature does not verify."""

    code = "CHECKPOINT_INVALID"


def public_key_bytes(key: Ed25519PublicKey) -> bytes:
    return key.public_bytes(Encoding.Raw, PublicFormat.Raw)


def key_id(name: str, public: Ed25519PublicKey) -> bytes:
    return hashlib.sha256(name.encode() + b"\n" + ED25519_ALG + public_key_bytes(public)).digest()[:4]


def sign(checkpoint: Checkpoint, name: str, private: Ed25519PrivateKey) -> str:
    body = checkpoint.body()
    signature = private.sign(body.encode())
    blob = base64.b64encode(key_id(name, private.public_key()) + signature).decode()
    return f"{body}\n{SIGNATURE_PREFIX}{name} {blob}\n"


def parse(text: str) -> tuple[Checkpoint, list[tuple[str, bytes]]]:
    """Split a note into its checkpoint and its (key name, key id ‖ signature) lines."""
    if not isinstance(text, str) or "\n\n" not in text:
        raise CheckpointInvalid("checkpoint is not a signed note (no blank line before signatures)")
    body, _, sigs = text.partition("\n\n")
    lines = body.split("\n")
    if len(lines) < 4 or not lines[3].startswith("timestamp "):
        raise CheckpointInvalid("checkpoint body must have origin, size, root and timestamp lines")
    try:
        size = int(lines[1])
        root = base64.b64decode(lines[2], validate=True)
    except ValueError:
        raise CheckpointInvalid("checkpoint size or root hash is malformed") from None
    if size < 0 or len(root) != 32 or lines[1] != str(size):
        raise CheckpointInvalid("checkpoint size or root hash is malformed")
    checkpoint = Checkpoint(lines[0], size, root, lines[3][len("timestamp "):])
    if checkpoint.body() != body + "\n":
        raise CheckpointInvalid("checkpoint body has unexpected lines")
    signatures = []
    for line in sigs.split("\n"):
        if not line:
            continue
        if not line.startswith(SIGNATURE_PREFIX) or line.count(" ") != 2:
            raise CheckpointInvalid("malformed signature line")
        _, name, blob = line.split(" ")
        try:
            raw = base64.b64decode(blob, validate=True)
        except ValueError:
            raise CheckpointInvalid("malformed signature line") from None
        if base64.b64encode(raw).decode() != blob:  # one spelling only: unused bits must be zero
            raise CheckpointInvalid("malformed signature line (non-canonical base64)")
        signatures.append((name, raw))
    return checkpoint, signatures


def verify(text: str, name: str, public: Ed25519PublicKey) -> Checkpoint:
    """The checkpoint, if ``text`` carries a valid signature by (``name``, ``public``)."""
    checkpoint, signatures = parse(text)
    wanted = key_id(name, public)
    for sig_name, raw in signatures:
        if sig_name != name or raw[:4] != wanted or len(raw) != 68:
            continue
        try:
            public.verify(raw[4:], checkpoint.body().encode())
        except InvalidSignature:
            raise CheckpointInvalid("checkpoint signature does not verify (forged or altered)") from None
        return checkpoint
    raise CheckpointInvalid(f"checkpoint carries no signature by key {name!r}")
