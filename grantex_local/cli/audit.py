"""``audit``: the hash-chained audit trail: query, append, verify, checkpoint and prove."""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING

import click

from .. import errors
from ..models import AuditEntry
from . import (
    CheckFailed,
    GrantexGroup,
    LibraryChoice,
    developer_of_agent,
    developer_option,
    developer_or_default,
    echo_fields,
    echo_json,
    echo_table,
    emit,
    failed_checks,
    failure_json,
    json_option,
    json_text,
    key_option,
    ledger_option,
    library,
    read_arg,
    with_ledger,
)

if TYPE_CHECKING:
    from ..audit.chain import ChainReport
    from ..audit.note import Checkpoint
    from ..founding import Ledger


def _flag_cell(entry: AuditEntry) -> str | None:
    return "! " + ",".join(entry.flags) if entry.flags else None


def _entry_fields(entry: AuditEntry) -> list[tuple[str, object]]:
    return [("entry", entry.entry_id), ("seq", entry.seq), ("developer", entry.developer_id),
            ("timestamp", entry.timestamp), ("action", entry.action), ("status", entry.status),
            ("flags", _flag_cell(entry)), ("agent", entry.agent_id), ("agent did", entry.agent_did),
            ("grant", entry.grant_id), ("principal", entry.principal_id), ("hash", entry.hash),
            ("prev hash", entry.prev_hash)]


OUTSIDE_CHECKPOINT_NOTE = (
    "note: the checkpoints checked are stored in this same file; only a checkpoint kept outside it "
    "('audit checkpoint --out FILE', then 'audit verify --against FILE') also catches a rewrite of the "
    "whole file")

FLAG_LEGEND = "! = logged under a grant that was already revoked or expired (recorded all the same)"
UNRENDERABLE_LEGEND = ("unrenderable = the stored entry holds text the ledger now refuses (a lone surrogate, "
                       "a non-character or bytes that are not UTF-8), shown escaped (e.g. \\ud800); "
                       "'audit verify' judges its stored bytes")


def _echo_flag_legend(entries: Iterable[AuditEntry]) -> None:
    """The legend of the flags shown, each explained only when it appears."""
    from ..audit.trail import UNRENDERABLE

    shown = {flag for entry in entries for flag in entry.flags}
    if shown - {UNRENDERABLE}:
        click.echo(FLAG_LEGEND)
    if UNRENDERABLE in shown:
        click.echo(UNRENDERABLE_LEGEND)


@click.group("audit", cls=GrantexGroup)
def audit_group() -> None:
    """The hash-chained audit trail: query, append, verify, checkpoint and prove."""


@audit_group.command("list")
@click.option("--developer", "developer_id", metavar="DEV_ID", default=None,
              help="Only this developer's chain (default: every developer in the file).")
@click.option("--agent", "agent_id", metavar="AGENT_ID", default=None, help="Only this agent's entries.")
@click.option("--grant", "grant_id", metavar="GRANT_ID", default=None, help="Only this grant's entries.")
@click.option("--principal", metavar="USER", default=None, help="Only entries for this principal.")
@click.option("--action", default=None, help="Only this action, e.g. grantex.grant.revoked.")
@click.option("--status", type=LibraryChoice(lambda: library("audit.trail").STATUSES), default=None,
              help="Only entries with this status.")
@click.option("--since", metavar="TIME", default=None,
              help="Only entries at or after TIME (ISO-8601, e.g. 2026-02-01T12:00:00Z).")
@click.option("--until", metavar="TIME", default=None, help="Only entries before TIME (ISO-8601).")
@click.option("--page", type=int, default=1, show_default=True, help="Which page, from 1.")
@click.option("--page-size", type=int, default=100, show_default=True, help="Entries per page (1-10000).")
@click.option("--newest-first", is_flag=True, help="Newest first within each chain (default oldest first).")
@json_option
@with_ledger
def audit_list(ledger: Ledger, developer_id: str | None, agent_id: str | None, grant_id: str | None,
               principal: str | None, action: str | None, status: str | None, since: str | None,
               until: str | None, page: int, page_size: int, newest_first: bool, as_json: bool) -> None:
    """List audit entries in chain order; '!' marks actions taken under a revoked or expired grant."""
    from ..audit import trail as audit_trail

    found = audit_trail.list_entries(
        ledger, developer_id, agent_id=agent_id, grant_id=grant_id, principal_id=principal, action=action,
        status=status, since=since, until=until, page=page, page_size=page_size, newest_first=newest_first)

    def human() -> None:
        several = len({e.developer_id for e in found}) > 1
        headers = ["SEQ", "TIMESTAMP", "ACTION", "STATUS", "AGENT", "GRANT", *(["DEVELOPER"] * several),
                   "FLAGS"]
        echo_table(headers, [[e.seq, e.timestamp, e.action, e.status, e.agent_id, e.grant_id,
                              *([e.developer_id] * several), _flag_cell(e)] for e in found],
                   "no audit entries" if page == 1 else f"no audit entries on page {page}")
        _echo_flag_legend(found)

    emit(as_json, {"entries": [e.to_dict() for e in found], "page": page, "pageSize": page_size}, human)


@audit_group.command("show")
@click.argument("entry_id")
@json_option
@with_ledger
def audit_show(ledger: Ledger, entry_id: str, as_json: bool) -> None:
    """Show audit entry ENTRY_ID with its metadata."""
    from ..audit import trail as audit_trail
    from ..text import escape as escape_text

    entry = audit_trail.get_entry(ledger, None, entry_id)

    def human() -> None:
        echo_fields(_entry_fields(entry))
        click.echo("metadata:")
        click.echo("\n".join(map(escape_text, json_text(entry.metadata).split("\n"))))
        _echo_flag_legend([entry])

    emit(as_json, entry.to_dict(), human)


@audit_group.command("log")
@click.option("--agent", "agent_id", required=True, metavar="AGENT_ID", help="The agent that acted.")
@click.option("--grant", "grant_id", required=True, metavar="GRANT_ID",
              help="The grant it acted under (must be the agent's).")
@click.option("--action", required=True, help="What it did, e.g. calendar.read ('grantex.' is reserved).")
@click.option("--status", type=LibraryChoice(lambda: library("audit.trail").STATUSES), default="success",
              show_default=True, help="How it went.")
@click.option("--metadata", default=None, metavar="JSON",
              help="A JSON object recorded with the entry ('-' reads it from stdin).")
@json_option
@with_ledger
def audit_log(ledger: Ledger, agent_id: str, grant_id: str, action: str, status: str,
              metadata: str | None, as_json: bool) -> None:
    """Append an action to the chain of the developer that owns the agent."""
    from ..audit import trail as audit_trail

    parsed = None
    if metadata is not None:
        try:
            parsed = json.loads(read_arg(metadata, "metadata"))
        except ValueError as exc:
            raise click.BadParameter(f"not JSON: {exc}", param_hint="--metadata") from None
    entry = audit_trail.log(ledger, developer_of_agent(ledger, agent_id), agent_id=agent_id,
                            grant_id=grant_id, action=action, status=status, metadata=parsed)

    def human() -> None:
        echo_fields(_entry_fields(entry))
        if entry.flags:  # the same flags and legend 'audit list' and 'audit show' give this entry
            click.echo(FLAG_LEGEND)

    emit(as_json, entry.to_dict(), human)


def _verify_chains(ledger: Ledger, developer_ids: list[str], checkpoint: Checkpoint | None,
                   reports: list[ChainReport], as_json: bool) -> None:
    """The library's verifier over each chain (``checkpoint`` for a single one), appending each
    report as it passes; one progress bar over them all on a terminal."""
    from ..audit import chain as audit_chain
    from ..audit import trail as audit_trail
    from ..progress import Tally
    from .progress import progress_bar

    with progress_bar("verifying the audit chain", as_json=as_json) as bar:
        total = None if bar is None else sum(audit_trail.count_entries(ledger, d) for d in developer_ids)
        tally = Tally(bar, total)
        for developer_id in developer_ids:
            offset = sum(r.entries for r in reports)
            report = audit_chain.verify_chain(ledger, developer_id, checkpoint=checkpoint,
                                              progress=tally.after(offset) if bar else None)
            reports.append(report)
        tally.finish()


def _developer_of_checkpoint(ledger: Ledger, note_text: str) -> str:
    """The chain in this ledger that a checkpoint's origin line names."""
    from ..audit import chain as audit_chain
    from ..audit import note as audit_note
    from ..audit import stored as audit_stored
    from ..audit.note import CheckpointInvalid

    origin = audit_note.parse(note_text)[0].origin
    for developer_id in audit_chain.chain_developers(ledger):
        if audit_stored.origin(ledger, developer_id) == origin:
            return developer_id
    raise CheckpointInvalid(f"checkpoint is for {origin}, not a chain in this ledger")


@audit_group.command("verify")
@click.option("--developer", "developer_id", metavar="DEV_ID", default=None,
              help="Only this developer's chain (default: every chain in the file).")
@click.option("--against", type=click.Path(exists=True, dir_okay=False), default=None, metavar="FILE",
              help="A checkpoint kept outside the ledger: also catches a deleted tail or a rewritten chain.")
@key_option(False, "Public checkpoint key (text or file) to check --against with, instead of the "
                   "ledger's own key.")
@json_option
@with_ledger
def audit_verify(ledger: Ledger, developer_id: str | None, against: str | None, verifier_key: str | None,
                 as_json: bool) -> None:
    """Walk the hash chain(s) from the stored bytes and check them against every checkpoint
    stored in the file; exit 1 at the first broken seq. Only a checkpoint kept outside the file
    (--against) also catches a rewrite of the whole file."""
    from .. import developers
    from ..audit import chain as audit_chain
    from ..audit import checkpoints as audit_checkpoints
    from ..audit.note import CheckpointInvalid

    if verifier_key is not None and against is None:
        raise click.UsageError("--key only applies together with --against")
    if developer_id is not None:
        developers.get_developer(ledger, developer_id)
    reports: list[ChainReport] = []
    current = developer_id
    try:
        if against is not None:
            text = Path(against).read_text(encoding="utf-8", errors="replace")  # not UTF-8: not a note
            current = developer_id or _developer_of_checkpoint(ledger, text)
            checkpoint = audit_checkpoints.verify_against(ledger, current, text, verifier_key)
            _verify_chains(ledger, [current], checkpoint, reports, as_json)
        else:
            chains = [developer_id] if developer_id else audit_chain.chain_developers(ledger)
            _verify_chains(ledger, chains, None, reports, as_json)
    except (errors.ChainBroken, CheckpointInvalid) as exc:
        if against is None:
            current = chains[len(reports)]  # the chain that failed: the one after those that passed
        if as_json:
            echo_json(failure_json(exc, developerId=current, chains=[r.to_dict() for r in reports]))
        where = f" (developer {current})" if current is not None else ""
        raise CheckFailed(exc.message + where) from None

    def human() -> None:
        for report in reports:
            line = (f"{report.developer_id}: {report.entries} entries intact, head "
                    f"{report.head_hash or '-'}")
            if report.stored_checkpoints:
                line += (f", matches its {report.stored_checkpoints} stored checkpoint"
                         + "s" * (report.stored_checkpoints > 1))
            if report.checkpoint_size is not None:
                line += f", consistent with the checkpoint of {report.checkpoint_size} entries"
            click.echo(line)
        if against is None:
            click.echo(OUTSIDE_CHECKPOINT_NOTE, err=True)

    emit(as_json, {"valid": True, "chains": [r.to_dict() for r in reports]}, human)


@audit_group.command("checkpoint")
@developer_option
@click.option("--out", type=click.Path(dir_okay=False), default=None, metavar="FILE",
              help="Write the signed checkpoint to FILE (keep it outside the ledger) instead of printing it.")
@json_option
@failed_checks
@with_ledger
def audit_checkpoint(ledger: Ledger, developer_id: str | None, out: str | None, as_json: bool) -> None:
    """Sign a checkpoint over the chain as it is now (checked against the previous one) and store it."""
    from ..audit import checkpoints as audit_checkpoints

    made = audit_checkpoints.create(ledger, developer_or_default(ledger, developer_id))
    if out is not None:
        Path(out).write_text(made["signedCheckpoint"], encoding="utf-8")

    def human() -> None:
        if out is None:
            click.echo(made["signedCheckpoint"], nl=False)
        else:
            click.echo(f"checkpoint of {made['entryCount']} entries of {made['developerId']} written to "
                       f"{out}; keep a copy outside the ledger and check with "
                       f"'grantex-local audit verify --against {out}'")

    emit(as_json, made, human)


@audit_group.command("checkpoints")
@click.option("--developer", "developer_id", metavar="DEV_ID", default=None,
              help="Only this developer's checkpoints (default: every developer).")
@json_option
@with_ledger
def audit_checkpoints_list(ledger: Ledger, developer_id: str | None, as_json: bool) -> None:
    """List the stored checkpoints, smallest first."""
    from ..audit import chain as audit_chain
    from ..audit import checkpoints as audit_checkpoints

    chains = [developer_id] if developer_id else audit_chain.chain_developers(ledger)
    found = [c for d in chains for c in audit_checkpoints.list_checkpoints(ledger, d)]
    emit(as_json, {"checkpoints": found}, lambda: echo_table(
        ["ID", "DEVELOPER", "ENTRIES", "ROOT", "HEAD ENTRY", "TIMESTAMP"],
        [[c["checkpointId"], c["developerId"], c["entryCount"], c["rootHash"][:16] + "...",
          c["headEntryId"], c["timestamp"]] for c in found],
        "no checkpoints; write one with 'grantex-local audit checkpoint'"))


@audit_group.command("prove")
@click.argument("entry_id")
@click.option("--out", type=click.Path(dir_okay=False), default=None, metavar="FILE",
              help="Write the proof to FILE instead of printing it.")
@failed_checks
@with_ledger
def audit_prove(ledger: Ledger, entry_id: str, out: str | None) -> None:
    """Print an inclusion proof (JSON) of ENTRY_ID under the latest checkpoint covering it."""
    from ..audit import checkpoints as audit_checkpoints

    proof = audit_checkpoints.prove(ledger, entry_id)
    text = json_text(proof) + "\n"
    if out is None:
        click.echo(text, nl=False)
        return
    Path(out).write_text(text, encoding="utf-8")
    click.echo(f"inclusion proof of {entry_id} (seq {proof['seq']}) under the checkpoint of "
               f"{proof['treeSize']} entries written to {out}")


@audit_group.command("verify-proof")
@click.argument("proof_file", type=click.Path(exists=True, dir_okay=False))
@key_option(True, "The public checkpoint key (text or file) from 'grantex-local audit public-key', "
                  "obtained out of band.")
@json_option
@ledger_option
def audit_verify_proof(proof_file: str, verifier_key: str, as_json: bool) -> None:
    """Check an inclusion proof offline with only the proof and the public key; exit 1 when invalid."""
    from ..audit import checkpoints as audit_checkpoints
    from ..audit.note import CheckpointInvalid

    try:
        try:
            proof = json.loads(Path(proof_file).read_text(encoding="utf-8"))
        except (ValueError, UnicodeDecodeError):
            raise audit_checkpoints.ProofInvalid("the proof file is not JSON") from None
        checkpoint = audit_checkpoints.verify_proof(proof, verifier_key)
        try:  # named from the verified bytes, not from the proof's unchecked entryId label
            entry_id = json.loads(proof["preimage"])["id"]
        except (ValueError, KeyError, TypeError):
            raise audit_checkpoints.ProofInvalid("the proven entry's bytes are not an audit entry") from None
    except CheckpointInvalid as exc:
        if as_json:
            echo_json(failure_json(exc))
        raise CheckFailed(f"proof is invalid: {exc.message}") from None
    result = {"valid": True, "entryId": entry_id, "seq": int(proof["leafIndex"]) + 1,
              "entryHash": proof["entryHash"], "treeSize": checkpoint.size, "origin": checkpoint.origin,
              "rootHash": checkpoint.root_hash.hex(), "checkpointTimestamp": checkpoint.timestamp}
    emit(as_json, result, lambda: click.echo(
        f"valid: entry {entry_id} (seq {result['seq']}) is in the log {checkpoint.origin} as "
        f"checkpointed at {checkpoint.size} entries on {checkpoint.timestamp}"))


@audit_group.command("public-key")
@with_ledger
def audit_public_key(ledger: Ledger) -> None:
    """Print the public checkpoint key to hand to auditors (for verify-proof and verify-export)."""
    from ..audit import checkpoints as audit_checkpoints

    click.echo(audit_checkpoints.verifier_key(ledger))


