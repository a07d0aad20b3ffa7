"""``developers``: developers in the ledger and their API keys for the REST server."""

from __future__ import annotations

from typing import TYPE_CHECKING

import click

from . import (
    GrantexGroup,
    developer_option,
    developer_or_default,
    echo_fields,
    echo_table,
    emit,
    json_option,
    with_ledger,
)

if TYPE_CHECKING:
    from ..founding import Ledger


@click.group("developers", cls=GrantexGroup)
def developers_group() -> None:
    """Developers in this ledger and their API keys for the REST server."""


@developers_group.command("list")
@json_option
@with_ledger
def developers_list(ledger: Ledger, as_json: bool) -> None:
    """List developers."""
    from .. import developers

    found = developers.list_developers(ledger)
    emit(as_json, {"developers": [d.to_dict() for d in found]}, lambda: echo_table(
        ["ID", "NAME", "SANDBOX", "DEFAULT", "CREATED"],
        [[d.id, d.name, d.sandbox, d.is_default, d.created_at] for d in found], "no developers"))


@developers_group.command("create")
@click.argument("name")
@click.option("--sandbox/--no-sandbox", default=False, show_default=True,
              help="Sandbox developers get codes at once; others wait for consent.")
@json_option
@with_ledger
def developers_create(ledger: Ledger, name: str, sandbox: bool, as_json: bool) -> None:
    """Create a developer NAME."""
    from .. import developers

    dev = developers.create_developer(ledger, name, sandbox=sandbox)
    emit(as_json, dev.to_dict(), lambda: echo_fields(
        [("id", dev.id), ("name", dev.name), ("sandbox", dev.sandbox), ("created", dev.created_at)]))


@developers_group.command("create-key")
@developer_option
@click.option("--name", default="", help="A label for the key.")
@json_option
@with_ledger
def developers_create_key(ledger: Ledger, developer_id: str | None, name: str, as_json: bool) -> None:
    """Create an API key; it is printed once and cannot be shown again."""
    from .. import developers

    key = developers.create_api_key(ledger, developer_or_default(ledger, developer_id), name)
    emit(as_json, key.to_dict(), lambda: echo_fields(
        [("id", key.id), ("developer", key.developer_id), ("api key", key.key)]))
    click.echo("note: the ledger keeps only a hash of this key; it cannot be shown again", err=True)


@developers_group.command("list-keys")
@click.option("--developer", "developer_id", metavar="DEV_ID", default=None,
              help="Only this developer's keys (default: every developer's).")
@json_option
@with_ledger
def developers_list_keys(ledger: Ledger, developer_id: str | None, as_json: bool) -> None:
    """List API keys, revoked ones too (ids and prefixes only: the secrets are never stored)."""
    from .. import developers

    found = developers.list_api_keys(ledger, developer_id)
    emit(as_json, {"keys": [k.to_dict() for k in found]}, lambda: echo_table(
        ["ID", "PREFIX", "NAME", "DEVELOPER", "CREATED", "REVOKED"],
        [[k.id, k.prefix + "…", k.name or None, k.developer_id, k.created_at, k.revoked_at] for k in found],
        "no API keys"))


@developers_group.command("revoke-key")
@click.argument("key_id")
@json_option
@with_ledger
def developers_revoke_key(ledger: Ledger, key_id: str, as_json: bool) -> None:
    """Revoke API key KEY_ID; the server refuses it from the very next request."""
    from .. import developers

    key = developers.revoke_api_key(ledger, key_id)
    emit(as_json, key.to_dict(), lambda: echo_fields(
        [("id", key.id), ("developer", key.developer_id), ("revoked", key.revoked_at)]))
