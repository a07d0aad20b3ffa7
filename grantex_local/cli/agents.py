"""``agents``: register agents and manage their lifecycle and keys."""

from __future__ import annotations

from typing import TYPE_CHECKING

import click

from ..models import Agent
from . import (
    GrantexGroup,
    LibraryChoice,
    confirm,
    developer_option,
    developer_or_default,
    echo_fields,
    echo_json,
    echo_table,
    emit,
    json_option,
    library,
    scope_option,
    with_ledger,
    yes_option,
)

if TYPE_CHECKING:
    from ..founding import Ledger


def _agent_fields(agent: Agent) -> list[tuple[str, object]]:
    return [("id", agent.id), ("did", agent.did), ("name", agent.name),
            ("description", agent.description or None), ("status", agent.status),
            ("developer", agent.developer_id), ("scopes", agent.scopes),
            ("redirect uris", agent.redirect_uris), ("key", agent.key_thumbprint),
            ("created", agent.created_at), ("updated", agent.updated_at)]


@click.group("agents", cls=GrantexGroup)
def agents_group() -> None:
    """Register agents and manage their lifecycle and keys."""


@agents_group.command("register")
@click.argument("name")
@scope_option(False, "A scope the agent may ask for: resource:action[:constraint] or plain (read).")
@click.option("--description", default="", help="What the agent does (shown on consent screens).")
@click.option("--redirect-uri", "redirect_uris", multiple=True, metavar="URL",
              help="A redirect URI the agent may use. Repeat for several.")
@developer_option
@json_option
@with_ledger
def agents_register(ledger: Ledger, name: str, scopes: tuple[str, ...], description: str,
                    redirect_uris: tuple[str, ...], developer_id: str | None, as_json: bool) -> None:
    """Register an agent NAME with its own key pair and DID."""
    from .. import agents

    agent = agents.register(ledger, developer_or_default(ledger, developer_id), name=name,
                            scopes=list(scopes), description=description, redirect_uris=list(redirect_uris))
    emit(as_json, agent.to_dict(), lambda: echo_fields(_agent_fields(agent)))


@agents_group.command("list")
@click.option("--status", type=LibraryChoice(lambda: library("agents").STATUSES), default=None,
              help="Only agents in this status (default: all but deleted).")
@click.option("--developer", "developer_id", metavar="DEV_ID", default=None,
              help="Only this developer's agents (default: every developer in the file).")
@json_option
@with_ledger
def agents_list(ledger: Ledger, status: str | None, developer_id: str | None, as_json: bool) -> None:
    """List agents."""
    from .. import agents

    found = agents.list_agents(ledger, developer_id, status=status)
    emit(as_json, {"agents": [a.to_dict() for a in found]}, lambda: echo_table(
        ["ID", "NAME", "STATUS", "DEVELOPER", "SCOPES"],
        [[a.id, a.name, a.status, a.developer_id, a.scopes] for a in found], "no agents"))


@agents_group.command("show")
@click.argument("agent_id")
@json_option
@with_ledger
def agents_show(ledger: Ledger, agent_id: str, as_json: bool) -> None:
    """Show agent AGENT_ID."""
    from .. import agents

    agent = agents.get(ledger, None, agent_id)
    emit(as_json, agent.to_dict(), lambda: echo_fields(_agent_fields(agent)))


@agents_group.command("update")
@click.argument("agent_id")
@click.option("--name", default=None, help="New name.")
@click.option("--description", default=None, help="New description.")
@scope_option(False, "Replace the agent's scopes with these.")
@click.option("--redirect-uri", "redirect_uris", multiple=True, metavar="URL",
              help="Replace the agent's redirect URIs with these. Repeat for several.")
@json_option
@with_ledger
def agents_update(ledger: Ledger, agent_id: str, name: str | None, description: str | None,
                  scopes: tuple[str, ...], redirect_uris: tuple[str, ...], as_json: bool) -> None:
    """Change an agent's name, description, scopes or redirect URIs."""
    from .. import agents

    agent = agents.update(ledger, None, agent_id, name=name, description=description,
                          scopes=list(scopes) or None, redirect_uris=list(redirect_uris) or None)
    emit(as_json, agent.to_dict(), lambda: echo_fields(_agent_fields(agent)))


@agents_group.command("suspend")
@click.argument("agent_id")
@with_ledger
def agents_suspend(ledger: Ledger, agent_id: str) -> None:
    """Suspend an agent: its tokens, and those delegated from it, stop verifying at once."""
    from .. import agents

    agent = agents.suspend(ledger, None, agent_id)
    click.echo(f"agent {agent.id} ({agent.name}) is {agent.status}")


@agents_group.command("reactivate")
@click.argument("agent_id")
@with_ledger
def agents_reactivate(ledger: Ledger, agent_id: str) -> None:
    """Reactivate a suspended agent: its unexpired, unrevoked tokens verify again."""
    from .. import agents

    agent = agents.reactivate(ledger, None, agent_id)
    click.echo(f"agent {agent.id} ({agent.name}) is {agent.status}")


@agents_group.command("delete")
@click.argument("agent_id")
@yes_option
@with_ledger
def agents_delete(ledger: Ledger, agent_id: str, yes: bool) -> None:
    """Delete an agent for good (a tombstone: grants and history keep their references)."""
    from .. import agents

    agent = agents.get(ledger, None, agent_id)
    confirm(f"delete agent {agent.id} ({agent.name}) for good", yes)
    agents.delete(ledger, None, agent_id)
    click.echo(f"agent {agent.id} ({agent.name}) deleted")


@agents_group.command("rotate-key")
@click.argument("agent_id")
@json_option
@with_ledger
def agents_rotate_key(ledger: Ledger, agent_id: str, as_json: bool) -> None:
    """Give an agent a new key pair; its DID stays the same."""
    from .. import agents

    agent = agents.rotate_key(ledger, None, agent_id)
    emit(as_json, agent.to_dict(), lambda: click.echo(f"agent {agent.id} key is now {agent.key_thumbprint}"))


@agents_group.command("did")
@click.argument("agent_id")
@with_ledger
def agents_did(ledger: Ledger, agent_id: str) -> None:
    """Print an agent's DID document (JSON)."""
    from .. import agents

    echo_json(agents.did_document(ledger, None, agent_id))
