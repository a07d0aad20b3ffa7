"""Offline sync (issue 14): importing a device's signed, hash-chained log into the ledger.

The log is made the way grantex-gemma makes it (``compute_entry_hash``, Ed25519 over the hex
hash, base64url), under a bundle issued by the library. Ours: ``bundles.sync`` of all N entries
in one call (parse, per-entry hash, link, signature, seq and grant checks, one transaction
appending N audit entries and their Merkle nodes). The floor, from the same entries in the same
run: recomputing the SHA-256 hashes and verifying the Ed25519 signatures alone, which any sync
must do; ``ours / floor`` is what checking the rest and writing the chain cost on top.
"""

from __future__ import annotations

import base64
import hashlib
import json
import time
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import load_pem_private_key

from grantex_local import Grantex, Ledger, bundles, developers

from .common import Row

SCOPES = ["sensor:read"]


def _device_log(bundle: dict[str, Any], grant_id: str, agent_did: str, count: int) -> list[dict[str, Any]]:
    """What the package's ``OfflineAuditLog.append`` writes, ``count`` times."""
    key = load_pem_private_key(bundle["offlineAuditKey"]["privateKey"].encode(), password=None)
    assert isinstance(key, Ed25519PrivateKey)
    prev, out = "0" * 64, []
    for seq in range(1, count + 1):
        entry: dict[str, Any] = {"seq": seq, "timestamp": f"2026-01-01T00:00:{seq % 60:02d}.{seq:06d}+00:00",
                                 "action": "sensor.read", "agent_did": agent_did, "grant_id": grant_id,
                                 "scopes": SCOPES, "result": "success", "metadata": {"reading": seq},
                                 "prev_hash": prev}
        digest = hashlib.sha256(json.dumps(entry, sort_keys=True, separators=(",", ":")).encode()).hexdigest()
        entry["hash"] = digest
        entry["signature"] = base64.urlsafe_b64encode(key.sign(digest.encode())).decode()
        out.append(entry)
        prev = digest
    return out


def _floor(entries: list[dict[str, Any]], public: Ed25519PublicKey) -> float:
    """Seconds to recompute every hash and verify every signature, nothing else."""
    start = time.perf_counter()
    for e in entries:
        content = {k: e[k] for k in ("seq", "timestamp", "action", "agent_did", "grant_id", "scopes",
                                     "result", "metadata", "prev_hash")}
        text = json.dumps(content, sort_keys=True, separators=(",", ":"))
        digest = hashlib.sha256(text.encode()).hexdigest()
        public.verify(base64.urlsafe_b64decode(e["signature"]), digest.encode())
    return time.perf_counter() - start


def sync(workdir: Path, count: int = 100_000) -> Row:
    path = Path(workdir) / "bundles-bench.db"
    with Ledger(path) as ledger:
        ledger.set_setting("max_expires_in", "30d")
        developer_id = developers.default_developer(ledger).id
        gx = Grantex(ledger)
        agent = gx.agents.register(name="sensor", scopes=SCOPES)
        made = bundles.create(ledger, developer_id, agent_id=agent.id, principal_id="user_bench",
                              scopes=SCOPES, offline_ttl="7d", approve_as="bench")
        grant_id = bundles.get(ledger, None, made["bundleId"])["grantId"]
        raw = _device_log(made, grant_id, agent.did, count)
        key = load_pem_private_key(made["offlineAuditKey"]["privateKey"].encode(), password=None)
        assert isinstance(key, Ed25519PrivateKey)
        floor_seconds = _floor(raw, key.public_key())
        start = time.perf_counter()
        outcome = bundles.sync(ledger, None, made["bundleId"], bundles.parse_entries(raw))
        ours_seconds = time.perf_counter() - start
        assert outcome.accepted == count and outcome.rejected == 0, outcome.rejections[:1]
    return Row(f"offline sync, {count:,} entries", "entries/s", count / ours_seconds, count / floor_seconds,
               ">= 0.5", "SHA-256 + Ed25519 verify of the same entries alone",
               f"one transaction, {count:,} audit entries appended")
