"""``events``: follow the ledger's event outbox from a terminal.

It reads the ledger file directly, not the server: the outbox is in the file, so ``events
tail`` works with no server running and sees changes made by any process (CLI, TUI, server).
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

import click

from . import CliError, GrantexGroup, cell, library, with_ledger

if TYPE_CHECKING:
    from ..events import Event
    from ..founding import Ledger

POLL_SECONDS = 0.2
_KEY_IDS = (("grantId", "grant"), ("tokenId", "token"), ("agentId", "agent"),
            ("principalId", "principal"), ("authRequestId", "request"))


@click.group("events", cls=GrantexGroup)
def events_group() -> None:
    """The ledger's events (what the SSE stream and webhooks deliver)."""


def describe(event: Event) -> str:
    """One line a person can scan: seq, time, type, then the ids that say what changed."""
    data: dict[str, Any] = event.data
    parts = [str(event.seq), event.created_at, event.type]
    for key, label in _KEY_IDS:
        if isinstance(data.get(key), str):
            parts.append(f"{label}={cell(data[key])}")
    if event.type == "grant.revoked":
        parts.append(f"revoked={len(data.get('revokedGrants') or [])}")
    elif isinstance(data.get("grants"), list):
        parts.append(f"grants={len(data['grants'])}")
    return "  ".join(parts)


@events_group.command("tail")
@click.option("--type", "types", multiple=True, metavar="TYPE",
              help="Only events of this type (repeatable), e.g. grant.revoked.")
@click.option("--since", type=click.IntRange(min=0), default=None, metavar="SEQ",
              help="Start after this sequence number (default: with --once every event, "
                   "otherwise only events from now on).")
@click.option("--once", is_flag=True, help="Print the events there are and exit.")
@click.option("--developer", "developer_id", metavar="DEV_ID", default=None,
              help="Only this developer's events (default: every developer's).")
@click.option("--json", "as_json", is_flag=True,
              help="Print each event's envelope as one JSON line (exactly what webhooks receive).")
@with_ledger
def events_tail(ledger: Ledger, types: tuple[str, ...], since: int | None, once: bool,
                developer_id: str | None, as_json: bool) -> None:
    """Print events as they are written; Ctrl+C stops."""
    events = library("events")
    wanted = events.check_types(types) or None
    if since is not None and since > 2**62:
        raise CliError("--since is out of range")
    after = since if since is not None else (0 if once else events.last_seq(ledger, developer_id))
    try:
        while True:
            found = events.read_events(ledger, developer_id, after=after, types=wanted, limit=1000)
            for event in found:
                click.echo(event.body if as_json else describe(event))
            if found:
                after = found[-1].seq
                if len(found) == 1000:
                    continue
            if once:
                return
            time.sleep(POLL_SECONDS)
    except KeyboardInterrupt:
        return
