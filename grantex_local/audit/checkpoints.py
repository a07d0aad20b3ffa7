"""Signed checkpoints and inclusion proofs.

A checkpoint commits to the first ``size`` entries of a developer's chain with
their RFC 6962 Merkle root, signed by the ledger's Ed25519 checkpoint key. A
copy kept anywhere outside the file lets an auditor detect a deleted tail or
a rewritten chain later; an inclusion proof shows one entry is in the log
with only the proof, the checkpoint and the public key.

Writing a checkpoint first checks the entries appended since the previous
one (links, hashes) and that the stored tree still yields the previous root,
so a checkpoint never blesses a chain that was tampered with in between.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import sqlite3
from typing import TYPE_CHECKING, Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from .. import errors
from ..clock import iso
from ..ids import new_secret
from ..keys import _serialize_private, load_private_key
from . import merkle, note
from .chain import ledger_rows, verify_rows
from .note import Checkpoint, CheckpointInvalid
from .stored import _key_row, key_name, origin
from .trail import tree_node

if TYPE_CHECKING:
    from ..founding import Ledger


class ProofInvalid(CheckpointInvalid):
    code = "PROOF_INVALID"


def ensure_key(ledger: Ledger) -> None:
    """Create the ledger's Ed25519 checkpoint key on first use."""
    if _key_row(ledger) is not None:
        return
    passphrase = ledger.passphrase_for_new_keys()
    private = Ed25519PrivateKey.generate()
    pem, encrypted = _serialize_private(private, passphrase)
    with ledger.write() as conn:
        if conn.execute("SELECT 1 FROM checkpoint_keys").fetchone() is None:
            conn.execute(
                "INSERT INTO checkpoint_keys (name, public_key, private_pem, encrypted, created_at) "
                "VALUES (?, ?, ?, ?, ?)",
                (key_name(ledger), note.public_key_bytes(private.public_key()), pem, int(encrypted),
                 iso(ledger.now())))


def public_key(ledger: Ledger) -> tuple[str, Ed25519PublicKey]:
    ensure_key(ledger)
    row = _key_row(ledger)
    assert row is not None
    return row["name"], Ed25519PublicKey.from_public_bytes(bytes(row["public_key"]))


def verifier_key(ledger: Ledger) -> str:
    """The public key in the signed-note verifier form ``name+keyid+base64(0x01‖key)``."""
    name, pub = public_key(ledger)
    return format_verifier_key(name, pub)


def format_verifier_key(name: str, pub: Ed25519PublicKey) -> str:
    raw = base64.b64encode(note.ED25519_ALG + note.public_key_bytes(pub)).decode()
    return f"{name}+{note.key_id(name, pub).hex()}+{raw}"


def parse_verifier_key(text: str) -> tuple[str, Ed25519PublicKey]:
    try:
        name, kid, raw_b64 = text.strip().split("+", 2)  # the name holds no "+"; base64 may
        raw = base64.b64decode(raw_b64, validate=True)
        if raw[:1] != note.ED25519_ALG or len(raw) != 33:
            raise ValueError
        pub = Ed25519PublicKey.from_public_bytes(raw[1:])
    except ValueError:
        raise CheckpointInvalid("checkpoint public key is not a name+keyid+key verifier key") from None
    if note.key_id(name, pub).hex() != kid:
        raise CheckpointInvalid("checkpoint public key's id does not match the key")
    return name, pub


def _private(ledger: Ledger) -> tuple[str, Ed25519PrivateKey]:
    ensure_key(ledger)
    row = _key_row(ledger)
    assert row is not None
    key = load_private_key(bytes(row["private_pem"]), bool(row["encrypted"]), ledger.passphrase)
    return row["name"], key


def sign_bytes(ledger: Ledger, data: bytes) -> tuple[str, bytes]:
    """Sign ``data`` with the checkpoint key: (key name, Ed25519 signature). The private key
    never leaves this module."""
    name, private = _private(ledger)
    return name, private.sign(data)


def _node_getter(conn: sqlite3.Connection, developer_id: str) -> merkle.NodeGetter:
    return lambda level, index: tree_node(conn, developer_id, level, index)


def latest(ledger: Ledger, developer_id: str) -> sqlite3.Row | None:
    return ledger.query_one(
        "SELECT * FROM audit_checkpoints WHERE developer_id = ? ORDER BY size DESC, timestamp DESC LIMIT 1",
        (developer_id,))


def _to_dict(row: sqlite3.Row | dict[str, Any]) -> dict[str, Any]:
    return {
        "checkpointId": row["id"], "developerId": row["developer_id"], "headEntryId": row["head_entry_id"],
        "headHash": row["head_hash"], "headTimestamp": row["head_timestamp"], "entryCount": row["size"],
        "rootHash": row["root_hash"], "timestamp": row["timestamp"], "signedCheckpoint": row["note"],
        "witnessRequired": False,
    }


def create(ledger: Ledger, developer_id: str) -> dict[str, Any]:
    """Sign a checkpoint over the whole chain as it is now and store it."""
    name, private = _private(ledger)
    with ledger.write() as conn:
        prev = latest(ledger, developer_id)
        head = conn.execute(
            "SELECT seq, id, hash, timestamp FROM audit_entries WHERE developer_id = ? "
            "ORDER BY seq DESC LIMIT 1", (developer_id,)).fetchone()
        size = head["seq"] if head else 0
        get = _node_getter(conn, developer_id)
        if prev is not None:
            if size < prev["size"]:
                raise errors.ChainBroken(size + 1, "tail_deleted",
                                         f"the previous checkpoint covered {prev['size']} entries")
            if merkle.root(prev["size"], get).hex() != prev["root_hash"]:
                raise errors.ChainBroken(prev["size"], "rewritten",
                                         "the log no longer matches the previous checkpoint")
        start = prev["size"] + 1 if prev is not None else 1
        root = _verify_since(ledger, developer_id, start, prev, get)
        if merkle.root(size, get) != root:
            raise errors.ChainBroken(size, "rewritten",
                                     "the stored Merkle tree does not match the entries")
        checkpoint = Checkpoint(origin(ledger, developer_id), size, root, iso(ledger.now()))
        row = {
            "id": new_secret("ckpt_")[:29], "developer_id": developer_id, "size": size,
            "root_hash": root.hex(), "head_entry_id": head["id"] if head else None,
            "head_hash": head["hash"] if head else None,
            "head_timestamp": head["timestamp"] if head else None, "timestamp": checkpoint.timestamp,
            "note": note.sign(checkpoint, name, private),
        }
        conn.execute(
            "INSERT INTO audit_checkpoints (id, developer_id, size, root_hash, head_entry_id, head_hash, "
            "head_timestamp, timestamp, note) VALUES (:id, :developer_id, :size, :root_hash, "
            ":head_entry_id, :head_hash, :head_timestamp, :timestamp, :note)", row)
    return _to_dict(row)


def _verify_since(ledger: Ledger, developer_id: str, start: int, prev: sqlite3.Row | None,
                  get: merkle.NodeGetter) -> bytes:
    """Check the entries after the previous checkpoint and return the root over all entries.

    The tree up to the previous checkpoint is trusted only because its stored
    subtrees fold to the root that checkpoint signed (checked by the caller);
    every leaf after it is recomputed from the entries themselves.
    """
    after, frontier = None, merkle.Frontier()
    if prev is not None and prev["size"] > 0:
        after = (prev["size"], prev["head_hash"], prev["head_entry_id"], prev["head_timestamp"])
        frontier = merkle.Frontier.at(prev["size"], get)
    with contextlib.closing(ledger_rows(ledger, developer_id, start)) as rows:
        verify_rows(rows, developer_id=developer_id, after=after, frontier=frontier)
    return frontier.root()


def list_checkpoints(ledger: Ledger, developer_id: str) -> list[dict[str, Any]]:
    rows = ledger.query("SELECT * FROM audit_checkpoints WHERE developer_id = ? ORDER BY size, timestamp",
                        (developer_id,))
    return [_to_dict(r) for r in rows]


def prove(ledger: Ledger, entry_id: str, developer_id: str | None = None) -> dict[str, Any]:
    """An inclusion proof for one entry under the latest checkpoint that covers it."""
    entry = ledger.query_one("SELECT seq, preimage, hash, developer_id FROM audit_entries WHERE id = ?",
                             (entry_id,))
    if entry is None or (developer_id is not None and entry["developer_id"] != developer_id):
        raise errors.NotFound(f"audit entry {entry_id} not found")
    cp = latest(ledger, entry["developer_id"])
    if cp is None or cp["size"] < entry["seq"]:
        raise errors.InvalidState(
            f"no checkpoint covers entry {entry_id} yet; write one with 'grantex-local audit checkpoint'")
    with ledger.read() as conn:
        path = merkle.inclusion_proof(entry["seq"] - 1, cp["size"], _node_getter(conn, entry["developer_id"]))
    return {
        "entryId": entry_id, "seq": entry["seq"], "leafIndex": entry["seq"] - 1,
        "entryHash": entry["hash"], "preimage": entry["preimage"], "treeSize": cp["size"],
        "proof": [p.hex() for p in path], "checkpoint": cp["note"], "publicKey": verifier_key(ledger),
    }


def verify_proof(proof: Any, verifier: str) -> Checkpoint:
    """Check an inclusion proof offline with only the proof and the public verifier key."""
    if not isinstance(proof, dict):
        raise ProofInvalid("proof must be a JSON object")
    name, pub = parse_verifier_key(verifier)
    checkpoint = note.verify(proof.get("checkpoint", ""), name, pub)
    try:
        index, size = int(proof["leafIndex"]), int(proof["treeSize"])
        path = [bytes.fromhex(p) for p in proof["proof"]]
        preimage: str = proof["preimage"]
        entry_hash = hashlib.sha256(preimage.encode("utf-8")).hexdigest()
    except (KeyError, TypeError, ValueError, AttributeError):
        raise ProofInvalid("proof is missing fields or has malformed ones") from None
    if entry_hash != proof.get("entryHash"):
        raise ProofInvalid("the entry's bytes do not hash to entryHash")
    try:
        named = json.loads(preimage).get("id")
    except ValueError:
        raise ProofInvalid("the proof's preimage is not an audit entry") from None
    if named != proof.get("entryId") or proof.get("seq") != index + 1:
        raise ProofInvalid("the proof names another entry (entryId or seq) than the one it proves")
    if size != checkpoint.size:
        raise ProofInvalid("the proof's tree size is not the checkpoint's")
    if not merkle.verify_inclusion(index, size, merkle.leaf_hash(entry_hash), path, checkpoint.root_hash):
        raise ProofInvalid("the inclusion proof does not lead to the checkpoint's root")
    return checkpoint


def verify_against(ledger: Ledger, developer_id: str, note_text: str,
                   verifier: str | None = None) -> Checkpoint:
    """Parse and check an external checkpoint's signature (ledger key unless one is given)."""
    if verifier is not None:
        name, pub = parse_verifier_key(verifier)
    else:
        name, pub = public_key(ledger)
    checkpoint = note.verify(note_text, name, pub)
    if checkpoint.origin != origin(ledger, developer_id):
        raise CheckpointInvalid(f"checkpoint is for {checkpoint.origin}, not this chain")
    return checkpoint
