"""``vault``: store, list, show and delete upstream credentials (never printing a secret).

The secret is read from stdin only (a pipe, or a hidden prompt on a terminal), never from the
command line, where shell history and ``ps`` would keep it. The ledger's passphrase comes from
``GRANTEX_LOCAL_PASSPHRASE`` as for every command; without one, ``store`` refuses unless
``--insecure-store`` says the owner accepts secrets that are not protected by a passphrase.
"""

from __future__ import annotations

import json
import sys
from typing import TYPE_CHECKING, Any

import click

from . import (
    CliError,
    GrantexGroup,
    developer_option,
    developer_or_default,
    echo_fields,
    echo_table,
    emit,
    json_option,
    library,
    with_ledger,
)

if TYPE_CHECKING:
    from ..founding import Ledger


@click.group("vault", cls=GrantexGroup)
def vault_group() -> None:
    """Upstream credentials per principal and service, encrypted at rest (agents exchange a
    live grant token for them over HTTP; nothing here prints a secret)."""


def _warn(item: Any) -> None:
    if not item.protected:
        click.echo(f"warning: {library('vault').INSECURE_WARNING}", err=True)


def _read_secret(token_stdin: bool) -> str:
    """The secret from stdin (one line, or all of a pipe): never an argument."""
    if not token_stdin and sys.stdin.isatty():
        value = click.prompt("secret (not echoed)", hide_input=True, default="", show_default=False)
    else:
        value = sys.stdin.read()
    value = value.strip()
    if not value:
        raise CliError("no secret given on stdin")
    return str(value)


@vault_group.command("store")
@click.argument("principal")
@click.argument("service")
@click.option("--token-stdin", is_flag=True,
              help="Read the secret from stdin (the default when stdin is not a terminal).")
@click.option("--credential-type", default=None, metavar="TYPE", help="e.g. oauth2 (default), api_key.")
@click.option("--token-expires-at", default=None, metavar="ISO", help="When the upstream token expires.")
@click.option("--metadata", default=None, metavar="JSON", help="A JSON object kept with it (not secret).")
@click.option("--insecure-store", is_flag=True,
              help="Store even though the ledger has no passphrase (the secret is then NOT protected).")
@developer_option
@json_option
@with_ledger
def vault_store(ledger: Ledger, principal: str, service: str, token_stdin: bool, credential_type: str | None,
                token_expires_at: str | None, metadata: str | None, insecure_store: bool,
                developer_id: str | None, as_json: bool) -> None:
    """Store (or replace) PRINCIPAL's credential for SERVICE; the secret comes from stdin."""
    vault = library("vault")
    meta: object = None
    if metadata is not None:
        try:
            meta = json.loads(metadata)
        except ValueError:
            raise CliError("--metadata must be a JSON object") from None
    if not ledger.passphrase and not insecure_store:  # refuse before reading a secret
        raise CliError(vault.HOW_TO_UNLOCK)
    secret = _read_secret(token_stdin)
    stored = vault.store(ledger, developer_or_default(ledger, developer_id), principal, service, secret,
                         credential_type=credential_type, token_expires_at=token_expires_at,
                         metadata=meta, insecure=insecure_store)

    def human() -> None:
        click.echo(f"stored {stored.id} ({stored.principal_id} / {stored.service}, {stored.credential_type})")

    emit(as_json, stored.to_dict(), human)
    _warn(stored)


@vault_group.command("list")
@click.option("--principal", default=None, help="Only this principal's.")
@click.option("--service", default=None, help="Only this service's.")
@developer_option
@json_option
@with_ledger
def vault_list(ledger: Ledger, principal: str | None, service: str | None, developer_id: str | None,
               as_json: bool) -> None:
    """Stored credentials: metadata only, never a secret."""
    found = library("vault").list_credentials(ledger, developer_or_default(ledger, developer_id),
                                             principal_id=principal, service=service)

    def human() -> None:
        echo_table(["ID", "PRINCIPAL", "SERVICE", "TYPE", "PROTECTED", "UPDATED"],
                   [[c.id, c.principal_id, c.service, c.credential_type,
                     "yes" if c.protected else "NO (insecure store)", c.updated_at] for c in found],
                   "no stored credentials")

    emit(as_json, {"credentials": [c.to_dict() for c in found], "total": len(found)}, human)
    if any(not c.protected for c in found):
        click.echo(f"warning: {library('vault').INSECURE_WARNING}", err=True)


@vault_group.command("show")
@click.argument("credential_id")
@developer_option
@json_option
@with_ledger
def vault_show(ledger: Ledger, credential_id: str, developer_id: str | None, as_json: bool) -> None:
    """One credential's metadata (never its secret)."""
    item = library("vault").get(ledger, developer_or_default(ledger, developer_id), credential_id)

    def human() -> None:
        echo_fields([("id", item.id), ("principal", item.principal_id), ("service", item.service),
                     ("type", item.credential_type), ("token expires", item.token_expires_at or "-"),
                     ("metadata", json.dumps(item.metadata, ensure_ascii=False)),
                     ("protected", "yes (passphrase)" if item.protected else "NO (insecure store)"),
                     ("created", item.created_at), ("updated", item.updated_at)])

    emit(as_json, item.to_dict(), human)
    _warn(item)


@vault_group.command("delete")
@click.argument("credential_id")
@developer_option
@json_option
@with_ledger
def vault_delete(ledger: Ledger, credential_id: str, developer_id: str | None, as_json: bool) -> None:
    """Delete a stored credential."""
    library("vault").delete(ledger, developer_or_default(ledger, developer_id), credential_id)
    emit(as_json, {"id": credential_id, "deleted": True}, lambda: click.echo(f"deleted {credential_id}"))
