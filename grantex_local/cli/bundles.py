"""``bundles``: consent bundles for offline devices, carried as files (sneakernet).

``create`` writes the bundle (with its Ed25519 private key, the only copy) to a file made 0600
and never prints the key; ``sync`` imports a device's JSON Lines log with the server's checks.
The CLI is the local admin: a request no policy or sandbox approves is approved as the
operating-system user on channel ``cli``, as ``consent approve`` would.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from . import (
    CheckFailed,
    CliError,
    GrantexGroup,
    developer_of_agent,
    echo_fields,
    echo_table,
    emit,
    json_option,
    scope_option,
    with_ledger,
)

if TYPE_CHECKING:
    from ..founding import Ledger


@click.group("bundles", cls=GrantexGroup)
def bundles_group() -> None:
    """Consent bundles for offline devices: create to a file, sync a device's log, list, revoke."""


def _open_exclusive(path: Path, force: bool) -> int:
    """The bundle file, created 0600 before anything is issued (no grant for a file we cannot
    write). Without ``--force`` an existing file is refused, never overwritten."""
    flags = os.O_WRONLY | os.O_CREAT | (os.O_TRUNC if force else os.O_EXCL)
    try:
        fd = os.open(path, flags, 0o600)
        os.fchmod(fd, 0o600)  # an existing file overwritten with --force keeps no wider mode
    except FileExistsError:
        raise CliError(f"{path} exists: pass --force to overwrite it") from None
    except OSError as exc:
        raise CliError(f"cannot write {path}: {exc.strerror}") from None
    return fd


@bundles_group.command("create")
@click.option("--agent", "agent_id", required=True, metavar="AGENT_ID", help="The device's agent.")
@click.option("--principal", required=True, metavar="USER", help="Whose consent the bundle carries.")
@scope_option(True, "A scope the bundle's grant carries.")
@click.option("--offline-ttl", default="72h", show_default=True, metavar="DURATION",
              help="How long the device may act offline (the grant lives as long; at most 30d and the "
                   "ledger's max_expires_in).")
@click.option("--out", "out", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="File to write the bundle to (created with mode 0600).")
@click.option("--force", is_flag=True, help="Overwrite --out if it exists.")
@click.option("--developer", "developer_id", metavar="DEV_ID", default=None,
              help="Developer to act as (default: the agent's).")
@json_option
@with_ledger
def bundles_create(ledger: Ledger, agent_id: str, principal: str, scopes: tuple[str, ...], offline_ttl: str,
                   out: Path, force: bool, developer_id: str | None, as_json: bool) -> None:
    """Issue a bundle through the normal flow and write it to --out (the private key goes only there)."""
    from .. import authorization, bundles

    developer = developer_id or developer_of_agent(ledger, agent_id)
    fd = _open_exclusive(out, force)
    try:
        made = bundles.create(ledger, developer, agent_id=agent_id, principal_id=principal,
                              scopes=list(scopes), offline_ttl=offline_ttl,
                              approve_as=authorization.os_user(), channel="cli")
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            fd = -1
            json.dump(made, f, indent=2)
            f.write("\n")
    except BaseException:
        if fd >= 0:
            os.close(fd)
        if not force:
            out.unlink(missing_ok=True)
        raise
    summary = {"bundleId": made["bundleId"], "file": str(out), "offlineExpiresAt": made["offlineExpiresAt"],
               "syncEndpoint": made["syncEndpoint"]}
    emit(as_json, summary, lambda: echo_fields([
        ("bundle", made["bundleId"]), ("written to", f"{out} (mode 0600: it holds the private key)"),
        ("offline until", made["offlineExpiresAt"]), ("sync endpoint", made["syncEndpoint"])]))


def _read_log(path: Path) -> list[Any]:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise CliError(f"cannot read {path}: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise CliError(f"{path} is not UTF-8 text") from None
    lines: list[Any] = []
    for number, line in enumerate(text.splitlines(), 1):
        if line.strip():
            try:
                lines.append(json.loads(line))
            except ValueError:
                raise CliError(f"{path}:{number} is not a JSON line") from None
    return lines


@bundles_group.command("sync")
@click.argument("log", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--bundle", "bundle_id", required=True, metavar="BUNDLE_ID",
              help="The bundle the log was signed under.")
@json_option
@with_ledger
def bundles_sync(ledger: Ledger, log: Path, bundle_id: str, as_json: bool) -> None:
    """Import a device's offline log LOG (JSON Lines, as grantex-gemma writes it).

    Exits 1 when any entry was rejected (the valid prefix is imported all the same)."""
    from .. import bundles
    from .progress import progress_bar

    entries = bundles.parse_entries(_read_log(log))
    with progress_bar("syncing the device log", as_json=as_json) as bar:
        outcome = bundles.sync(ledger, None, bundle_id, entries, progress=bar)
    data = outcome.to_dict()

    def human() -> None:
        echo_fields([("bundle", outcome.bundle["id"]), ("accepted", outcome.accepted),
                     ("duplicates", outcome.duplicates), ("rejected", outcome.rejected),
                     ("revocation status", outcome.revocation_status),
                     ("last offline seq", outcome.bundle["lastOfflineSeq"])])
        if outcome.rejections:
            first = outcome.rejections[0]
            click.echo(f"first rejected: seq {first['seq']} ({first['reason']}); "
                       f"{outcome.rejected - 1} after it not imported")

    emit(as_json, data, human)
    if outcome.rejected:
        raise CheckFailed(f"{outcome.rejected} offline entries rejected, the first at seq "
                          f"{outcome.rejections[0]['seq']} ({outcome.rejections[0]['reason']})")


@bundles_group.command("list")
@click.option("--grant", "grant_id", default=None, metavar="GRANT_ID", help="Only this grant's bundles.")
@json_option
@with_ledger
def bundles_list(ledger: Ledger, grant_id: str | None, as_json: bool) -> None:
    """Bundles, their grant and how far each device's log was synced."""
    from .. import bundles

    found = bundles.list_bundles(ledger, None, grant_id=grant_id)
    emit(as_json, {"bundles": found}, lambda: echo_table(
        ["ID", "STATUS", "GRANT", "AGENT", "PRINCIPAL", "OFFLINE UNTIL", "LAST SYNC", "SYNCED"],
        [[b["id"], b["status"], b["grantId"], b["agentId"], b["principalId"], b["offlineExpiresAt"],
          b["lastSyncAt"] or "never", b["syncedEntries"]] for b in found], "no bundles"))


@bundles_group.command("show")
@click.argument("bundle_id")
@json_option
@with_ledger
def bundles_show(ledger: Ledger, bundle_id: str, as_json: bool) -> None:
    """One bundle (its public key only: the private half was never kept)."""
    from .. import bundles

    found = bundles.get(ledger, None, bundle_id)
    emit(as_json, found, lambda: echo_fields([(k, v) for k, v in found.items() if k != "publicKey"]))


@bundles_group.command("revoke")
@click.argument("bundle_id")
@json_option
@with_ledger
def bundles_revoke(ledger: Ledger, bundle_id: str, as_json: bool) -> None:
    """Revoke the bundle's grant (and every grant delegated from it) and mark the bundle."""
    from .. import bundles

    done = bundles.revoke(ledger, None, bundle_id)
    emit(as_json, done, lambda: echo_fields([
        ("bundle", done["bundleId"]), ("revoked at", done["revokedAt"]), ("grant", done["grantId"]),
        ("grants revoked", len(done["revokedGrants"]))]))
