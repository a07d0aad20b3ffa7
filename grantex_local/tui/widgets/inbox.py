"""The consent inbox: requests waiting for a human, and everything the spec says a consent screen shows.

PROTOCOL §5 step 4: a human approves or denies "on the consent page, in the
TUI, or with the CLI". The detail pane shows the agent (name, description,
DID), the developer asking, every scope with its description, how long the
access would last and when the request itself expires, all from the library's
``consent_details``. It also shows the request's approval code: the consent page decides only
with it (or the principal's own session), and only someone holding the ledger file, like the
person at this TUI, can see it. Deciding here needs no code: the TUI holds the file.

Decision requests (issue 13: a person approves one specific high-risk action) are listed below
the consent requests in the same table; their detail shows the action, memo and policy score.
The approver's dwell time runs from the moment the detail was shown here to the approval.
"""

from __future__ import annotations

from typing import Any, ClassVar

from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical, VerticalScroll
from textual.widgets import DataTable, Static

from ..data import DecisionRow, RequestRow, TuiData
from ..format import relative, short_id, shown, when
from ..jobs import db_job
from .tree import MOVE


class RequestTable(DataTable[Any]):
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("j", "cursor_down", "Down", group=MOVE),
        Binding("k", "cursor_up", "Up", group=MOVE),
    ]


def render_consent(details: dict[str, Any], now: float) -> RenderableType:
    request, agent, developer = details["request"], details["agent"], details["developer"]
    head = Text(shown(agent["name"]), style="bold")
    head.append(" wants access for ")
    head.append(shown(request["principalId"]), style="bold")
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="bold", no_wrap=True)
    grid.add_column(overflow="fold")
    grid.add_row("Agent", f"{shown(agent['name'])}  {agent['did']}")
    if agent.get("description"):
        grid.add_row("", Text(shown(agent["description"]), style="italic"))
    if agent.get("status") != "active":
        grid.add_row("", Text(f"agent is {agent['status']}: approving will be refused", style="bold magenta"))
    grid.add_row("Developer", f"{shown(developer['name'])}  ({developer['id']})")
    grid.add_row("Principal", shown(request["principalId"]))
    grid.add_row("Access lasts", f"{details['grantExpiresIn']} from when the agent exchanges the code")
    grid.add_row("Request expires", when(details["requestExpiresAt"], now))
    if request.get("redirectUri"):
        grid.add_row("Redirect", request["redirectUri"])
    grid.add_row("Request", request["authRequestId"])
    if details.get("approvalCode"):
        grid.add_row("Approval code", Text(details["approvalCode"], style="bold reverse"))
        grid.add_row("Consent page", f"{request['consentUrl']}#approval={details['approvalCode']}")
    scopes = Table.grid(padding=(0, 2))
    scopes.add_column(style="cyan", no_wrap=True)
    scopes.add_column(overflow="fold")
    for item in details["scopes"]:
        scopes.add_row(item["scope"], item["description"])
    return Group(head, grid, Text(f"\nIt asks to ({len(details['scopes'])} scopes):", style="bold"), scopes)


def render_decision(details: dict[str, Any], now: float) -> RenderableType:
    act = details["action"]
    head = Text("Decision: ", style="bold")
    head.append(f"{shown(act['decision'])} on case {shown(act['case_id'])}", style="bold")
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="bold", no_wrap=True)
    grid.add_column(overflow="fold")
    grid.add_row("Action (tool)", f"{shown(act['action'])} on {shown(details['connector'])}")
    grid.add_row("Subject", shown(act["subject"]))
    if "amount" in act:
        grid.add_row("Amount", shown(str(act["amount"])))
    for name, value in sorted(act.get("extra", {}).items()):
        grid.add_row(shown(name), shown(str(value)))
    grid.add_row("Case version", shown(details["caseVersion"]))
    grid.add_row("Memo", shown(details["memo"]["content"]))
    grid.add_row("Policy score", shown(str(details["policyScore"]["content"])))
    approvals = details["approvals"]
    grid.add_row("Approvals", f"{len(approvals)} of {details['approvalsRequired']}"
                 + (f" ({', '.join(shown(a['approver']) for a in approvals)})" if approvals else ""))
    grid.add_row("Request expires", when(details["expiresAt"], now))
    grid.add_row("Request", details["id"])
    if details.get("approvalCode"):
        grid.add_row("Approval code", Text(details["approvalCode"], style="bold reverse"))
        grid.add_row("Approval page", f"{details['approvalPage']}#approval={details['approvalCode']}")
    return Group(head, grid)


class ConsentInbox(Vertical):
    """Pending requests (every developer) above the consent detail of the highlighted one."""

    def __init__(self, data: TuiData, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.data_source = data
        self.rows: tuple[RequestRow, ...] = ()
        self.decisions: tuple[DecisionRow, ...] = ()
        self.details: dict[str, Any] | None = None
        self.decision_details: dict[str, Any] | None = None
        self.loaded_once = False

    def compose(self) -> ComposeResult:
        table = RequestTable(id="requests", cursor_type="row", zebra_stripes=True)
        table.border_title = "Waiting for your decision"
        yield table
        with VerticalScroll(id="consent-detail"):
            yield Static(Text("No request selected.", style="dim"), id="consent-body")

    def on_mount(self) -> None:
        table = self.query_one(RequestTable)
        for label, key in (("Agent", "agent"), ("Developer", "developer"), ("Principal", "principal"),
                           ("Scopes", "scopes"), ("Lasts", "lasts"), ("Request expires", "expires"),
                           ("Request", "id")):
            table.add_column(label, key=key)

    @property
    def selected(self) -> RequestRow | None:
        table = self.query_one(RequestTable)
        if not self.rows or table.cursor_row < 0 or table.cursor_row >= len(self.rows):
            return None
        return self.rows[table.cursor_row]

    @property
    def selected_decision(self) -> DecisionRow | None:
        """The highlighted decision request (they follow the consent requests in the table)."""
        index = self.query_one(RequestTable).cursor_row - len(self.rows)
        return self.decisions[index] if 0 <= index < len(self.decisions) else None

    def reload(self) -> None:
        def both() -> tuple[tuple[RequestRow, ...], tuple[DecisionRow, ...]]:
            return self.data_source.pending_requests(), self.data_source.pending_decisions()

        db_job(self, both, self._show, group="inbox", exclusive=True)

    def _show(self, found: tuple[tuple[RequestRow, ...], tuple[DecisionRow, ...]]) -> None:
        rows, pending_decisions = found
        table = self.query_one(RequestTable)
        keep = (self.selected.request.request_id if self.selected
                else self.selected_decision.request_id if self.selected_decision else None)
        self.rows, self.decisions = rows, pending_decisions
        table.clear()
        now = self.data_source.now()
        for r in rows:
            q = r.request
            table.add_row(shown(r.agent_name), shown(r.developer_name), shown(q.principal_id),
                          str(len(q.scopes)), q.expires_in,
                          relative(q.expires_at, now), short_id(q.request_id), key=q.request_id)
        for d in pending_decisions:
            table.add_row(shown(d.agent_name) or "-", shown(d.developer_name), "decision",
                          shown(f"{d.tool}: {d.decision}"), d.approvals, relative(d.expires_at, now),
                          short_id(d.request_id), key=d.request_id)
        total = len(rows) + len(pending_decisions)
        table.border_title = f"Waiting for your decision ({total})"
        self.loaded_once = True
        keys = [r.request.request_id for r in rows] + [d.request_id for d in pending_decisions]
        index = keys.index(keep) if keep in keys else 0
        if keys:
            table.move_cursor(row=index)
            self._load_details(keys[index])
        else:
            self.details = self.decision_details = None
            self.query_one("#consent-body", Static).update(
                Text("No request is waiting. Requests from non-sandbox developers appear here.",
                     style="dim"))

    def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        event.stop()
        if event.row_key.value is not None:
            self._load_details(str(event.row_key.value))

    def _load_details(self, request_id: str) -> None:
        if request_id.startswith("dreq_"):
            db_job(self, lambda: self.data_source.decision_details(request_id), self._show_decision,
                   group="consent", exclusive=True)
            return
        db_job(self, lambda: self.data_source.consent_details(request_id), self._show_details,
               group="consent", exclusive=True)

    def _show_details(self, details: dict[str, Any]) -> None:
        self.details, self.decision_details = details, None
        self.query_one("#consent-body", Static).update(render_consent(details, self.data_source.now()))

    def _show_decision(self, details: dict[str, Any]) -> None:
        self.decision_details, self.details = details, None
        self.query_one("#consent-body", Static).update(render_decision(details, self.data_source.now()))
