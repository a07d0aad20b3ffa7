"""``keys``: the issuer's signing keys and its JWKS."""

from __future__ import annotations

from typing import TYPE_CHECKING

import click

from . import GrantexGroup, echo_fields, echo_json, echo_table, emit, json_option, with_ledger

if TYPE_CHECKING:
    from ..founding import Ledger


@click.group("keys", cls=GrantexGroup)
def keys_group() -> None:
    """The issuer's signing keys and its JWKS."""


@keys_group.command("rotate")
@json_option
@with_ledger
def keys_rotate(ledger: Ledger, as_json: bool) -> None:
    """Start signing with a new key; old tokens keep verifying until they expire."""
    from .. import keys

    rotated = keys.rotate_signing_key(ledger)
    emit(as_json, rotated, lambda: echo_fields(
        [("new kid", rotated["kid"]), ("retired", rotated["retiredKids"]), ("at", rotated["rotatedAt"])]))


@keys_group.command("jwks")
@with_ledger
def keys_jwks(ledger: Ledger) -> None:
    """Print the JWKS served at ISSUER/.well-known/jwks.json."""
    from .. import keys

    echo_json(keys.jwks(ledger))


@keys_group.command("list")
@json_option
@with_ledger
def keys_list(ledger: Ledger, as_json: bool) -> None:
    """List signing keys, active and retired."""
    from .. import keys

    found = keys.list_signing_keys(ledger)
    emit(as_json, {"keys": found}, lambda: echo_table(
        ["KID", "STATUS", "CREATED", "RETIRED", "LAST TOKEN EXPIRY"],
        [[k["kid"], k["status"], k["createdAt"], k["retiredAt"], k["lastTokenExpiry"]] for k in found],
        "no keys"))
