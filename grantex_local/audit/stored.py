"""The checkpoints stored in the ledger, read back as evidence.

Why a module of its own: plain chain verification (:mod:`.chain`) checks the chain against
every checkpoint the file holds, and making checkpoints (:mod:`.checkpoints`) needs chain
verification; reading and checking what is stored sits below both, so neither imports the other.
"""

from __future__ import annotations

import contextlib
import sqlite3
from typing import TYPE_CHECKING

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from .. import errors
from . import note
from .note import Checkpoint, CheckpointInvalid

if TYPE_CHECKING:
    from ..founding import Ledger


def key_name(ledger: Ledger) -> str:
    return f"grantex-local/{ledger.setting('ledger_id')}"


def origin(ledger: Ledger, developer_id: str) -> str:
    return f"{key_name(ledger)}/{developer_id}"


def _key_row(ledger: Ledger) -> sqlite3.Row | None:
    return ledger.query_one("SELECT * FROM checkpoint_keys ORDER BY created_at LIMIT 1")


def stored_checkpoints(ledger: Ledger, developer_id: str) -> list[tuple[str, Checkpoint]]:
    """Every checkpoint stored for the chain as (id, checkpoint), smallest first, each signature
    checked with the ledger's own checkpoint key.

    A stored checkpoint that does not verify is evidence of tampering with the file, not bad
    input, so it raises ChainBroken (reason ``checkpoint_invalid``, at the last entry it claims
    to cover) naming the checkpoint. The key is read, never created (auditor mode opens a
    read-only copy). What this proves is that the chain still holds what the ledger once
    signed: someone who rewrites the whole file can replace the key and re-sign, which only a
    checkpoint kept elsewhere (``--against``) catches.
    """
    rows = ledger.query("SELECT id, size, root_hash, note FROM audit_checkpoints WHERE developer_id = ? "
                        "ORDER BY size, timestamp", (developer_id,))
    if not rows:
        return []

    def invalid(row: sqlite3.Row, why: str) -> errors.ChainBroken:
        size = row["size"] if isinstance(row["size"], int) else 0
        return errors.ChainBroken(max(size, 1), "checkpoint_invalid", f"stored checkpoint {row['id']}: {why}")

    key = _key_row(ledger)
    pub = None
    if key is not None:
        with contextlib.suppress(ValueError, TypeError):
            pub = Ed25519PublicKey.from_public_bytes(bytes(key["public_key"]))
    if key is None or pub is None:
        raise invalid(rows[0], "the ledger holds no usable checkpoint key to check it with")
    name, wanted = key["name"], origin(ledger, developer_id)
    out = []
    for row in rows:
        try:
            checkpoint = note.verify(row["note"], name, pub)
        except CheckpointInvalid as exc:
            raise invalid(row, exc.message) from None
        if checkpoint.origin != wanted:
            raise invalid(row, f"it is for {checkpoint.origin}, not this chain")
        if checkpoint.size != row["size"] or checkpoint.root_hash.hex() != row["root_hash"]:
            raise invalid(row, "its size or root column differs from what it signed")
        out.append((row["id"], checkpoint))
    return out
