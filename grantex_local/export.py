"""Export bundles, and checking them offline with no ledger at hand.

A bundle is a directory an auditor can take away: every table as JSON Lines
(the form that is verified) and as CSV (the same rows, for spreadsheets), the
audit entries with the exact bytes that were hashed, every signed
checkpoint, the issuer JWKS and the public checkpoint key, plus
``manifest.json`` (SHA-256, size and row count of every file, and each
chain's head and Merkle root) and ``manifest.sig``, the manifest's bytes
signed with the ledger's Ed25519 checkpoint key as one line
``<key name> <base64 signature>``.

Nothing secret goes in: rows are built from an allow-list of columns, so a
column added to a table later (a hash of a code, a private key) stays out
until someone decides it belongs. Private keys, auth codes, refresh tokens
and API keys never leave the ledger, not even hashed.

Verification trusts nothing in the bundle but the signature, and the
signature only as far as the key it was checked with: the key printed in the
bundle proves only that the bundle is self-consistent, so a caller that has
the ledger's key from elsewhere passes it in. The audit chains are
re-verified from the stored bytes with the same streaming verifier the
ledger uses, so an edited entry is found even in a bundle whose manifest was
rewritten and re-signed with the real key.

The hosted service's audit export (``{generatedAt, total, entries}``) is
accepted too; it carries no stored preimages or signatures, so each preimage
is rebuilt from the entry's fields and only the chain's internal consistency
can be checked.
"""

from __future__ import annotations

import base64
import contextlib
import csv
import hashlib
import itertools
import json
import os
import shutil
import sqlite3
import tempfile
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from . import agents, grants, keys, policies
from .audit import checkpoints, note
from .audit.chain import ChainReport, verify_rows
from .audit.hashing import canonical_json, preimage_text
from .audit.note import CheckpointInvalid
from .audit.trail import NOT_UTF8, count_entries, entry_from_row
from .clock import iso
from .errors import ChainBroken, InvalidInput
from .progress import Progress, Tally
from .text import escape_surrogates

if TYPE_CHECKING:
    from .founding import Ledger

FORMAT = "grantex-local-export"
VERSION = 1
MANIFEST = "manifest.json"
SIGNATURE = "manifest.sig"
JWKS = "jwks.json"
CHECKPOINT_KEY = "checkpoint_key.pub"
AUDIT_TABLE = "audit_entries"
CHECKPOINT_TABLE = "checkpoints"

TABLES: dict[str, tuple[str, ...]] = {
    "developers": ("id", "name", "sandbox", "isDefault", "createdAt"),
    "agents": ("agentId", "id", "did", "developerId", "name", "description", "scopes", "status",
               "redirectUris", "publicJwk", "keyThumbprint", "createdAt", "updatedAt", "didDocument"),
    "grants": ("grantId", "id", "agentId", "agentDid", "principalId", "developerId", "scopes", "status",
               "issuedAt", "expiresAt", "delegationDepth", "revokedAt", "parentGrantId", "audience"),
    "tokens": ("jti", "grantId", "kid", "issuedAt", "expiresAt", "revokedAt", "refreshUsedAt"),
    "auth_requests": ("id", "developerId", "agentId", "principalId", "scopes", "expiresIn", "status",
                      "createdAt", "expiresAt", "decidedAt", "decidedBy", "policyId", "grantId",
                      "redirectUri", "state", "audience"),
    "policies": ("id", "developerId", "name", "effect", "priority", "agentId", "principalId", "scopes",
                 "timeWindow", "timeOfDayStart", "timeOfDayEnd", "createdAt", "updatedAt"),
    AUDIT_TABLE: ("seq", "entryId", "developerId", "agentId", "agentDid", "grantId", "principalId",
                  "action", "status", "timestamp", "hash", "prevHash", "metadata", "preimage"),
    CHECKPOINT_TABLE: ("checkpointId", "developerId", "entryCount", "rootHash", "headEntryId", "headHash",
                       "headTimestamp", "timestamp", "signedCheckpoint"),
}
"""Every table in a bundle and the only columns it may carry, in CSV order."""

DATA_FILES = tuple(f"{t}.{ext}" for t in TABLES for ext in ("jsonl", "csv"))
BUNDLE_FILES = (*DATA_FILES, JWKS, CHECKPOINT_KEY)
"""The files the manifest lists (it does not list itself or its signature)."""


def bundle_file_count(manifest: Mapping[str, Any]) -> int:
    """How many files a bundle directory holds: those its manifest lists, the manifest and the
    signature. ``export`` and ``verify-export`` both report this number, the one ``ls`` shows."""
    return len(manifest["files"]) + len((MANIFEST, SIGNATURE))

_AUDIT_FILE = f"{AUDIT_TABLE}.jsonl"
_CHECKPOINT_FILE = f"{CHECKPOINT_TABLE}.jsonl"
_ENTRY_FIELDS = (("entryId", "id"), ("developerId", "developerId"), ("agentId", "agentId"),
                 ("agentDid", "agentDid"), ("grantId", "grantId"), ("principalId", "principalId"),
                 ("action", "action"), ("status", "status"), ("timestamp", "timestamp"),
                 ("prevHash", "prevHash"))
"""(bundle column, preimage key) pairs that must agree for every entry."""
_TEXT_FIELDS = ("id", "developerId", "timestamp", "action", "status")
"""Entry fields the chain verifier compares or groups by, so they must be text."""

KEY_FROM_BUNDLE_WARNING = (
    "the signature was checked with the key the bundle itself carries, which proves only that the "
    "bundle is self-consistent; compare it out of band with the ledger's key "
    "('grantex-local audit public-key') or pass that key to the check")
HOSTED_WARNING = ("a hosted-service export carries no signatures or stored preimages; only the chains' "
                  "internal consistency was checked")


class ExportInvalid(InvalidInput):
    """A bundle (or hosted export) whose manifest, signature or files do not check; ``file`` names it."""

    code = "EXPORT_INVALID"

    def __init__(self, file: str, message: str) -> None:
        super().__init__(f"{file}: {message}")
        self.file = file


# ── writing ──────────────────────────────────────────────────────────────────


def _json_text(value: Any) -> str:
    """Compact JSON, readable UTF-8 unless the value holds a lone surrogate (then \\u-escaped).

    Metadata may carry lone surrogates (the preimage escapes them), and a
    bundle file must still be valid UTF-8.
    """
    text = json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        text = json.dumps(value, separators=(",", ":"))
    return text


def csv_cell(value: Any) -> str:
    """Text as is, nothing as an empty cell, everything else (lists, objects, numbers) as JSON."""
    if value is None:
        return ""
    if isinstance(value, str):
        return escape_surrogates(value)  # a lone surrogate cannot be written as UTF-8
    return _json_text(value)


class _TableWriter:
    """Writes one table to its ``.jsonl`` and ``.csv`` files at once, row by row."""

    def __init__(self, directory: Path, table: str) -> None:
        self.table = table
        self.columns = TABLES[table]
        self.rows = 0
        self._jsonl = open(directory / f"{table}.jsonl", "w", encoding="utf-8", newline="\n")
        self._csv_file = open(directory / f"{table}.csv", "w", encoding="utf-8", newline="")
        self._csv = csv.writer(self._csv_file)
        self._csv.writerow(self.columns)

    def write(self, row: Mapping[str, Any]) -> None:
        kept = allowed(self.table, row)
        self._jsonl.write(_json_text(kept) + "\n")
        self._csv.writerow([csv_cell(kept.get(c)) for c in self.columns])
        self.rows += 1

    def close(self) -> None:
        for handle in (self._jsonl, self._csv_file):
            handle.flush()
            os.fsync(handle.fileno())
            handle.close()

    def __enter__(self) -> _TableWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _write_table(directory: Path, table: str, rows: Iterable[Mapping[str, Any]]) -> int:
    with _TableWriter(directory, table) as writer:
        for row in rows:
            writer.write(row)
        return writer.rows


def _write_text(path: Path, text: str) -> None:
    with open(path, "w", encoding="utf-8", newline="\n") as handle:
        handle.write(text)
        handle.flush()
        os.fsync(handle.fileno())


def file_sha256(path: Path) -> str:
    """Hex SHA-256 of a file, read in 1 MiB blocks (export files can be large)."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _developer_rows(ledger: Ledger) -> Iterator[dict[str, Any]]:
    for r in ledger.query("SELECT id, name, sandbox, is_default, created_at FROM developers "
                          "ORDER BY created_at, id"):
        yield {"id": r["id"], "name": r["name"], "sandbox": bool(r["sandbox"]),
               "isDefault": bool(r["is_default"]), "createdAt": r["created_at"]}


def _agent_rows(ledger: Ledger) -> Iterator[dict[str, Any]]:
    for listed in agents.list_agents(ledger, None, include_deleted=True):
        agent = agents.get(ledger, None, listed.id, include_deleted=True)  # with its current key
        yield {**agent.to_dict(), "didDocument": agents.did_document(ledger, None, agent.id)}


def _token_rows(ledger: Ledger) -> Iterator[dict[str, Any]]:
    cursor = ledger.conn.execute(
        "SELECT jti, grant_id, kid, issued_at, expires_at, revoked_at, refresh_used_at FROM tokens "
        "ORDER BY issued_at, jti")
    with contextlib.closing(cursor):
        for r in cursor:
            yield {"jti": r["jti"], "grantId": r["grant_id"], "kid": r["kid"], "issuedAt": r["issued_at"],
                   "expiresAt": r["expires_at"], "revokedAt": r["revoked_at"],
                   "refreshUsedAt": r["refresh_used_at"]}


def _auth_request_rows(ledger: Ledger) -> Iterator[dict[str, Any]]:
    cursor = ledger.conn.execute(
        "SELECT id, developer_id, agent_id, principal_id, scopes, expires_in, status, created_at, "
        "expires_at, decided_at, decided_by, policy_id, grant_id, redirect_uri, state, audience "
        "FROM auth_requests ORDER BY created_at, id")
    with contextlib.closing(cursor):
        for r in cursor:
            yield {"id": r["id"], "developerId": r["developer_id"], "agentId": r["agent_id"],
                   "principalId": r["principal_id"], "scopes": json.loads(r["scopes"]),
                   "expiresIn": r["expires_in"], "status": r["status"], "createdAt": r["created_at"],
                   "expiresAt": r["expires_at"], "decidedAt": r["decided_at"],
                   "decidedBy": r["decided_by"], "policyId": r["policy_id"], "grantId": r["grant_id"],
                   "redirectUri": r["redirect_uri"], "state": r["state"], "audience": r["audience"]}


def _policy_rows(ledger: Ledger) -> Iterator[dict[str, Any]]:
    for dev in ledger.query("SELECT id FROM developers ORDER BY created_at, id"):
        for policy in policies.list_policies(ledger, dev["id"]):
            yield policy.to_dict()


def _checkpoint_rows(ledger: Ledger) -> list[dict[str, Any]]:
    rows = ledger.query(
        "SELECT id, developer_id, size, root_hash, head_entry_id, head_hash, head_timestamp, timestamp, "
        "note FROM audit_checkpoints ORDER BY developer_id, size, timestamp, id")
    return [{"checkpointId": r["id"], "developerId": r["developer_id"], "entryCount": r["size"],
             "rootHash": r["root_hash"], "headEntryId": r["head_entry_id"], "headHash": r["head_hash"],
             "headTimestamp": r["head_timestamp"], "timestamp": r["timestamp"],
             "signedCheckpoint": r["note"]} for r in rows]


def _chain_developer_ids(ledger: Ledger) -> list[str]:
    """Every developer with a chain, entries or checkpoints (UNION sorts and de-duplicates)."""
    return [r[0] for r in ledger.query(
        "SELECT id FROM developers UNION SELECT developer_id FROM audit_entries "
        "UNION SELECT developer_id FROM audit_checkpoints ORDER BY 1")]


def _export_chains(ledger: Ledger, directory: Path, stored: list[dict[str, Any]],
                   tally: Tally) -> list[ChainReport]:
    """Stream every chain to the audit files while the ledger's verifier walks it.

    The export refuses to sign a broken chain (ChainBroken), as a checkpoint
    does; the verifier's report gives the manifest's heads and roots.
    """
    reports: list[ChainReport] = []
    with _TableWriter(directory, AUDIT_TABLE) as writer:
        for developer_id in _chain_developer_ids(ledger):
            notes = [checkpoints.verify_against(ledger, developer_id, c["signedCheckpoint"])
                     for c in stored if c["developerId"] == developer_id]

            def written(cursor: Iterable[Any]) -> Iterator[tuple[int, str, str]]:
                for seq, stored, digest in cursor:
                    text = _stored_text(seq, stored)
                    writer.write(audit_row(seq, text, digest))
                    tally.advance()
                    yield seq, text, digest

            with contextlib.closing(_chain_bytes(ledger, developer_id)) as cursor:
                reports.append(verify_rows(written(cursor), developer_id=developer_id, checkpoints=notes))
    return reports


def audit_row(seq: int, text: str, digest: str) -> dict[str, Any]:
    """One audit entry as bundles and evidence packs carry it: its fields read out of the stored
    preimage, plus that preimage byte for byte (so an offline check can recompute the hash)."""
    entry = entry_from_row((seq, text, digest))
    return {"seq": seq, "entryId": entry.entry_id, "developerId": entry.developer_id,
            "agentId": entry.agent_id, "agentDid": entry.agent_did, "grantId": entry.grant_id,
            "principalId": entry.principal_id, "action": entry.action, "status": entry.status,
            "timestamp": entry.timestamp, "hash": digest, "prevHash": entry.prev_hash,
            "metadata": entry.metadata, "preimage": text}


def allowed(table: str, row: Mapping[str, Any]) -> dict[str, Any]:
    """Only the allow-listed columns of ``table`` (see :data:`TABLES`): what any export may carry."""
    return {c: row[c] for c in TABLES[table] if c in row}


def chain_bytes(ledger: Ledger, developer_id: str) -> sqlite3.Cursor:
    """The chain's rows (seq, preimage bytes, hash) in seq order: see :func:`_chain_bytes`."""
    return _chain_bytes(ledger, developer_id)


def stored_text(seq: int, stored: bytes | str) -> str:
    """A stored preimage as text; bytes that are not UTF-8 are a break at ``seq`` (ChainBroken)."""
    return _stored_text(seq, stored)


def _chain_bytes(ledger: Ledger, developer_id: str) -> sqlite3.Cursor:
    """:func:`~.audit.chain.ledger_rows` with each preimage as stored bytes: a row that is not
    UTF-8 (written behind the ledger's back) must stop the export at its seq, as a broken chain,
    rather than fail the driver's decoding with no seq at all."""
    cursor = ledger.conn.cursor()
    cursor.row_factory = None
    return cursor.execute(
        "SELECT seq, CAST(preimage AS BLOB), hash FROM audit_entries WHERE developer_id = ? ORDER BY seq",
        (developer_id,))


def _stored_text(seq: int, stored: bytes | str) -> str:
    if isinstance(stored, str):
        return stored
    try:
        return stored.decode("utf-8")
    except UnicodeDecodeError:
        raise ChainBroken(seq, "content_changed", NOT_UTF8) from None


def _replaceable(out: Path, fmt: str) -> bool:
    """Only an empty directory or an earlier export of the same format may be replaced:
    --force must never eat a home directory."""
    if not out.is_dir():
        return False
    if not any(out.iterdir()):
        return True
    try:
        return bool(json.loads((out / MANIFEST).read_text(encoding="utf-8")).get("format") == fmt)
    except (OSError, ValueError, AttributeError):
        return False


def write_signed_export(
    ledger: Ledger,
    out_dir: str | os.PathLike[str],
    *,
    force: bool,
    fmt: str,
    kind: str,
    write: Callable[[Path, str], dict[str, Any]],
) -> dict[str, Any]:
    """The part every export shares (bundles here, parquet in ``analysis.parquet``).

    Checks OUT may be replaced, lets ``write(tmp_dir, verifier_key_text)`` fill a
    temporary directory beside it and return the manifest, signs the manifest
    with the checkpoint key (``manifest.sig``), and renames the directory into
    place, so a crash never leaves a half export. Returns the manifest plus ``path``.
    """
    out = Path(out_dir)
    if out.exists() or out.is_symlink():
        if not force:
            raise InvalidInput(f"{out} already exists; pass force (--force) to replace an earlier export")
        if out.is_symlink() or not _replaceable(out, fmt):
            raise InvalidInput(
                f"{out} is not an earlier {kind} or an empty directory; refusing to replace it")
    if not out.parent.is_dir():
        raise InvalidInput(f"directory {out.parent} does not exist")
    key_text = checkpoints.verifier_key(ledger)  # before the snapshot: creating the key writes
    try:
        tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".partial", dir=out.parent))
    except OSError as exc:
        raise InvalidInput(f"cannot write an export beside {out}: {exc.strerror or exc}") from None
    try:
        manifest = write(tmp, key_text)
        manifest_bytes = (json.dumps(manifest, indent=2, sort_keys=True, ensure_ascii=False) + "\n").encode()
        with open(tmp / MANIFEST, "wb") as handle:
            handle.write(manifest_bytes)
            handle.flush()
            os.fsync(handle.fileno())
        key_name, raw_signature = checkpoints.sign_bytes(ledger, manifest_bytes)
        _write_text(tmp / SIGNATURE, f"{key_name} {base64.b64encode(raw_signature).decode()}\n")
        for path in tmp.iterdir():
            path.chmod(0o644)
        tmp.chmod(0o755)
        _move_into_place(tmp, out)
    except BaseException as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        if isinstance(exc, OSError):
            raise InvalidInput(f"cannot write the export to {out}: {exc.strerror or exc}") from None
        raise
    return {**manifest, "path": str(out)}


def export_bundle(ledger: Ledger, out_dir: str | os.PathLike[str], *, force: bool = False,
                  progress: Progress | None = None) -> dict[str, Any]:
    """Write a bundle directory at ``out_dir``; returns its manifest plus ``path``.

    Everything is read in one snapshot and written to a temporary directory
    beside ``out_dir`` that is renamed into place at the end, so a crash
    leaves no half bundle. Raises ChainBroken rather than sign a broken chain.
    ``progress`` is told the audit entries written (of all in the snapshot).
    """
    return write_signed_export(ledger, out_dir, force=force, fmt=FORMAT, kind="export bundle",
                               write=lambda tmp, key_text: _write_bundle(ledger, tmp, key_text, progress))


def _write_bundle(ledger: Ledger, directory: Path, key_text: str,
                  progress: Progress | None = None) -> dict[str, Any]:
    """Every data file, from one read snapshot; returns the manifest (not yet written or signed)."""
    counts: dict[str, int] = {}
    with ledger.read():
        # the count costs a scan of the index: only when someone watches
        tally = Tally(progress, count_entries(ledger) if progress is not None else None)
        created_at = iso(ledger.now())
        ledger_id, issuer = ledger.setting("ledger_id"), ledger.issuer
        jwks = keys.jwks(ledger, include_all=True)
        counts["developers"] = _write_table(directory, "developers", _developer_rows(ledger))
        counts["agents"] = _write_table(directory, "agents", _agent_rows(ledger))
        counts["grants"] = _write_table(directory, "grants",
                                        (g.to_dict() for g in grants.list_grants(ledger, None)))
        counts["tokens"] = _write_table(directory, "tokens", _token_rows(ledger))
        counts["auth_requests"] = _write_table(directory, "auth_requests", _auth_request_rows(ledger))
        counts["policies"] = _write_table(directory, "policies", _policy_rows(ledger))
        stored = _checkpoint_rows(ledger)
        counts[CHECKPOINT_TABLE] = _write_table(directory, CHECKPOINT_TABLE, stored)
        reports = _export_chains(ledger, directory, stored, tally)
        counts[AUDIT_TABLE] = sum(r.entries for r in reports)
        tally.finish()
    _write_text(directory / JWKS, json.dumps(jwks, indent=2, sort_keys=True) + "\n")
    _write_text(directory / CHECKPOINT_KEY, key_text + "\n")
    files: dict[str, dict[str, Any]] = {}
    for name in BUNDLE_FILES:
        path = directory / name
        entry: dict[str, Any] = {"sha256": file_sha256(path), "bytes": path.stat().st_size}
        table, _, ext = name.rpartition(".")
        if ext in ("jsonl", "csv"):
            entry["rows"] = counts[table]
        files[name] = entry
    return {
        "format": FORMAT, "version": VERSION, "createdAt": created_at, "ledgerId": ledger_id,
        "issuer": issuer, "checkpointKey": key_text, "files": files,
        "chains": [{"developerId": r.developer_id, "entries": r.entries, "headHash": r.head_hash,
                    "rootHash": r.root_hash} for r in reports],
    }


def _move_into_place(tmp: Path, out: Path) -> None:
    old = None
    if out.exists():
        old = out.with_name(f".{out.name}.{os.urandom(4).hex()}.old")
        os.rename(out, old)
    try:
        os.rename(tmp, out)
    except OSError:
        if old is not None:
            os.rename(old, out)
        raise
    with contextlib.suppress(OSError):  # make the rename itself durable where the OS allows it
        fd = os.open(out.parent, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


# ── verifying a bundle ───────────────────────────────────────────────────────


def _rechained(exc: ChainBroken, where: str) -> ChainBroken:
    """The same break, with the file and chain it was found in added to the message."""
    return ChainBroken(exc.seq, exc.reason, f"{exc.detail} ({where})")


def _read_signature(directory: Path) -> tuple[str, bytes]:
    try:
        text = (directory / SIGNATURE).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ExportInvalid(SIGNATURE, "is missing: the bundle is not signed") from None
    except (OSError, UnicodeDecodeError):
        raise ExportInvalid(SIGNATURE, "cannot be read as text") from None
    parts = text.split(" ")
    if not text.endswith("\n") or text.count("\n") != 1 or len(parts) != 2:
        raise ExportInvalid(SIGNATURE, "must be one line '<key name> <base64 signature>'")
    blob = parts[1].removesuffix("\n")
    try:
        raw = base64.b64decode(blob, validate=True)
    except ValueError:
        raise ExportInvalid(SIGNATURE, "the signature is not base64") from None
    if base64.b64encode(raw).decode() != blob:  # one spelling only, as for checkpoint notes
        raise ExportInvalid(SIGNATURE, "the signature is not canonical base64")
    return parts[0], raw


def _verifying_key(verifier_key: str | None, carried: Any, file: str,
                   field: str) -> tuple[str, str, str, Ed25519PublicKey]:
    """The key a signature is checked with: the one given, else the one the file carries
    (``field``, which proves only self-consistency). Returns (source, key text, key name, key)."""
    source = "given" if verifier_key is not None else "bundle"
    key_text = verifier_key if verifier_key is not None else carried
    if not isinstance(key_text, str):
        raise ExportInvalid(file, f"carries no {field} to check its signature with")
    try:
        name, public = checkpoints.parse_verifier_key(key_text)
    except CheckpointInvalid as exc:
        if source == "given":
            raise
        raise ExportInvalid(file, f"{field}: {exc.message}") from None
    return source, key_text, name, public


def _check_signature(directory: Path, verifier_key: str | None) -> tuple[dict[str, Any], str]:
    """The manifest, once its signature checks; and where the key came from."""
    try:
        manifest_bytes = (directory / MANIFEST).read_bytes()
    except FileNotFoundError:
        raise ExportInvalid(MANIFEST, "is missing: not an export bundle") from None
    sig_name, signature = _read_signature(directory)
    try:
        manifest = json.loads(manifest_bytes)
    except ValueError:
        manifest = None
    if not isinstance(manifest, dict):
        raise ExportInvalid(MANIFEST, "is not a JSON object (altered or not a bundle manifest)")
    source, key_text, name, public = _verifying_key(verifier_key, manifest.get("checkpointKey"),
                                                    MANIFEST, "checkpointKey")
    if sig_name != name:
        raise ExportInvalid(SIGNATURE, f"is signed by key {sig_name!r}, not {name!r}")
    try:
        public.verify(signature, manifest_bytes)
    except InvalidSignature:
        raise ExportInvalid(
            MANIFEST, f"does not match its signature in {SIGNATURE} under key {name!r} "
            "(manifest or signature altered, or signed by another key)") from None
    if manifest.get("format") != FORMAT or manifest.get("version") != VERSION:
        raise ExportInvalid(MANIFEST, f"is not a {FORMAT} version {VERSION} manifest")
    if str(manifest.get("checkpointKey", "")).strip() != key_text.strip():
        raise ExportInvalid(MANIFEST, "checkpointKey is not the key that signed the manifest")
    return manifest, source


def _check_files(directory: Path, manifest: Mapping[str, Any]) -> None:
    listed = manifest.get("files")
    if not isinstance(listed, dict):
        raise ExportInvalid(MANIFEST, "has no files table")
    for name in BUNDLE_FILES:
        if name not in listed:
            raise ExportInvalid(name, f"is not listed in {MANIFEST}")
    for name in listed:
        if name not in BUNDLE_FILES:
            raise ExportInvalid(name, f"is listed in {MANIFEST} but is not part of a bundle")
    present = {p.name for p in directory.iterdir()}
    for name in sorted(present - {*BUNDLE_FILES, MANIFEST, SIGNATURE}):
        raise ExportInvalid(name, "is in the bundle directory but not listed in the manifest")
    for name in BUNDLE_FILES:
        path = directory / name
        if name not in present or not path.is_file():
            raise ExportInvalid(name, "is missing from the bundle")
        expected = listed[name]
        if not isinstance(expected, dict):
            raise ExportInvalid(MANIFEST, f"entry for {name} is malformed")
        if path.stat().st_size != expected.get("bytes") or file_sha256(path) != expected.get("sha256"):
            raise ExportInvalid(name, f"does not match the SHA-256 and size in {MANIFEST} (altered)")


def _jsonl(directory: Path, name: str) -> Iterator[tuple[int, dict[str, Any]]]:
    """(line number, row) of a JSON Lines file, streamed."""
    with open(directory / name, encoding="utf-8") as handle:
        try:
            for number, line in enumerate(handle, 1):
                try:
                    row = json.loads(line)
                except ValueError:
                    row = None
                if not isinstance(row, dict):
                    raise ExportInvalid(name, f"line {number} is not a JSON object")
                yield number, row
        except UnicodeDecodeError:
            raise ExportInvalid(name, "is not UTF-8 text") from None


def _bundle_checkpoints(directory: Path,
                        key: tuple[str, Ed25519PublicKey]) -> dict[str, list[dict[str, Any]]]:
    """Each stored checkpoint, its signature checked, grouped by developer."""
    name, public = key
    out: dict[str, list[dict[str, Any]]] = {}
    for number, row in _jsonl(directory, _CHECKPOINT_FILE):
        where = f"line {number} (checkpoint {row.get('checkpointId')})"
        developer_id = row.get("developerId")
        if not isinstance(developer_id, str):
            raise ExportInvalid(_CHECKPOINT_FILE, f"{where} has no developerId")
        try:
            parsed = note.verify(row.get("signedCheckpoint", ""), name, public)
        except CheckpointInvalid as exc:
            raise ExportInvalid(_CHECKPOINT_FILE, f"{where}: {exc.message}") from None
        if parsed.origin != f"{name}/{developer_id}":
            raise ExportInvalid(_CHECKPOINT_FILE, f"{where} is signed for {parsed.origin}, not this chain")
        if row.get("entryCount") != parsed.size or row.get("rootHash") != parsed.root_hash.hex():
            raise ExportInvalid(_CHECKPOINT_FILE,
                                f"{where}: entryCount or rootHash differ from the signed note")
        out.setdefault(developer_id, []).append({"checkpoint": parsed, "headHash": row.get("headHash"),
                                                 "where": where})
    return out


def _entry_problem(row: Mapping[str, Any], developer_id: str) -> str | None:
    """Why a bundle row disagrees with the bytes that were hashed, if it does."""
    if isinstance(row.get("seq"), bool) or not isinstance(row.get("seq"), int):
        return "seq is not a whole number"
    text, digest = row.get("preimage"), row.get("hash")
    if not isinstance(text, str) or not isinstance(digest, str):
        return "preimage and hash must be strings"
    try:
        hashed = json.loads(text)
    except ValueError:
        return None  # the chain verifier reports unparseable bytes by seq
    if not isinstance(hashed, dict):
        return None
    if not all(isinstance(hashed.get(k), str) for k in _TEXT_FIELDS):
        return f"the hashed entry's {', '.join(_TEXT_FIELDS)} must be strings"
    for column, key in _ENTRY_FIELDS:
        if row.get(column) != hashed.get(key):
            return f"{column} is {row.get(column)!r} but the hashed entry says {hashed.get(key)!r}"
    if row.get("developerId") != developer_id:
        return f"belongs to developer {row.get('developerId')!r}, not {developer_id!r}"
    try:
        if canonical_json(row.get("metadata")) != canonical_json(hashed.get("metadata")):
            return "metadata differs from the hashed entry's"
    except InvalidInput:
        return "metadata is not JSON the hash could cover"
    return None


def _verify_bundle_chain(rows: Iterable[tuple[int, dict[str, Any]]], developer_id: str,
                         stored: list[dict[str, Any]], tally: Tally | None = None) -> ChainReport:
    """One developer's chain from the bundle, through the ledger's own streaming verifier."""
    sizes = {c["checkpoint"].size for c in stored}
    hashes_at: dict[int, str] = {}  # the entry hash at each checkpoint's size, for headHash

    def checked() -> Iterator[tuple[int, str, str]]:
        for number, row in rows:
            problem = _entry_problem(row, developer_id)
            if problem is not None:
                raise ExportInvalid(_AUDIT_FILE, f"line {number} (seq {row.get('seq')}): {problem}")
            if row["seq"] in sizes:
                hashes_at[row["seq"]] = row["hash"]
            if tally is not None:
                tally.advance()
            yield row["seq"], row["preimage"], row["hash"]

    try:
        report = verify_rows(checked(), developer_id=developer_id,
                             checkpoints=[c["checkpoint"] for c in stored])
    except ChainBroken as exc:
        raise _rechained(exc, f"{_AUDIT_FILE}, developer {developer_id}") from None
    for c in stored:  # the signed roots matched; the unsigned head columns must agree with them
        if c["checkpoint"].size and c["headHash"] != hashes_at.get(c["checkpoint"].size):
            raise ExportInvalid(_CHECKPOINT_FILE, f"{c['where']}: headHash is not entry "
                                                  f"{c['checkpoint'].size}'s hash")
    return report


def _verify_chains(directory: Path, manifest: Mapping[str, Any],
                   key: tuple[str, Ed25519PublicKey], tally: Tally | None = None) -> list[ChainReport]:
    stored = _bundle_checkpoints(directory, key)
    declared = manifest.get("chains")
    if not isinstance(declared, list) or not all(isinstance(c, dict) for c in declared):
        raise ExportInvalid(MANIFEST, "has no chains list")
    reports: dict[str, ChainReport] = {}
    grouped = itertools.groupby(_jsonl(directory, _AUDIT_FILE), key=lambda item: item[1].get("developerId"))
    for developer_id, rows in grouped:
        if not isinstance(developer_id, str):
            raise ExportInvalid(_AUDIT_FILE, "an entry has no developerId")
        if developer_id in reports:
            raise ExportInvalid(_AUDIT_FILE, f"developer {developer_id}'s entries are not together in seq "
                                             "order")
        reports[developer_id] = _verify_bundle_chain(rows, developer_id, stored.get(developer_id, []), tally)
    others = {c.get("developerId") for c in declared} | set(stored)
    for developer_id in sorted(d for d in others - set(reports) if isinstance(d, str)):
        reports[developer_id] = _verify_bundle_chain((), developer_id, stored.get(developer_id, []))
    expected = {c.get("developerId"): c for c in declared}
    for developer_id, report in reports.items():
        claim = expected.get(developer_id)
        actual = {"entries": report.entries, "headHash": report.head_hash, "rootHash": report.root_hash}
        if claim is None or {k: claim.get(k) for k in actual} != actual:
            raise ExportInvalid(MANIFEST, f"chain of developer {developer_id} is recorded as {claim}, "
                                          f"the entries give {actual}")
    return [reports[d] for d in sorted(reports)]


def _check_table(directory: Path, table: str, rows: Any, tally: Tally | None = None) -> None:
    """The CSV holds exactly the JSONL's rows, and both hold as many as the manifest says."""
    columns = TABLES[table]
    csv_name, jsonl_name = f"{table}.csv", f"{table}.jsonl"
    count = 0
    with open(directory / csv_name, encoding="utf-8", newline="") as handle:
        reader = csv.reader(handle)
        try:
            if next(reader, None) != list(columns):
                raise ExportInvalid(csv_name, f"header is not {','.join(columns)}")
            for item, cells in itertools.zip_longest(_jsonl(directory, jsonl_name), reader):
                if item is None or cells is None:
                    raise ExportInvalid(csv_name, f"has a different number of rows than {jsonl_name}")
                count += 1
                if tally is not None:
                    tally.advance()
                if cells != [csv_cell(item[1].get(c)) for c in columns]:
                    raise ExportInvalid(csv_name, f"row {count} differs from line {count} of {jsonl_name}")
        except csv.Error as exc:
            raise ExportInvalid(csv_name, f"is not valid CSV ({exc})") from None
        except UnicodeDecodeError:
            raise ExportInvalid(csv_name, "is not UTF-8 text") from None
    if count != rows:
        raise ExportInvalid(jsonl_name, f"holds {count} rows, {MANIFEST} says {rows}")


def _check_key_files(directory: Path, manifest: Mapping[str, Any]) -> None:
    try:
        text = (directory / CHECKPOINT_KEY).read_text(encoding="utf-8")
    except UnicodeDecodeError:
        text = ""
    if text.strip() != str(manifest.get("checkpointKey")).strip():
        raise ExportInvalid(CHECKPOINT_KEY, f"is not the checkpointKey of {MANIFEST}")
    try:
        jwks = json.loads((directory / JWKS).read_text(encoding="utf-8"))
    except ValueError:  # UnicodeDecodeError included
        jwks = None
    if not isinstance(jwks, dict) or not isinstance(jwks.get("keys"), list):
        raise ExportInvalid(JWKS, "is not a JWKS (an object with a keys list)")
    for jwk in jwks["keys"]:
        if not isinstance(jwk, dict) or any(k in jwk for k in ("d", "p", "q", "dp", "dq", "qi")):
            raise ExportInvalid(JWKS, "holds something other than public keys")


def verify_bundle(path: str | os.PathLike[str], *, verifier_key: str | None = None,
                  progress: Progress | None = None) -> dict[str, Any]:
    """Check an export bundle offline (or a hosted export file); returns a summary or raises.

    Raises :class:`ExportInvalid` naming the file for a manifest, signature
    or file problem, :class:`~grantex_local.errors.ChainBroken` (seq, reason)
    for an audit chain that does not verify, and CheckpointInvalid for a
    ``verifier_key`` that is not a verifier key. Without ``verifier_key`` the
    bundle's own key is used and the summary says so (``keySource``).

    ``progress`` (a bundle directory only) is told the rows checked: each audit entry once by the
    chain walk, then every table's rows, the audit entries again among them, CSV against JSONL
    (:func:`verification_rows` of the manifest is the total).
    """
    directory = Path(path)
    if directory.is_file() and directory.name == MANIFEST:
        directory = directory.parent
    if directory.is_file():
        if _is_evidence_pack(directory):
            return verify_evidence_pack(directory, verifier_key=verifier_key)
        return verify_hosted_export(directory)
    if not directory.is_dir():
        raise ExportInvalid(str(directory), "does not exist")
    try:
        return _verify_directory(directory, verifier_key, progress)
    except OSError as exc:
        name = Path(exc.filename).name if exc.filename else str(directory)
        raise ExportInvalid(name, f"cannot be read ({exc.strerror or exc})") from None


def verification_rows(manifest: Mapping[str, Any]) -> int | None:
    """The rows :func:`verify_bundle` checks in a bundle with this (signed) manifest, for a
    progress total: the audit entries twice (chain walk, then CSV against JSONL) and every other
    table's rows once. None when the manifest does not say."""
    files = manifest.get("files")
    rows: dict[str, int] = {}
    for table in TABLES:
        entry = files.get(f"{table}.jsonl") if isinstance(files, dict) else None
        count = entry.get("rows") if isinstance(entry, dict) else None
        if not isinstance(count, int) or isinstance(count, bool) or count < 0:
            return None
        rows[table] = count
    return sum(rows.values()) + rows[AUDIT_TABLE]


def _verify_directory(directory: Path, verifier_key: str | None,
                      progress: Progress | None = None) -> dict[str, Any]:
    manifest, source = _check_signature(directory, verifier_key)
    _check_files(directory, manifest)
    _check_key_files(directory, manifest)
    key = checkpoints.parse_verifier_key(manifest["checkpointKey"])
    tally = Tally(progress, verification_rows(manifest))
    reports = _verify_chains(directory, manifest, key, tally)
    tally.reach(sum(r.entries for r in reports))
    for table in TABLES:
        _check_table(directory, table, manifest["files"][f"{table}.jsonl"].get("rows"), tally)
    tally.finish()
    summary: dict[str, Any] = {
        "valid": True, "format": FORMAT, "path": str(directory), "ledgerId": manifest.get("ledgerId"),
        "issuer": manifest.get("issuer"), "createdAt": manifest.get("createdAt"), "keySource": source,
        "checkpointKey": manifest["checkpointKey"], "files": bundle_file_count(manifest),
        "rows": {t: manifest["files"][f"{t}.jsonl"].get("rows") for t in TABLES},
        "entries": sum(r.entries for r in reports), "chains": [r.to_dict() for r in reports],
    }
    if source == "bundle":
        summary["warning"] = KEY_FROM_BUNDLE_WARNING
    return summary


# ── the hosted service's audit export ────────────────────────────────────────


def _hosted_preimage(name: str, position: int, entry: Any) -> tuple[str, str, str, Any]:
    """(developer id, entry id, preimage, stored hash) of one hosted entry, rebuilt byte for byte."""
    if not isinstance(entry, dict):
        raise ExportInvalid(name, f"entry {position} is not an object")
    entry_id = entry.get("entryId", entry.get("id"))
    fields = {"id": entry_id, **{k: entry.get(k) for k in (
        "agentId", "agentDid", "grantId", "principalId", "developerId", "action", "timestamp",
        "prevHash", "status")}}
    developer_id = fields["developerId"]
    # developerId is one of the _TEXT_FIELDS; naming it again lets the type checker see it is a str.
    if not isinstance(developer_id, str) or not all(isinstance(fields[k], str) for k in _TEXT_FIELDS):
        raise ExportInvalid(name, f"entry {position}: {', '.join(_TEXT_FIELDS)} must be strings")
    if not isinstance(entry.get("hash"), str):
        raise ExportInvalid(name, f"entry {position} ({entry_id}) has no hash")
    try:
        text = preimage_text(fields, entry.get("metadata", {}))
    except InvalidInput as exc:
        raise ExportInvalid(name, f"entry {position} ({entry_id}): {exc.message}") from None
    return developer_id, str(entry_id), text, entry["hash"]


def verify_hosted_export(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Check the chains of a hosted-service audit export ``{generatedAt, total, entries}``.

    Entries are oldest first; each developer's entries form one chain whose
    seq is the entry's position in it. The hosted ids are not monotonic, so
    id order is not checked.
    """
    file = Path(path)
    name = file.name
    try:
        data = json.loads(file.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError):
        raise ExportInvalid(name, "is not a JSON file") from None
    if not isinstance(data, dict) or not isinstance(data.get("entries"), list):
        raise ExportInvalid(name, "is not an audit export ({generatedAt, total, entries: [...]})")
    entries = data["entries"]
    total = data.get("total")
    if isinstance(total, bool) or not isinstance(total, int) or total != len(entries):
        raise ExportInvalid(name, f"total is {total!r} but the file holds {len(entries)} entries")
    chains: dict[str, list[tuple[int, str, str]]] = {}
    ids: dict[str, list[str]] = {}
    for position, entry in enumerate(entries, 1):
        developer_id, entry_id, text, digest = _hosted_preimage(name, position, entry)
        rows = chains.setdefault(developer_id, [])
        rows.append((len(rows) + 1, text, digest))
        ids.setdefault(developer_id, []).append(entry_id)
    reports = []
    for developer_id, rows in chains.items():
        try:
            reports.append(verify_rows(rows, developer_id=developer_id, ordered_ids=False))
        except ChainBroken as exc:
            at = ids[developer_id][exc.seq - 1] if 0 < exc.seq <= len(rows) else "the end"
            raise _rechained(exc, f"{name}, developer {developer_id}, entry {at}") from None
    return {"valid": True, "format": "hosted", "path": str(file), "generatedAt": data.get("generatedAt"),
            "keySource": None, "entries": len(entries), "chains": [r.to_dict() for r in reports],
            "warning": HOSTED_WARNING}


# ── evidence packs (``/v1/compliance/evidence-pack``, built by ``compliance``) ─────────

PACK_FORMAT = "evidence-pack"
PACK_SCHEMA_VERSION = "1.0"
PACK_SIGNED_OVER = ("grantex_local.audit.hashing.canonical_json of the pack without its signature "
                    "member (sorted keys, no whitespace, JavaScript scalars), as UTF-8")
"""What ``signature.signedOver`` says: the one serialisation both signing and checking use."""
_PACK_LISTS = ("grants", "auditEntries", "policies")


def pack_signed_bytes(pack: Mapping[str, Any]) -> bytes:
    """The bytes an evidence pack's signature covers (see :data:`PACK_SIGNED_OVER`).

    Canonical JSON rather than the bytes on the wire: the pack travels as an HTTP
    body the SDK parses and re-serialises, and only a canonical form survives that.
    """
    return canonical_json({k: v for k, v in pack.items() if k != "signature"}).encode("utf-8")


def _is_evidence_pack(file: Path) -> bool:
    """Whether a file looks like an evidence pack (``meta.schemaVersion`` and ``signature``);
    anything else (including unreadable files) goes to the hosted-export check, which names it."""
    try:
        data = json.loads(file.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError):
        return False
    return (isinstance(data, dict) and isinstance(data.get("meta"), dict)
            and "schemaVersion" in data["meta"] and "signature" in data)


def _check_pack_signature(name: str, pack: Mapping[str, Any], verifier_key: str | None) -> tuple[str, str]:
    """(where the key came from, the key text), once the pack's signature checks."""
    sig = pack.get("signature")
    if not isinstance(sig, dict) or sig.get("algorithm") != "Ed25519":
        raise ExportInvalid(name, "signature is not an Ed25519 signature object")
    source, key_text, key_name, public = _verifying_key(verifier_key, sig.get("checkpointKey"), name,
                                                        "signature.checkpointKey")
    if sig.get("keyName") != key_name:
        raise ExportInvalid(name, f"is signed by key {sig.get('keyName')!r}, not {key_name!r}")
    blob = sig.get("value")
    try:
        raw = base64.b64decode(blob if isinstance(blob, str) else "", validate=True)
    except ValueError:
        raw = b""
    if not raw or base64.b64encode(raw).decode() != blob:
        raise ExportInvalid(name, "signature.value is not canonical base64")
    try:
        public.verify(raw, pack_signed_bytes(pack))
    except (InvalidSignature, InvalidInput):
        raise ExportInvalid(name, f"does not match its signature under key {key_name!r} (the pack or "
                                  "its signature was altered, or it was signed by another key)") from None
    if str(sig.get("checkpointKey", "")).strip() != key_text.strip():
        raise ExportInvalid(name, "signature.checkpointKey is not the key that signed the pack")
    return source, key_text


def _pack_chain(name: str, entries: list[Any], developer_id: str) -> tuple[ChainReport, bool]:
    """The window's entries through the ledger's verifier: (report, whether it starts at seq 1).

    A window that does not start at the chain's first entry is checked as a
    continuation of a head the pack cannot prove (its first entry's prevHash):
    every hash is recomputed from the stored bytes and every link inside the
    window is checked, which is all a window can show.
    """
    for position, row in enumerate(entries, 1):
        if not isinstance(row, dict):
            raise ExportInvalid(name, f"auditEntries[{position}] is not an object")
        problem = _entry_problem(row, developer_id)
        if problem is not None:
            raise ExportInvalid(name, f"auditEntries[{position}] ({row.get('entryId')}): {problem}")
    first = entries[0] if entries else None
    at_start = first is None or first["seq"] == 1
    after = None
    if first is not None and not at_start:
        if not isinstance(first.get("prevHash"), str):
            raise ExportInvalid(name, f"auditEntries[1] ({first.get('entryId')}) is seq {first['seq']} "
                                      "but links to nothing")
        after = (first["seq"] - 1, first["prevHash"], "", "")
    try:
        report = verify_rows([(r["seq"], r["preimage"], r["hash"]) for r in entries],
                             developer_id=developer_id, after=after, with_root=False)
    except ChainBroken as exc:
        raise _rechained(exc, f"{name}, auditEntries") from None
    return report, at_start


def _pack_counts(name: str, pack: Mapping[str, Any]) -> None:
    """The summary's counts (and chainIntegrity's verdict) agree with the lists the pack holds."""
    summary = pack.get("summary")
    if not isinstance(summary, dict):
        raise ExportInvalid(name, "has no summary object")

    def count(rows: list[Any], key: str, value: str) -> int:
        return sum(1 for r in rows if isinstance(r, dict) and r.get(key) == value)

    grants, entries = pack["grants"], pack["auditEntries"]
    expected = {
        "grants": {"total": len(grants), **{s: count(grants, "status", s)
                                            for s in ("active", "revoked", "expired")}},
        "auditEntries": {"total": len(entries), **{s: count(entries, "status", s)
                                                   for s in ("success", "failure", "blocked")}},
        "policies": {"total": len(pack["policies"])},
    }
    for section, counts in expected.items():
        claimed = summary.get(section)
        if not isinstance(claimed, dict) or {k: claimed.get(k) for k in counts} != counts:
            raise ExportInvalid(name, f"summary.{section} is {claimed}, the pack's {section} give {counts}")
    integrity = pack.get("chainIntegrity")
    if not isinstance(integrity, dict) or integrity.get("valid") is not True:
        raise ExportInvalid(name, f"chainIntegrity says the ledger's chain did not verify when the pack "
                                  f"was made: {integrity}")


def verify_evidence_pack(path: str | os.PathLike[str], *, verifier_key: str | None = None) -> dict[str, Any]:
    """Check an evidence pack file offline; returns a summary or raises.

    The signature first (with ``verifier_key`` when given, else the pack's own
    key, which proves only self-consistency: the summary says so); then every
    audit entry against its stored preimage and the links between them; then
    the summary's counts against the lists. Raises :class:`ExportInvalid`
    naming the part, or :class:`~grantex_local.errors.ChainBroken`.
    """
    file = Path(path)
    name = file.name
    try:
        pack = json.loads(file.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError):
        raise ExportInvalid(name, "is not a JSON file") from None
    if not isinstance(pack, dict) or not isinstance(pack.get("meta"), dict):
        raise ExportInvalid(name, "is not an evidence pack (no meta object)")
    source, key_text = _check_pack_signature(name, pack, verifier_key)
    meta = pack["meta"]
    if meta.get("schemaVersion") != PACK_SCHEMA_VERSION:
        raise ExportInvalid(name, f"meta.schemaVersion is {meta.get('schemaVersion')!r}, "
                                  f"not {PACK_SCHEMA_VERSION!r}")
    developer_id = meta.get("developerId")
    if not isinstance(developer_id, str):
        raise ExportInvalid(name, "meta.developerId is missing")
    for key in _PACK_LISTS:
        if not isinstance(pack.get(key), list):
            raise ExportInvalid(name, f"{key} is not a list")
    for position, grant in enumerate(pack["grants"], 1):
        if not isinstance(grant, dict) or grant.get("developerId") != developer_id:
            raise ExportInvalid(name, f"grants[{position}] is not a grant of developer {developer_id}")
    report, at_start = _pack_chain(name, pack["auditEntries"], developer_id)
    _pack_counts(name, pack)
    out: dict[str, Any] = {
        "valid": True, "format": PACK_FORMAT, "path": str(file), "ledgerId": meta.get("ledgerId"),
        "issuer": meta.get("issuer"), "generatedAt": meta.get("generatedAt"),
        "framework": meta.get("framework"), "since": meta.get("since"), "until": meta.get("until"),
        "keySource": source, "checkpointKey": key_text, "entries": report.entries,
        "grants": len(pack["grants"]), "policies": len(pack["policies"]),
        "startsAtChainStart": at_start, "chains": [report.to_dict()],
    }
    if source == "bundle":
        out["warning"] = KEY_FROM_BUNDLE_WARNING
    return out


__all__ = [
    "BUNDLE_FILES", "FORMAT", "TABLES", "VERSION", "ExportInvalid", "export_bundle",
    "verify_bundle", "verify_evidence_pack", "verify_hosted_export",
]


# ── a bundle as a read-only ledger (the TUI's auditor mode) ──────────────────


def bundle_to_ledger(bundle: str | os.PathLike[str], target: str | os.PathLike[str], *,
                     verifier_key: str | None = None) -> dict[str, Any]:
    """Verify a bundle, then load it into a new ledger file at ``target`` for browsing.

    The copy holds no private keys (the bundle has none): the key columns that
    require bytes get empty ones, so anything that would sign fails. The file
    is left without write permission, so :class:`Ledger` opens it read-only
    and every write is refused. Returns the verification summary.
    """
    from . import ledger as ledger_module
    from .audit import merkle
    from .audit.trail import STORED_LEVEL
    from .migrations import SCHEMA_VERSION, apply_migrations

    directory = Path(bundle)
    if not directory.is_dir():
        raise ExportInvalid(str(directory), "a bundle directory is needed to browse (not a single file)")
    summary = verify_bundle(directory, verifier_key=verifier_key)
    out = Path(target)
    if out.exists():
        raise InvalidInput(f"{out} already exists")
    manifest = json.loads((directory / MANIFEST).read_text())
    conn = sqlite3.connect(out, isolation_level=None)
    try:
        conn.execute("BEGIN IMMEDIATE")
        apply_migrations(conn, 0)
        conn.execute(f"PRAGMA application_id = {ledger_module.APPLICATION_ID}")
        settings = dict(ledger_module.SETTINGS_DEFAULTS, issuer=manifest.get("issuer") or
                        ledger_module.DEFAULT_ISSUER, ledger_id=manifest.get("ledgerId") or "",
                        created_at=manifest.get("createdAt") or "", export_of=str(directory.resolve()))
        conn.executemany("INSERT OR REPLACE INTO settings (key, value) VALUES (?, ?)", settings.items())
        _load_rows(conn, directory, manifest)
        for dev in [r[0] for r in conn.execute("SELECT DISTINCT developer_id FROM audit_entries")]:
            _load_merkle(conn, dev, merkle, STORED_LEVEL)
        conn.execute("COMMIT")
        assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    except BaseException:
        conn.close()
        out.unlink(missing_ok=True)
        raise
    conn.close()
    out.chmod(0o400)
    return summary


def _load_rows(conn: sqlite3.Connection, directory: Path, manifest: Mapping[str, Any]) -> None:
    def rows(table: str) -> Iterator[dict[str, Any]]:
        for _, row in _jsonl(directory, f"{table}.jsonl"):
            yield row

    dumps = json.dumps
    conn.executemany(
        "INSERT INTO developers (id, name, sandbox, is_default, created_at) VALUES (?, ?, ?, ?, ?)",
        ((r["id"], r["name"], int(r["sandbox"]), int(r["isDefault"]), r["createdAt"])
         for r in rows("developers")))
    for r in rows("agents"):
        conn.execute(
            "INSERT INTO agents (id, developer_id, did, name, description, scopes, redirect_uris, status, "
            "created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (r["id"], r["developerId"], r["did"], r["name"], r["description"] or "", dumps(r["scopes"]),
             dumps(r.get("redirectUris") or []), r["status"], r["createdAt"], r["updatedAt"]))
        if r.get("publicJwk") and r.get("keyThumbprint"):
            conn.execute("INSERT INTO agent_keys (agent_id, kid, public_jwk, encrypted, created_at) "
                         "VALUES (?, ?, ?, 0, ?)",
                         (r["id"], r["keyThumbprint"], dumps(r["publicJwk"]), r["updatedAt"]))
    for jwk in json.loads((directory / JWKS).read_text()).get("keys", []):
        conn.execute("INSERT INTO signing_keys (kid, alg, private_pem, encrypted, public_jwk, created_at) "
                     "VALUES (?, 'RS256', x'', 0, ?, ?)", (jwk["kid"], dumps(jwk), manifest.get("createdAt")))
    # Parents before children: grants come out in issue order, and a child is issued after its parent.
    conn.executemany(
        "INSERT INTO grants (id, developer_id, agent_id, principal_id, scopes, audience, parent_grant_id, "
        "delegation_depth, issued_at, expires_at, revoked_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        ((r["id"], r["developerId"], r["agentId"], r["principalId"], dumps(r["scopes"]), r.get("audience"),
          r.get("parentGrantId"), r["delegationDepth"], r["issuedAt"], r["expiresAt"], r.get("revokedAt"))
         for r in rows("grants")))
    conn.executemany(
        "INSERT INTO tokens (jti, grant_id, kid, issued_at, expires_at, revoked_at, refresh_used_at) "
        "VALUES (?, ?, ?, ?, ?, ?, ?)",
        ((r["jti"], r["grantId"], r["kid"], r["issuedAt"], r["expiresAt"], r.get("revokedAt"),
          r.get("refreshUsedAt")) for r in rows("tokens")))
    conn.executemany(
        "INSERT INTO auth_requests (id, developer_id, agent_id, principal_id, scopes, expires_in, status, "
        "created_at, expires_at, decided_at, decided_by, policy_id, grant_id, redirect_uri, state, audience) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        ((r["id"], r["developerId"], r["agentId"], r["principalId"], dumps(r["scopes"]), r["expiresIn"],
          r["status"], r["createdAt"], r["expiresAt"], r.get("decidedAt"), r.get("decidedBy"),
          r.get("policyId"), r.get("grantId"), r.get("redirectUri"), r.get("state"), r.get("audience"))
         for r in rows("auth_requests")))
    conn.executemany(
        "INSERT INTO policies (id, developer_id, name, effect, priority, agent_id, principal_id, scopes, "
        "time_window, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        ((r["id"], r["developerId"], r["name"], r["effect"], r["priority"], r.get("agentId"),
          r.get("principalId"), dumps(r["scopes"]) if r.get("scopes") is not None else None,
          dumps(r["timeWindow"]) if r.get("timeWindow") is not None else None, r["createdAt"],
          r["updatedAt"]) for r in rows("policies")))
    conn.executemany("INSERT INTO audit_entries (seq, preimage, hash) VALUES (?, ?, ?)",
                     ((r["seq"], r["preimage"], r["hash"]) for r in rows(AUDIT_TABLE)))
    conn.executemany(
        "INSERT INTO audit_checkpoints (id, developer_id, size, root_hash, head_entry_id, head_hash, "
        "head_timestamp, timestamp, note) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        ((r["checkpointId"], r["developerId"], r["entryCount"], r["rootHash"], r.get("headEntryId"),
          r.get("headHash"), r.get("headTimestamp"), r["timestamp"], r["signedCheckpoint"])
         for r in rows(CHECKPOINT_TABLE)))
    name, public = checkpoints.parse_verifier_key(manifest["checkpointKey"])
    conn.execute("INSERT INTO checkpoint_keys (name, public_key, private_pem, encrypted, created_at) "
                 "VALUES (?, ?, x'', 0, ?)", (name, note.public_key_bytes(public), manifest.get("createdAt")))


def _load_merkle(conn: sqlite3.Connection, developer_id: str, merkle: Any, stored_level: int) -> None:
    """Rebuild the stored Merkle nodes of one chain, holding only the tree's right edge in memory."""
    pending: dict[tuple[int, int], bytes] = {}
    cursor = conn.execute("SELECT seq, hash FROM audit_entries WHERE developer_id = ? ORDER BY seq",
                          (developer_id,))
    batch: list[tuple[str, int, int, bytes]] = []
    for seq, digest in cursor.fetchall():
        for level, index, h in merkle.new_nodes(seq - 1, merkle.leaf_hash(digest),
                                                lambda lv, ix: pending.pop((lv, ix))):
            if index % 2 == 0:
                pending[(level, index)] = h  # a left sibling, needed once later
            if level >= stored_level:
                batch.append((developer_id, level, index, h))
    conn.executemany("INSERT INTO audit_merkle (developer_id, level, idx, hash) VALUES (?, ?, ?, ?)", batch)
