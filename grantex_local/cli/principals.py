"""``principals``: the people agents act for, and the page where they oversee them."""

from __future__ import annotations

from typing import TYPE_CHECKING

import click

from . import GrantexGroup, developer_option, developer_or_default, echo_table, emit, json_option, with_ledger

if TYPE_CHECKING:
    from ..founding import Ledger


@click.group("principals", cls=GrantexGroup)
def principals_group() -> None:
    """The people agents act for: a link to the page listing every grant in their name."""


@principals_group.command("link")
@click.argument("user")
@developer_option
@click.option("--expires-in", default="1h", show_default=True, metavar="DURATION",
              help="How long the link works, e.g. 30m, 8h (at most 24h; longer is cut to 24h).")
@json_option
@with_ledger
def link(ledger: Ledger, user: str, developer_id: str | None, expires_in: str, as_json: bool) -> None:
    """Print a link to USER's permissions page: every grant in their name, each revocable.

    The session is marked as minted locally (you hold the ledger file), and the link points at
    the ledger's issuer, where 'grantex-local serve' must be running for it to open.
    """
    from ..principals import create_session, session_seconds

    developer = developer_or_default(ledger, developer_id)
    session = create_session(ledger, developer, user, via="local", expires_in=expires_in)
    url = session.dashboard_url(ledger.issuer.rstrip("/"))
    lasts = session_seconds(expires_in)

    def human() -> None:
        click.echo(url)
        hours, rest = divmod(lasts, 3600)
        minutes = f"{rest // 60} min" if rest >= 60 else f"{rest} s"
        span = (f"{hours} h {minutes}" if rest else f"{hours} h") if hours else minutes
        click.echo(f"The link works for {span} (until {session.expires_at}) while 'grantex-local serve' "
                   f"is running at {ledger.issuer}; it shows {user}'s grants and lets them revoke any.",
                   err=True)

    emit(as_json, {"dashboardUrl": url, "expiresAt": session.expires_at, "principalId": session.principal_id},
         human)


@principals_group.command("list")
@developer_option
@json_option
@with_ledger
def list_principals(ledger: Ledger, developer_id: str | None, as_json: bool) -> None:
    """The principals holding grants, with how many (and how many are active)."""
    from ..grants import principal_summaries

    items, _total = principal_summaries(ledger, developer_id)
    emit(as_json, {"principals": items}, lambda: echo_table(
        ["principal", "developer", "grants", "active"],
        [[p["principalId"], p["developerId"], p["grants"], p["active"]] for p in items],
        "no principal holds a grant"))
