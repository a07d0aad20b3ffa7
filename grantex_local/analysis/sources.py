"""Reading the two native sources, a ledger file and an export bundle, into tidy frames.

Each reader returns ``(frames, settings, integrity, as_of)`` for :func:`~.load.load`. The
integrity record comes from the library's own verifiers, called here and nowhere else.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import re
import sqlite3
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pandas as pd

from ..audit import chain as audit_chain
from ..audit import checkpoints as audit_checkpoints
from ..audit.note import CheckpointInvalid
from ..audit.trail import count_entries
from ..errors import ChainBroken
from ..founding import Ledger
from ..ledger import DEFAULT_ISSUER, SETTINGS_DEFAULTS
from ..progress import Progress, Tally
from .frames import (
    AUDIT_SQL,
    CHUNK_ROWS,
    Integrity,
    build_audit,
    chunks_from_preimages,
    chunks_from_sql,
    read_chunks,
    tidy,
    to_utc,
)

Frames = dict[str, pd.DataFrame]
Loaded = tuple[Frames, dict[str, Any], Integrity, pd.Timestamp | None]

# ── a ledger file ────────────────────────────────────────────────────────────

LEDGER_SQL: dict[str, str] = {
    "developers": (
        "SELECT id AS developer_id, name, sandbox, is_default, created_at FROM developers "
        "ORDER BY created_at, id"
    ),
    "agents": (
        "SELECT id AS agent_id, did, developer_id, name, description, scopes, status, redirect_uris, "
        "created_at, updated_at FROM agents ORDER BY created_at, id"
    ),
    "grants": (
        "SELECT g.id AS grant_id, g.developer_id, g.agent_id, a.did AS agent_did, g.principal_id, "
        "g.scopes, g.issued_at, g.expires_at, g.revoked_at, g.parent_grant_id, g.delegation_depth, "
        "g.audience FROM grants g LEFT JOIN agents a ON a.id = g.agent_id ORDER BY g.issued_at, g.id"
    ),
    "tokens": (
        "SELECT jti, grant_id, kid, issued_at, expires_at, revoked_at, refresh_used_at FROM tokens "
        "ORDER BY issued_at, jti"
    ),
    "auth_requests": (
        "SELECT id AS auth_request_id, developer_id, agent_id, principal_id, scopes, expires_in, "
        "status, created_at, expires_at, decided_at, decided_by, policy_id, grant_id, "
        "redirect_uri, state, audience FROM auth_requests ORDER BY created_at, id"
    ),
    "policies": (
        "SELECT id AS policy_id, developer_id, name, effect, priority, agent_id, principal_id, "
        "scopes, time_window, created_at, updated_at FROM policies ORDER BY developer_id, created_at, id"
    ),
    "checkpoints": (
        "SELECT id AS checkpoint_id, developer_id, size AS entry_count, root_hash, head_entry_id, "
        "head_hash, head_timestamp, timestamp, note AS signed_checkpoint FROM audit_checkpoints "
        "ORDER BY developer_id, size, timestamp, id"
    ),
}
JSON_TEXT = {
    "agents": ("scopes", "redirect_uris"),
    "grants": ("scopes",),
    "auth_requests": ("scopes",),
    "policies": ("scopes", "time_window"),
}
"""Columns the ledger stores as JSON text."""


def readonly_connection(path: str) -> sqlite3.Connection:
    """A connection that cannot write, whatever the file's permissions."""
    uri = Path(path).resolve().as_uri() + "?mode=ro"
    try:
        return sqlite3.connect(uri, uri=True, isolation_level=None)
    except sqlite3.Error as exc:
        from ..ledger import translate

        raise translate(exc, path) from None


def _lenient_text(value: bytes) -> str:
    """Text the driver could not decode, with the bytes that are not UTF-8 kept as lone surrogates
    (``\\udcff``), which the frames then show escaped: one bad row must not hide the file."""
    return value.decode("utf-8", "surrogateescape")


def _read_table(sql: str, conn: sqlite3.Connection) -> pd.DataFrame:
    try:
        return pd.read_sql_query(sql, conn, dtype=object)
    except (sqlite3.OperationalError, pd.errors.DatabaseError):
        if conn.text_factory is _lenient_text:
            raise
        conn.text_factory = _lenient_text  # a row written behind the ledger's back
        return pd.read_sql_query(sql, conn, dtype=object)


def ledger_frames(conn: sqlite3.Connection) -> Frames:
    """Every small table of a ledger as a tidy frame (the audit table is :func:`ledger_audit`)."""
    frames: Frames = {}
    for table, sql in LEDGER_SQL.items():
        raw = _read_table(sql, conn)
        for name in JSON_TEXT.get(table, ()):
            raw[name] = [json.loads(v) if isinstance(v, str) else None for v in raw[name]]
        frames[table] = tidy({name: raw[name].tolist() for name in raw.columns}, table)
    return frames


def ledger_audit(conn: sqlite3.Connection, progress: Callable[[int], None] | None = None) -> pd.DataFrame:
    """The audit table in one streamed pass: the columns SQLite reads out of the stored preimages.
    ``progress`` is told the rows read so far, a chunk at a time."""
    try:
        cursor = conn.execute(AUDIT_SQL.format(extra="", where=""))
        with contextlib.closing(cursor):
            return build_audit((chunks_from_sql(rows) for rows in read_chunks(cursor, CHUNK_ROWS)), progress)
    except sqlite3.OperationalError:  # stored bytes that are not JSON or not UTF-8: parse what can be
        conn.text_factory = _lenient_text
        cursor = conn.execute("SELECT seq, hash, preimage FROM audit_entries ORDER BY developer_id, seq")
        with contextlib.closing(cursor):
            return build_audit((chunks_from_preimages(rows) for rows in read_chunks(cursor, CHUNK_ROWS)),
                               progress)


def ledger_settings(conn: sqlite3.Connection) -> dict[str, Any]:
    stored = dict(SETTINGS_DEFAULTS)
    stored.update({k: v for k, v in conn.execute("SELECT key, value FROM settings")})
    return typed_settings(stored)


def typed_settings(stored: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = dict(stored)
    for key in ("max_delegation_depth", "max_expires_in"):
        with contextlib.suppress(TypeError, ValueError):
            out[key] = int(stored[key])
    return out


def verify_ledger(ledger: Ledger, verifier_key: str | None, tally: Tally | None = None) -> Integrity:
    """Each chain through ``verify_chain`` against its latest signed checkpoint.

    Every stored checkpoint's signature and origin are checked with ``verify_against``; the
    Merkle root of the latest one is recomputed by the chain walk (each checkpoint was itself
    checked against the one before it when it was written).
    """
    chains: list[dict[str, Any]] = []
    problems: list[dict[str, Any]] = []
    checked = 0
    developers = [
        r[0]
        for r in ledger.query(
            "SELECT id FROM developers UNION SELECT developer_id FROM audit_entries ORDER BY 1"
        )
    ]
    for developer_id in developers:
        notes = [
            r[0]
            for r in ledger.query(
                "SELECT note FROM audit_checkpoints WHERE developer_id = ? ORDER BY size, timestamp",
                (developer_id,),
            )
        ]
        latest = None
        try:
            for text in notes:
                parsed = audit_checkpoints.verify_against(ledger, developer_id, text, verifier_key)
                checked += 1
                if latest is None or parsed.size >= latest.size:
                    latest = parsed
        except CheckpointInvalid as exc:
            problems.append(
                problem("CheckpointInvalid", developer_id, None, "checkpoint_invalid", exc.message)
            )
            latest = None
        watched = tally.after(tally.done) if tally is not None and tally.progress is not None else None
        try:
            chains.append(
                audit_chain.verify_chain(ledger, developer_id, checkpoint=latest, progress=watched).to_dict()
            )
        except ChainBroken as exc:
            problems.append(problem("ChainBroken", developer_id, exc.seq, exc.reason, exc.message))
    return Integrity(
        valid=not problems,
        method="audit.chain.verify_chain",
        chains=tuple(chains),
        errors=tuple(problems),
        key_source="given" if verifier_key else "ledger",
        checkpoints_checked=checked,
    )


def problem(
    kind: str, developer_id: str | None, seq: int | None, reason: str, message: str, **extra: Any
) -> dict[str, Any]:
    return {
        "kind": kind,
        "developerId": developer_id,
        "seq": seq,
        "reason": reason,
        "message": message,
        **extra,
    }


def load_ledger(path: Path, verifier_key: str | None, progress: Progress | None = None) -> Loaded:
    """Verify with the library (the CLI's verifier), then read every table from a read-only connection.

    ``progress`` is told the audit entries verified, then those read: twice the entries in all.
    """
    with Ledger(path, create=False) as ledger:
        entries = count_entries(ledger) if progress else 0
        tally = Tally(progress, 2 * entries)
        integrity = verify_ledger(ledger, verifier_key, tally)
        conn = readonly_connection(ledger.path)
        try:
            conn.execute("BEGIN")  # one snapshot for every table
            frames = ledger_frames(conn)
            frames["audit"] = ledger_audit(conn, tally.after(entries) if progress else None)
            settings = ledger_settings(conn)
            conn.execute("COMMIT")
        finally:
            conn.close()
    tally.finish()
    integrity = _unverified_tail(integrity, frames["audit"])
    return frames, settings, integrity, None


def _unverified_tail(integrity: Integrity, audit: pd.DataFrame) -> Integrity:
    """Entries appended between verification and reading were never verified: say so."""
    verified = {c["developerId"]: c["entries"] for c in integrity.chains}
    extra = []
    if len(audit):
        for developer_id, last in audit.groupby("developer_id", sort=True)["seq"].max().items():
            if developer_id in verified and int(last) > verified[developer_id]:
                first = verified[developer_id] + 1
                extra.append(
                    problem(
                        "Unverified",
                        str(developer_id),
                        first,
                        "appended_after_verification",
                        f"entries {first}..{int(last)} were appended after the chain was "
                        "verified; load again to verify them",
                    )
                )
    if not extra:
        return integrity
    return Integrity(
        valid=False,
        method=integrity.method,
        chains=integrity.chains,
        errors=(*integrity.errors, *extra),
        key_source=integrity.key_source,
        warning=integrity.warning,
        checkpoints_checked=integrity.checkpoints_checked,
    )


# ── an export bundle ─────────────────────────────────────────────────────────

BUNDLE_COLUMNS: dict[str, dict[str, str]] = {
    "developers": {
        "id": "developer_id",
        "name": "name",
        "sandbox": "sandbox",
        "isDefault": "is_default",
        "createdAt": "created_at",
    },
    "agents": {
        "id": "agent_id",
        "did": "did",
        "developerId": "developer_id",
        "name": "name",
        "description": "description",
        "scopes": "scopes",
        "status": "status",
        "redirectUris": "redirect_uris",
        "createdAt": "created_at",
        "updatedAt": "updated_at",
    },
    "grants": {
        "id": "grant_id",
        "developerId": "developer_id",
        "agentId": "agent_id",
        "agentDid": "agent_did",
        "principalId": "principal_id",
        "scopes": "scopes",
        "issuedAt": "issued_at",
        "expiresAt": "expires_at",
        "revokedAt": "revoked_at",
        "parentGrantId": "parent_grant_id",
        "delegationDepth": "delegation_depth",
        "audience": "audience",
    },
    "tokens": {
        "jti": "jti",
        "grantId": "grant_id",
        "kid": "kid",
        "issuedAt": "issued_at",
        "expiresAt": "expires_at",
        "revokedAt": "revoked_at",
        "refreshUsedAt": "refresh_used_at",
    },
    "auth_requests": {
        "id": "auth_request_id",
        "developerId": "developer_id",
        "agentId": "agent_id",
        "principalId": "principal_id",
        "scopes": "scopes",
        "expiresIn": "expires_in",
        "status": "status",
        "createdAt": "created_at",
        "expiresAt": "expires_at",
        "decidedAt": "decided_at",
        "decidedBy": "decided_by",
        "policyId": "policy_id",
        "grantId": "grant_id",
        "redirectUri": "redirect_uri",
        "state": "state",
        "audience": "audience",
    },
    "policies": {
        "id": "policy_id",
        "developerId": "developer_id",
        "name": "name",
        "effect": "effect",
        "priority": "priority",
        "agentId": "agent_id",
        "principalId": "principal_id",
        "scopes": "scopes",
        "timeWindow": "time_window",
        "createdAt": "created_at",
        "updatedAt": "updated_at",
    },
    "checkpoints": {
        "checkpointId": "checkpoint_id",
        "developerId": "developer_id",
        "entryCount": "entry_count",
        "rootHash": "root_hash",
        "headEntryId": "head_entry_id",
        "headHash": "head_hash",
        "headTimestamp": "head_timestamp",
        "timestamp": "timestamp",
        "signedCheckpoint": "signed_checkpoint",
    },
}
"""Bundle column (camelCase, as in ``export.TABLES``) → frame column, per table."""
AUDIT_BUNDLE = {
    "seq": "seq",
    "entryId": "entry_id",
    "developerId": "developer_id",
    "agentId": "agent_id",
    "agentDid": "agent_did",
    "grantId": "grant_id",
    "principalId": "principal_id",
    "action": "action",
    "status": "status",
    "timestamp": "timestamp",
    "hash": "hash",
    "prevHash": "prev_hash",
    "metadata": "metadata",
}


def jsonl_rows(path: Path) -> Iterator[dict[str, Any]]:
    """The objects of a JSON Lines file, streamed; a line that is not an object is skipped
    (the bundle verifier reports it)."""
    if not path.is_file():
        return
    with open(path, encoding="utf-8", errors="replace") as handle:
        for line in handle:
            with contextlib.suppress(ValueError):
                row = json.loads(line)
                if isinstance(row, dict):
                    yield row


def bundle_table(directory: Path, table: str) -> pd.DataFrame:
    names = BUNDLE_COLUMNS[table]
    source = "checkpoints" if table == "checkpoints" else table
    columns: dict[str, list[Any]] = {target: [] for target in names.values()}
    for row in jsonl_rows(directory / f"{source}.jsonl"):
        for key, target in names.items():
            columns[target].append(row.get(key))
    return tidy(columns, table)


def bundle_audit(directory: Path, progress: Callable[[int], None] | None = None) -> pd.DataFrame:
    """``audit_entries.jsonl`` in one streamed pass, a chunk of rows at a time (``progress`` is
    told the rows read)."""

    def chunks() -> Iterator[dict[str, list[Any]]]:
        rows = jsonl_rows(directory / "audit_entries.jsonl")
        while batch := list(itertools.islice(rows, CHUNK_ROWS)):
            columns = {target: [r.get(key) for r in batch] for key, target in AUDIT_BUNDLE.items()}
            columns["metadata"] = [m if m is not None else {} for m in columns["metadata"]]
            yield columns

    return build_audit(chunks(), progress)


def bundle_settings(directory: Path, audit: pd.DataFrame) -> dict[str, Any]:
    """Settings a bundle can tell: the issuer from its manifest, the rest from the
    ``grantex.settings.changed`` events in its log (defaults when never changed)."""
    manifest: dict[str, Any] = {}
    with contextlib.suppress(OSError, ValueError):
        manifest = json.loads((directory / "manifest.json").read_text(encoding="utf-8"))
    stored: dict[str, Any] = dict(
        SETTINGS_DEFAULTS,
        issuer=manifest.get("issuer") or DEFAULT_ISSUER,
        ledger_id=manifest.get("ledgerId"),
        export_created_at=manifest.get("createdAt"),
    )
    changes = audit.loc[audit["action"] == "grantex.settings.changed", "metadata"]
    for meta in changes:
        if isinstance(meta, dict) and isinstance(meta.get("key"), str):
            stored[meta["key"]] = meta.get("value")
    stored["settings_source"] = "manifest and grantex.settings.changed events"
    return typed_settings(stored)


def verify_bundle_integrity(
    directory: Path, verifier_key: str | None, progress: Progress | None = None
) -> Integrity:
    """``export.verify_bundle``; on a failure that names no seq, the chain is walked with the
    same ``verify_rows`` to find the first bad entry."""
    from ..export import ExportInvalid, verify_bundle

    try:
        summary = verify_bundle(directory, verifier_key=verifier_key, progress=progress)
    except ChainBroken as exc:
        developer = _developer_in(exc.message)
        found = problem("ChainBroken", developer, exc.seq, exc.reason, exc.message)
        return Integrity(
            False, "export.verify_bundle", errors=(found,), key_source="given" if verifier_key else "bundle"
        )
    except (ExportInvalid, CheckpointInvalid) as exc:
        file = getattr(exc, "file", None)
        seq_match = re.search(r"\(seq (\d+)\)", exc.message)
        found = problem(
            type(exc).__name__,
            None,
            int(seq_match.group(1)) if seq_match else None,
            "export_invalid" if file else "checkpoint_invalid",
            exc.message,
            file=file,
        )
        located = locate_break(directory)
        return Integrity(
            False,
            "export.verify_bundle",
            errors=(found, *located),
            key_source="given" if verifier_key else "bundle",
        )
    return Integrity(
        True,
        "export.verify_bundle",
        chains=tuple(summary.get("chains", ())),
        key_source=summary.get("keySource"),
        warning=summary.get("warning"),
        checkpoints_checked=sum(1 for _ in jsonl_rows(directory / "checkpoints.jsonl")),
    )


def _bundle_work(directory: Path) -> tuple[int, int]:
    """(rows the verifier checks, audit entries) as the manifest counts them, for a progress
    total only: (0, 0) when it cannot tell (the verifier reports what is wrong with it)."""
    from ..export import verification_rows

    with contextlib.suppress(OSError, ValueError, AttributeError, TypeError):
        manifest = json.loads((directory / "manifest.json").read_text(encoding="utf-8"))
        checked = verification_rows(manifest)
        if checked is not None:
            return checked, int(manifest["files"]["audit_entries.jsonl"]["rows"])
    return 0, 0


def _developer_in(message: str) -> str | None:
    match = re.search(r"developer (\S+?)\)", message)
    return match.group(1) if match else None


def locate_break(directory: Path) -> list[dict[str, Any]]:
    """The first broken entry of each chain in a bundle's audit file, by ``verify_rows``.

    Used only when the bundle check failed for another reason first (an altered file fails its
    SHA-256 before the chain is walked), so the auditor still learns which seq was touched.
    """
    found = []
    rows = jsonl_rows(directory / "audit_entries.jsonl")
    for developer_id, group in itertools.groupby(rows, key=lambda r: r.get("developerId")):
        triples = ((r.get("seq"), r.get("preimage"), r.get("hash")) for r in group)
        try:
            audit_chain.verify_rows(_well_typed(triples), developer_id=str(developer_id))
        except ChainBroken as exc:
            found.append(
                problem(
                    "ChainBroken",
                    developer_id if isinstance(developer_id, str) else None,
                    exc.seq,
                    exc.reason,
                    exc.message,
                )
            )
    return found


def _well_typed(rows: Iterator[tuple[Any, Any, Any]]) -> Iterator[tuple[int, str, str]]:
    for seq, text, digest in rows:
        yield (
            seq if isinstance(seq, int) else -1,
            text if isinstance(text, str) else "",
            digest if isinstance(digest, str) else "",
        )


def load_bundle(path: Path, verifier_key: str | None, progress: Progress | None = None) -> Loaded:
    """Verify with ``verify_bundle``, then read every file. ``progress`` is told the rows the
    verifier checked, then the audit entries read (the total from the manifest's row counts)."""
    directory = path.parent if path.is_file() else path
    checked, entries = _bundle_work(directory) if progress else (0, 0)
    tally = Tally(progress, checked + entries or None)
    integrity = verify_bundle_integrity(
        directory, verifier_key, (lambda done, _total: tally.reach(done)) if progress else None
    )
    tally.reach(checked)  # also when the verifier stopped early, at a problem
    frames = {table: bundle_table(directory, table) for table in BUNDLE_COLUMNS}
    frames["audit"] = bundle_audit(directory, tally.after(checked) if progress else None)
    tally.finish()
    settings = bundle_settings(directory, frames["audit"])
    created = settings.get("export_created_at")
    as_of = None
    with contextlib.suppress(ValueError, TypeError):
        as_of = to_utc(created) if created else None
    return frames, settings, integrity, as_of
