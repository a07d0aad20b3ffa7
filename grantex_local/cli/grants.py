"""``grants``: list, inspect, revoke and delegate grants."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import click

from ..models import Grant
from . import (
    GrantexGroup,
    LibraryChoice,
    confirm,
    developer_of_agent,
    echo_fields,
    echo_issued,
    echo_table,
    emit,
    json_option,
    library,
    read_arg,
    scope_option,
    with_ledger,
    yes_option,
)

if TYPE_CHECKING:
    from ..founding import Ledger


def _grant_fields(grant: Grant) -> list[tuple[str, object]]:
    return [("id", grant.id), ("status", grant.status), ("agent", f"{grant.agent_id} ({grant.agent_did})"),
            ("principal", grant.principal_id), ("developer", grant.developer_id),
            ("scopes", grant.scopes), ("depth", grant.delegation_depth),
            ("parent", grant.parent_grant_id), ("audience", grant.audience),
            ("issued", grant.issued_at), ("expires", grant.expires_at), ("revoked", grant.revoked_at)]


@click.group("grants", cls=GrantexGroup)
def grants_group() -> None:
    """List, inspect, revoke and delegate grants."""


@grants_group.command("list")
@click.option("--agent", "agent_id", default=None, metavar="AGENT_ID", help="Only this agent's grants.")
@click.option("--principal", default=None, metavar="USER", help="Only this principal's grants.")
@click.option("--status", type=LibraryChoice(lambda: library("grants").STATUSES), default=None,
              help="Only grants in this status.")
@json_option
@with_ledger
def grants_list(ledger: Ledger, agent_id: str | None, principal: str | None, status: str | None,
                as_json: bool) -> None:
    """List grants with their parent and delegation depth."""
    from .. import grants

    found = grants.list_grants(ledger, None, agent_id=agent_id, principal_id=principal, status=status)
    emit(as_json, {"grants": [g.to_dict() for g in found]}, lambda: echo_table(
        ["ID", "STATUS", "DEPTH", "PARENT", "AGENT", "PRINCIPAL", "SCOPES", "EXPIRES"],
        [[g.id, g.status, g.delegation_depth, g.parent_grant_id, g.agent_id, g.principal_id,
          g.scopes, g.expires_at] for g in found], "no grants"))


@grants_group.command("show")
@click.argument("grant_id")
@json_option
@with_ledger
def grants_show(ledger: Ledger, grant_id: str, as_json: bool) -> None:
    """Show GRANT_ID and the chain of grants it was delegated from."""
    from .. import grants

    grant = grants.get(ledger, None, grant_id)
    chain = grants.ancestors(ledger, grant_id)

    def human() -> None:
        echo_fields(_grant_fields(grant))
        click.echo("ancestors:" if chain else "ancestors: none (a root grant)")
        for parent in chain:
            click.echo(f"  depth {parent.delegation_depth}  {parent.id}  {parent.agent_id}  "
                       f"[{parent.status}]")

    emit(as_json, {**grant.to_dict(), "ancestors": [g.to_dict() for g in chain]}, human)


def _node_label(node: dict[str, Any]) -> str:
    from ..text import escape

    count = len(node["scopes"])
    label = (f"{escape(node['agentName'])} [{node['status']}]  {count} scope{'s' if count != 1 else ''}  "
             f"depth {node['delegationDepth']}  {escape(node['principalId'])}  {node['id']}")
    if node["agentStatus"] != "active":
        label += f"  (agent {node['agentStatus']})"
    return label


def tree_lines(nodes: list[dict[str, Any]], prefix: str = "") -> Iterator[str]:
    """ASCII lines for nested ``grants.tree`` nodes (ASCII so any terminal shows it)."""
    for index, node in enumerate(nodes):
        last = index == len(nodes) - 1
        yield prefix + ("`-- " if last else "|-- ") + _node_label(node)
        yield from tree_lines(node["children"], prefix + ("    " if last else "|   "))


@grants_group.command("tree")
@click.argument("grant_id", required=False)
@json_option
@with_ledger
def grants_tree(ledger: Ledger, grant_id: str | None, as_json: bool) -> None:
    """Draw delegation trees: all of them, or the one under GRANT_ID."""
    from .. import grants

    roots = grants.tree(ledger, None, grant_id)

    def human() -> None:
        if not roots:
            click.echo("no grants")
        for root in roots:
            click.echo(_node_label(root))
            for line in tree_lines(root["children"]):
                click.echo(line)

    emit(as_json, roots, human)


@grants_group.command("revoke")
@click.argument("grant_id")
@yes_option
@with_ledger
def grants_revoke(ledger: Ledger, grant_id: str, yes: bool) -> None:
    """Revoke GRANT_ID and everything delegated from it; shows the blast radius first."""
    from .. import grants

    radius = grants.blast_radius(ledger, grant_id)
    if radius["grantIds"]:
        click.echo(f"revoking {grant_id} revokes {len(radius['grantIds'])} grant(s) "
                   f"({radius['descendants']} delegated), held by: {', '.join(radius['agents'])}; "
                   f"{radius['liveTokens']} live token(s) stop verifying")
        confirm(f"revoke grant {grant_id} and its {radius['descendants']} descendant(s)", yes)
    result = grants.revoke(ledger, None, grant_id)
    click.echo(f"revoked {len(result.revoked_grant_ids)} grant(s) at {result.revoked_at}: "
               f"{' '.join(result.revoked_grant_ids)}")


@grants_group.command("delegate")
@click.option("--parent-token", required=True, help="The parent's grant token ('-' reads it from stdin).")
@click.option("--agent", "agent_id", required=True, metavar="AGENT_ID",
              help="The sub-agent receiving the grant.")
@scope_option(True, "A scope for the sub-agent; the parent's scopes must cover it.")
@click.option("--expires-in", default=None, metavar="DURATION",
              help="Lifetime, e.g. 30m (default 1h; never past the parent's expiry).")
@json_option
@with_ledger
def grants_delegate(ledger: Ledger, parent_token: str, agent_id: str, scopes: tuple[str, ...],
                    expires_in: str | None, as_json: bool) -> None:
    """Delegate part of a grant to a sub-agent, one level deeper."""
    from .. import delegation

    issued = delegation.delegate(
        ledger, developer_of_agent(ledger, agent_id),
        parent_grant_token=read_arg(parent_token, "parent token"), sub_agent_id=agent_id,
        scopes=list(scopes), expires_in=expires_in,
    )
    echo_issued(issued, as_json)
