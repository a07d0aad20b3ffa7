"""``seed FILE``: load developers, agents, policies and grants from a YAML or JSON file."""

from __future__ import annotations

import click

from . import echo_table, emit, json_option, ledger_option, ledger_path


@click.command("seed")
@click.argument("file", metavar="FILE", type=click.Path(dir_okay=False))
@click.option("--create", is_flag=True, help="Create the ledger first when it does not exist.")
@json_option
@ledger_option
def seed(file: str, create: bool, as_json: bool) -> None:
    """Load FILE (.yaml, .yml or .json) into the ledger, all or nothing.

    Things refer to each other by name (see the README's "Seed data" section); grants go through
    the real consent flow and delegation, so a file the library would refuse writes nothing.
    --json prints the ids by name and each grant's token (--get grants.NAME.grantToken).
    """
    from ..founding import Ledger
    from ..seed import apply_seed

    with Ledger(ledger_path(), create=create) as ledger:
        result = apply_seed(ledger, file)

    def human() -> None:
        rows = [(kind, name, ident) for kind, made in
                (("developer", result.developers), ("agent", result.agents), ("policy", result.policies))
                for name, ident in made.items()]
        rows += [("grant", name, issued.grant_id) for name, issued in result.grants.items()]
        echo_table(["kind", "name", "id"], rows, "the seed file is empty; nothing was written")
        if result.grants:
            click.echo("(grant tokens: seed --json, or --get grants.NAME.grantToken)", err=True)

    emit(as_json, result.to_dict(), human)
