"""``policies``: the rules applied at authorize."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import click

from ..models import CreatePolicyParams, Policy, UpdatePolicyParams
from . import (
    F,
    GrantexGroup,
    LibraryChoice,
    developer_option,
    developer_or_default,
    echo_fields,
    echo_table,
    emit,
    json_option,
    library,
    scope_option,
    with_ledger,
)

if TYPE_CHECKING:
    from ..founding import Ledger


def _format_window(window: dict[str, Any] | None) -> str | None:
    if not window:
        return None
    text = (f"{window['startHour']:02d}:{window.get('startMinute', 0):02d}-"
            f"{window['endHour']:02d}:{window.get('endMinute', 0):02d} {window.get('tz', 'UTC')}")
    if window.get("days"):
        text += " days " + ",".join(str(d) for d in window["days"])
    return text


def _policy_conditions(policy: Policy) -> list[object]:
    """Agent, principal, scopes and time window, with "any" where the rule does not look."""
    return [policy.agent_id or "any", policy.principal_id or "any",
            policy.scopes if policy.scopes is not None else "any",
            _format_window(policy.time_window) or "any time"]


def _policy_fields(policy: Policy) -> list[tuple[str, object]]:
    conditions = zip(("agent", "principal", "scopes", "time window"), _policy_conditions(policy),
                     strict=True)
    return [("id", policy.id), ("name", policy.name), ("effect", policy.effect),
            ("priority", policy.priority), *conditions, ("developer", policy.developer_id),
            ("created", policy.created_at), ("updated", policy.updated_at)]


@click.group("policies", cls=GrantexGroup)
def policies_group() -> None:
    """Rules applied at authorize: deny first, then allow, by priority."""


def _parse_days(days: str | None) -> list[int] | None:
    if days is None:
        return None
    try:
        return [int(d) for d in days.split(",")]
    except ValueError:
        raise click.BadParameter("use ISO weekdays separated by commas, e.g. 1,2,3,4,5",
                                 param_hint="--days") from None


def _policy_fields_from_options(options: dict[str, Any]) -> dict[str, Any]:
    """The library's policy parameters from the command's options (None means 'not given')."""
    hours = (options["start_hour"], options["end_hour"], options["days"], options["tz"])
    window = None
    if any(v is not None for v in hours):
        window = {k: v for k, v in (("startHour", options["start_hour"]),
                                    ("endHour", options["end_hour"]),
                                    ("days", _parse_days(options["days"])), ("tz", options["tz"]))
                  if v is not None}
    return {"effect": options["effect"], "priority": options["priority"],
            "agent_id": options["agent_id"], "principal_id": options["principal"],
            "scopes": list(options["scopes"]) or None, "time_of_day_start": options["time_start"],
            "time_of_day_end": options["time_end"], "time_window": window}


def policy_options(fn: F) -> F:
    """The condition and effect options shared by create and update."""
    decorators = [
        click.option("--effect", type=LibraryChoice(lambda: sorted(library("policies").EFFECTS)),
                     default=None, help="What a match does (auto_approve = allow, auto_deny = deny)."),
        click.option("--priority", type=int, default=None,
                     help="Higher runs first within denies and within allows (default 0)."),
        click.option("--agent", "agent_id", default=None, metavar="AGENT_ID",
                     help="Only requests from this agent (default any)."),
        click.option("--principal", default=None, metavar="USER",
                     help="Only requests for this principal (default any)."),
        scope_option(False, "Allow: every requested scope must be listed; deny: any listed one matches."),
        click.option("--time-start", default=None, metavar="HH:MM", help="Window start, UTC."),
        click.option("--time-end", default=None, metavar="HH:MM",
                     help="Window end, UTC (may wrap midnight)."),
        click.option("--start-hour", type=int, default=None, help="Window start hour 0-23 (with --tz)."),
        click.option("--end-hour", type=int, default=None, help="Window end hour 0-23 (with --tz)."),
        click.option("--days", default=None, metavar="1,2,..",
                     help="ISO weekdays the window applies on (1 = Monday)."),
        click.option("--tz", default=None,
                     help="Time zone of the hour window, e.g. Europe/Paris (default UTC)."),
    ]
    for decorator in reversed(decorators):
        fn = decorator(fn)
    return fn


@policies_group.command("create")
@click.argument("name")
@policy_options
@developer_option
@json_option
@with_ledger
def policies_create(ledger: Ledger, name: str, developer_id: str | None, as_json: bool,
                    **options: Any) -> None:
    """Create a policy NAME (--effect is required)."""
    from .. import policies

    fields = _policy_fields_from_options(options)
    if fields["effect"] is None:
        raise click.BadParameter("an effect is required", param_hint="--effect")
    fields["priority"] = fields["priority"] or 0
    params = CreatePolicyParams(name=name, **fields)
    policy = policies.create(ledger, developer_or_default(ledger, developer_id), params)
    emit(as_json, policy.to_dict(), lambda: echo_fields(_policy_fields(policy)))


@policies_group.command("list")
@developer_option
@json_option
@with_ledger
def policies_list(ledger: Ledger, developer_id: str | None, as_json: bool) -> None:
    """List policies in evaluation order (denies first)."""
    from .. import policies

    found = policies.list_policies(ledger, developer_or_default(ledger, developer_id))
    emit(as_json, {"policies": [p.to_dict() for p in found], "total": len(found)}, lambda: echo_table(
        ["ID", "EFFECT", "PRIORITY", "NAME", "AGENT", "PRINCIPAL", "SCOPES", "WINDOW"],
        [[p.id, p.effect, p.priority, p.name, *_policy_conditions(p)] for p in found], "no policies"))


@policies_group.command("show")
@click.argument("policy_id")
@developer_option
@json_option
@with_ledger
def policies_show(ledger: Ledger, policy_id: str, developer_id: str | None, as_json: bool) -> None:
    """Show policy POLICY_ID."""
    from .. import policies

    policy = policies.get(ledger, developer_or_default(ledger, developer_id), policy_id)
    emit(as_json, policy.to_dict(), lambda: echo_fields(_policy_fields(policy)))


@policies_group.command("update")
@click.argument("policy_id")
@click.option("--name", default=None, help="New name.")
@policy_options
@developer_option
@json_option
@with_ledger
def policies_update(ledger: Ledger, policy_id: str, name: str | None, developer_id: str | None,
                    as_json: bool, **options: Any) -> None:
    """Change the options given on POLICY_ID; the others stay as they are."""
    from .. import policies

    params = UpdatePolicyParams(name=name, **_policy_fields_from_options(options))
    policy = policies.update(ledger, developer_or_default(ledger, developer_id), policy_id, params)
    emit(as_json, policy.to_dict(), lambda: echo_fields(_policy_fields(policy)))


@policies_group.command("delete")
@click.argument("policy_id")
@developer_option
@with_ledger
def policies_delete(ledger: Ledger, policy_id: str, developer_id: str | None) -> None:
    """Delete policy POLICY_ID."""
    from .. import policies

    policies.delete(ledger, developer_or_default(ledger, developer_id), policy_id)
    click.echo(f"policy {policy_id} deleted")
