"""``mcp``: the ledger as an MCP server over stdio (the ``mcp`` SDK is imported only when it runs)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import click

from . import developer_option, with_ledger

if TYPE_CHECKING:
    from ..founding import Ledger


@click.command("mcp")
@developer_option
@with_ledger
def mcp_command(ledger: Ledger, developer_id: str | None) -> None:
    """Serve the ledger to Claude Desktop, Cursor and other MCP clients over stdio.

    The hosted @grantex/mcp tools under the same names and arguments, plus the delegation tree,
    audit verify, checkpoints and the compliance summary. stdout carries the protocol only.
    """
    from ..mcp.server import run  # the MCP SDK is imported only here

    run(ledger, developer_id)
