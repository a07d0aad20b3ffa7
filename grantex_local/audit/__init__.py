"""The audit trail: hash chain, signed checkpoints, inclusion proofs, verification."""

from __future__ import annotations

from .chain import ChainReport, verify_chain, verify_rows
from .checkpoints import ProofInvalid, verify_proof
from .note import CheckpointInvalid
from .trail import LIFECYCLE_PREFIX, STATUSES, get_entry, list_entries, log, log_many, record

__all__ = [
    "LIFECYCLE_PREFIX", "STATUSES", "ChainReport", "CheckpointInvalid", "ProofInvalid", "get_entry",
    "list_entries", "log", "log_many", "record", "verify_chain", "verify_proof", "verify_rows",
]
