"""``webhooks``: registrations and the delivery log (deliveries are sent by ``serve``)."""

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

_EVENT_TYPES = ("grant.created", "grant.revoked", "token.issued")
"""The names a webhook may subscribe to (the library checks them again: it is the authority)."""


@click.group("webhooks", cls=GrantexGroup)
def webhooks_group() -> None:
    """URLs that 'serve' POSTs signed events to, and how each delivery went."""


@webhooks_group.command("add")
@click.argument("url")
@click.option("--event", "events", multiple=True, required=True, metavar="TYPE",
              help=f"Event to send (repeatable): {', '.join(_EVENT_TYPES)}.")
@developer_option
@json_option
@with_ledger
def webhooks_add(ledger: Ledger, url: str, events: tuple[str, ...], developer_id: str | None,
                 as_json: bool) -> None:
    """Register URL; prints its signing secret, which is never shown again."""
    from .. import webhooks

    hook = webhooks.create(ledger, developer_or_default(ledger, developer_id), url, list(events))

    def human() -> None:
        echo_fields([("id", hook.id), ("url", hook.url), ("events", list(hook.events)),
                     ("created", hook.created_at), ("secret", hook.secret)])
        click.echo("note: the secret is shown only now; keep it to verify X-Grantex-Signature-V2. "
                   "Deliveries are sent while 'grantex-local serve' runs.", err=True)

    emit(as_json, hook.to_dict(), human)


@webhooks_group.command("list")
@developer_option
@json_option
@with_ledger
def webhooks_list(ledger: Ledger, developer_id: str | None, as_json: bool) -> None:
    """List webhooks, newest first (secrets are never listed)."""
    from .. import webhooks

    found = webhooks.list_webhooks(ledger, developer_or_default(ledger, developer_id))
    emit(as_json, {"webhooks": [h.to_dict() for h in found]}, lambda: echo_table(
        ["ID", "URL", "EVENTS", "CREATED"],
        [[h.id, h.url, list(h.events), h.created_at] for h in found], "no webhooks"))


@webhooks_group.command("remove")
@click.argument("webhook_id")
@developer_option
@with_ledger
def webhooks_remove(ledger: Ledger, webhook_id: str, developer_id: str | None) -> None:
    """Delete WEBHOOK_ID; its pending deliveries stop."""
    from .. import webhooks

    webhooks.delete(ledger, developer_or_default(ledger, developer_id), webhook_id)
    click.echo(f"webhook {webhook_id} removed")


@webhooks_group.command("deliveries")
@click.argument("webhook_id", required=False)
@click.option("--status", type=click.Choice(["pending", "delivered", "failed"]), default=None,
              help="Only deliveries in this state.")
@click.option("--limit", type=click.IntRange(1, 100), default=50, show_default=True,
              help="Newest deliveries shown.")
@developer_option
@json_option
@with_ledger
def webhooks_deliveries(ledger: Ledger, webhook_id: str | None, status: str | None, limit: int,
                        developer_id: str | None, as_json: bool) -> None:
    """The delivery log, newest first: of WEBHOOK_ID, or of every webhook."""
    from .. import webhooks

    found, total = webhooks.list_deliveries(ledger, developer_or_default(ledger, developer_id),
                                            webhook_id, status=status, page_size=limit)
    emit(as_json, {"deliveries": [d.to_dict() for d in found], "total": total}, lambda: echo_table(
        ["ID", "WEBHOOK", "EVENT", "STATUS", "ATTEMPTS", "LAST", "CREATED", "NEXT"],
        [[d.id, d.webhook_id, d.event_type, d.status, f"{d.attempts}/{d.max_attempts}",
          d.last_error or (d.last_status if d.last_status is not None else ""), d.created_at,
          d.next_attempt_at or ""] for d in found], "no deliveries"))
