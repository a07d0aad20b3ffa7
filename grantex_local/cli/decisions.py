"""``decisions``: list and show decision requests, approve one as a named person, cancel one.

Whoever runs the CLI holds the ledger file, so approving here needs no approval code (the code
is for the web page, which the agent can open too). The approver's dwell time is measured by
this process from the moment it printed the request to the moment the approval is confirmed
(with ``--yes`` there is no prompt, so the dwell is the time to print and sign: near zero, and
the decision grant says so honestly).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import click

from . import (
    GrantexGroup,
    developer_option,
    echo_fields,
    echo_table,
    emit,
    json_option,
    with_ledger,
)

if TYPE_CHECKING:
    from ..decisions import DecisionRequest
    from ..founding import Ledger


@click.group("decisions", cls=GrantexGroup)
def decisions_group() -> None:
    """Decision requests: a person approves one specific high-risk action of an agent."""


_HEADERS = ["ID", "STATUS", "TOOL", "DECISION", "CASE", "SUBJECT", "AMOUNT", "APPROVALS", "CREATED"]


def _row(r: DecisionRequest) -> list[object]:
    return [r.id, r.status, r.action["action"], r.action["decision"], r.case_id, r.action["subject"],
            r.action.get("amount", ""), f"{len(r.approvals)}/{r.approvals_required}", r.created_at]


def _fields(ledger: Ledger, r: DecisionRequest) -> list[tuple[str, object]]:
    from ..approval import approval_code

    pairs: list[tuple[str, object]] = [
        ("id", r.id), ("status", r.status), ("tool", r.action["action"]), ("decision", r.action["decision"]),
        ("case", f"{r.case_id} (version {r.case_version})"), ("subject", r.action["subject"]),
        ("amount", r.action.get("amount")), ("connector", r.connector)]
    pairs += [(f"extra.{k}", v) for k, v in sorted(r.action.get("extra", {}).items())]
    pairs += [("memo", r.memo), ("policy score", r.policy_score),
              ("approvals", f"{len(r.approvals)} of {r.approvals_required}"
               + (f" ({', '.join(a.approver for a in r.approvals)})" if r.approvals else "")),
              ("agent", r.agent_id), ("expires", r.expires_at)]
    if r.status == "pending":
        code = approval_code(ledger, r.id)
        pairs += [("approval code", code), ("page", f"{r.approval_page}#approval={code}")]
    return pairs


@decisions_group.command("list")
@click.option("--open", "only_open", is_flag=True, help="Only requests still waiting for an approval.")
@developer_option
@json_option
@with_ledger
def decisions_list(ledger: Ledger, only_open: bool, developer_id: str | None, as_json: bool) -> None:
    """Decision requests, newest first (of every developer in the file unless --developer)."""
    from .. import decisions

    found = decisions.list_requests(ledger, developer_id, open_only=only_open)
    emit(as_json, {"requests": [r.to_dict(with_grants=False) for r in found], "total": len(found)},
         lambda: echo_table(_HEADERS, [_row(r) for r in found], "no decision requests"))


@decisions_group.command("show")
@click.argument("request_id")
@json_option
@with_ledger
def decisions_show(ledger: Ledger, request_id: str, as_json: bool) -> None:
    """One request: the action, memo, policy score, approvals, and (while pending) the approval
    code for its web page."""
    from .. import decisions

    found = decisions.get_request(ledger, None, request_id)
    emit(as_json, found.to_dict(with_grants=False), lambda: echo_fields(_fields(ledger, found)))


@decisions_group.command("approve")
@click.argument("request_id")
@click.option("--approver", default=None, help="Who approves (default: 'local human'). Four eyes needs "
              "two different names.")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation (the dwell time is then near zero).")
@json_option
@with_ledger
def decisions_approve(ledger: Ledger, request_id: str, approver: str | None, yes: bool,
                      as_json: bool) -> None:
    """Approve REQUEST_ID as --approver and mint their decision grant (shown to the requester,
    never printed here)."""
    from .. import decisions
    from ..approval import LOCAL_HUMAN
    from . import CliError

    found = decisions.get_request(ledger, None, request_id)
    if found.status != "pending":
        raise CliError(f"decision request {request_id} is {found.status}: there is nothing to approve")
    shown_at = ledger.now()
    if not as_json:
        echo_fields([p for p in _fields(ledger, found) if p[0] not in ("approval code", "page")])
    if not yes and not click.confirm("Approve this decision?", default=False, err=as_json):
        raise CliError("not approved")
    done = decisions.approve(ledger, request_id, approver=approver or LOCAL_HUMAN, channel="cli",
                             shown_at=shown_at)
    data: dict[str, Any] = {"requestId": request_id, "jti": done.jti, "approver": done.approver,
                            "position": done.position, "approvalsRequired": done.request.approvals_required,
                            "dwellMs": done.dwell_ms, "status": done.request.status}
    emit(as_json, data, lambda: click.echo(
        f"approved by {done.approver} ({done.position} of {done.request.approvals_required}), "
        f"decision grant {done.jti}; request is {done.request.status}"))


@decisions_group.command("cancel")
@click.argument("request_id")
@developer_option
@json_option
@with_ledger
def decisions_cancel(ledger: Ledger, request_id: str, developer_id: str | None, as_json: bool) -> None:
    """Cancel REQUEST_ID; its unconsumed decision grants are revoked."""
    from .. import decisions

    found = decisions.cancel_request(ledger, developer_id, request_id, by="cli")
    emit(as_json, found.to_dict(with_grants=False), lambda: click.echo(f"{found.id} {found.status}"))

