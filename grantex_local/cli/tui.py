"""``tui``: the terminal UI (Textual is imported only when it runs)."""

from __future__ import annotations

import click

from . import key_option, ledger_option, ledger_path


@click.command("tui")
@click.option("--export", "bundle", metavar="BUNDLE", default=None, type=click.Path(exists=True),
              help="Open an export bundle read-only (auditor mode) instead of a ledger.")
@key_option(False, "With --export: the public checkpoint key (text or file) to check the bundle with.")
@ledger_option
def tui(bundle: str | None, verifier_key: str | None) -> None:
    """Open the terminal UI: delegation trees, grant details, consent inbox, audit trail."""
    from ..tui import run  # Textual is imported only here

    run(None if bundle is not None else ledger_path(), export=bundle, verifier_key=verifier_key)
