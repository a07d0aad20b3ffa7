"""``authorize`` and ``consent``: start authorization requests and decide them as the local human."""

from __future__ import annotations

from typing import TYPE_CHECKING

import click

from ..models import AuthorizationRequest, ConsentDecision
from . import (
    GrantexGroup,
    LibraryChoice,
    developer_of_agent,
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


def _request_fields(request: AuthorizationRequest) -> list[tuple[str, object]]:
    how = None
    if request.policy_enforced:
        how = f"approved by policy {request.policy_id}"
    elif request.sandbox:
        how = "approved at once (sandbox developer)"
    return [("request", request.request_id), ("status", request.status), ("decided", how),
            ("agent", request.agent_id), ("principal", request.principal_id),
            ("developer", request.developer_id), ("scopes", request.scopes),
            ("grant lifetime", request.expires_in), ("request expires", request.expires_at),
            ("consent url", request.consent_url), ("redirect uri", request.redirect_uri),
            ("state", request.state), ("audience", request.audience), ("code", request.code)]


def _echo_request(request: AuthorizationRequest, as_json: bool) -> None:
    def human() -> None:
        echo_fields(_request_fields(request))
        if request.code is not None:
            click.echo(f"next: grantex-local tokens exchange --agent {request.agent_id} --code CODE",
                       err=True)
        elif request.status == "pending":
            click.echo(f"next: grantex-local consent approve {request.request_id}", err=True)

    emit(as_json, request.to_dict(), human)


@click.command()
@click.option("--agent", "agent_id", required=True, metavar="AGENT_ID", help="The agent asking.")
@click.option("--principal", required=True, metavar="USER", help="The human the agent will act for.")
@scope_option(True, "A scope the agent asks for.")
@click.option("--expires-in", default=None, metavar="DURATION",
              help="Grant lifetime, e.g. 1h (default 24h, at most the ledger's max_expires_in).")
@click.option("--redirect-uri", default=None, metavar="URL", help="Where the consent page sends the code.")
@click.option("--state", default=None, help="Opaque value echoed back with the code.")
@click.option("--audience", default=None, help="The 'aud' the grant's tokens will carry.")
@click.option("--code-challenge", default=None,
              help="PKCE S256 challenge: base64url SHA-256 of the code verifier (43 characters).")
@json_option
@with_ledger
def authorize(ledger: Ledger, agent_id: str, principal: str, scopes: tuple[str, ...],
              expires_in: str | None, redirect_uri: str | None, state: str | None,
              audience: str | None, code_challenge: str | None, as_json: bool) -> None:
    """Start an authorization request (policies, then sandbox, else it waits for consent)."""
    from .. import authorization

    request = authorization.authorize(
        ledger, developer_of_agent(ledger, agent_id), agent_id=agent_id, principal_id=principal,
        scopes=list(scopes), expires_in=expires_in, redirect_uri=redirect_uri, state=state,
        audience=audience, code_challenge=code_challenge,
    )
    _echo_request(request, as_json)


@click.group(cls=GrantexGroup)
def consent() -> None:
    """Decide authorization requests as the local human, for any developer in the file."""


@consent.command("list")
@click.option("--status", type=LibraryChoice(lambda: [*library("authorization").STATUSES, "all"]),
              default="pending", show_default=True, help="Which requests to list.")
@json_option
@with_ledger
def consent_list(ledger: Ledger, status: str, as_json: bool) -> None:
    """List authorization requests (by default those waiting for a decision), each waiting one
    with the approval code that decides it on the consent page."""
    from .. import approval, authorization

    found = authorization.list_requests(ledger, None, status=None if status == "all" else status)
    codes = {r.request_id: approval.approval_code(ledger, r.request_id)
             for r in found if r.status == "pending"}
    rows = [dict(r.to_dict(), **({"approvalCode": codes[r.request_id]} if r.request_id in codes else {}))
            for r in found]
    emit(as_json, {"requests": rows}, lambda: echo_table(
        ["ID", "STATUS", "AGENT", "PRINCIPAL", "DEVELOPER", "SCOPES", "EXPIRES", "APPROVAL CODE"],
        [[r.request_id, r.status, r.agent_id, r.principal_id, r.developer_id, r.scopes, r.expires_at,
          codes.get(r.request_id)] for r in found],
        f"no {status} requests" if status != "all" else "no requests"))


@consent.command("show")
@click.argument("request_id")
@json_option
@with_ledger
def consent_show(ledger: Ledger, request_id: str, as_json: bool) -> None:
    """Show what a consent screen shows for REQUEST_ID: who asks, for whom, and what; while it
    waits, also the approval code that decides it on the consent page (only you see it)."""
    from .. import approval, authorization

    details = authorization.consent_details(ledger, request_id, None)
    pending = details["request"]["status"] == "pending"
    if pending:
        details["approvalCode"] = approval.approval_code(ledger, request_id)

    def human() -> None:
        request, agent, dev = details["request"], details["agent"], details["developer"]
        echo_fields([
            ("request", f"{request['authRequestId']} ({request['status']})"),
            ("agent", f"{agent['name']} ({agent['id']}, {agent['status']})"),
            ("agent did", agent["did"]), ("description", agent["description"] or None),
            ("developer", f"{dev['name']} ({dev['id']})"), ("principal", request["principalId"]),
            ("grant lifetime", details["grantExpiresIn"]),
            ("request expires", details["requestExpiresAt"]),
        ])
        click.echo("asks to:")
        for item in details["scopes"]:
            click.echo(f"  - {item['description']}  ({item['scope']})")
        if pending:
            code = details["approvalCode"]
            echo_fields([("approval code", code),
                         ("consent page", f"{request['consentUrl']}#approval={code}")])

    emit(as_json, details, human)


def _echo_decision(decision: ConsentDecision, as_json: bool) -> None:
    emit(as_json, decision.to_dict(), lambda: echo_fields(
        [("request", decision.request_id), ("status", decision.status), ("code", decision.code),
         ("redirect uri", decision.redirect_uri), ("state", decision.state)]))


@consent.command("approve")
@click.argument("request_id")
@click.option("--decided-by", default=None, metavar="NAME",
              help="Who approves (recorded; default: your operating-system user name).")
@json_option
@with_ledger
def consent_approve(ledger: Ledger, request_id: str, decided_by: str | None, as_json: bool) -> None:
    """Approve REQUEST_ID and print its single-use code (valid 10 minutes)."""
    from .. import authorization

    _echo_decision(authorization.approve(ledger, request_id, decided_by=decided_by or authorization.os_user(),
                                         channel="cli"), as_json)


@consent.command("deny")
@click.argument("request_id")
@click.option("--decided-by", default=None, metavar="NAME",
              help="Who denies (recorded; default: your operating-system user name).")
@json_option
@with_ledger
def consent_deny(ledger: Ledger, request_id: str, decided_by: str | None, as_json: bool) -> None:
    """Deny REQUEST_ID (no code is issued)."""
    from .. import authorization

    _echo_decision(authorization.deny(ledger, request_id, decided_by=decided_by or authorization.os_user(),
                                      channel="cli"), as_json)
