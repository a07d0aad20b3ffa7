"""The main screen: three views (grants, consent inbox, audit trail) and every action on them.

Actions are methods here so that a key, the command palette and a test all
run the same code. Which keys apply depends on the view in front (the footer
shows only those), and in auditor mode every action that would write is
shown disabled and refuses to run.
"""

from __future__ import annotations

from typing import Any, ClassVar

from rich.console import Group
from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal
from textual.screen import Screen
from textual.widgets import Footer, Header, TabbedContent, TabPane, Tree

from ..data import (
    AgentImpact,
    AuditFilter,
    BlastRadius,
    ChainState,
    GrantDetail,
    GrantNode,
    TokenInfo,
    TreeFilter,
    TuiData,
)
from ..format import FilterError, describe_filter, parse_filter, plural, short_id, shown
from ..host import GrantexHost
from ..jobs import db_job
from ..widgets import AuditView, ConsentInbox, DelegationTree, GrantDetailView, OverviewBar
from ..widgets.audit import AUDIT_KEYS
from ..widgets.filter_input import FilterInput
from ..widgets.inbox import render_consent, render_decision
from ..widgets.tree import NodeData
from .code import CodeScreen
from .confirm import ConfirmScreen, RevokeTokenScreen
from .revoke import RevokeGrantScreen

TREE_KEYS = ("principal", "agent", "status", "scope", "id")
TABS = ("grants", "inbox", "audit")
MAIN_WIDGET = {"grants": "#tree", "inbox": "#requests", "audit": "#audit-table"}

ACTION_TABS: dict[str, tuple[str, ...]] = {
    "find": ("grants",),
    "filter": ("grants", "audit"),
    "clear_filter": ("grants", "audit"),
    "revoke_grant": ("grants",),
    "revoke_token": ("grants",),
    "suspend_agent": ("grants",),
    "reactivate_agent": ("grants",),
    "approve": ("inbox",),
    "deny": ("inbox",),
    "checkpoint": ("audit",),
    "verify": ("audit",),
}
"""The views an action belongs to: elsewhere its key is hidden from the footer and does nothing."""

WRITE_ACTIONS = frozenset({"revoke_grant", "revoke_token", "suspend_agent", "reactivate_agent", "approve",
                           "deny", "checkpoint"})


class MainScreen(Screen[None]):
    AUTO_FOCUS = "#tree"
    BINDINGS: ClassVar[list[BindingType]] = [
        # Help and quit first: on a narrow terminal the footer is cut on the right.
        Binding("question_mark", "app.help", "Help"),
        Binding("q", "app.quit", "Quit"),
        # The tab titles show 1, 2, 3: the footer keeps its room for the actions.
        Binding("1", "show_tab('grants')", "Grants", show=False),
        Binding("2", "show_tab('inbox')", "Inbox", show=False),
        Binding("3", "show_tab('audit')", "Audit", show=False),
        Binding("slash", "find", "Find"),
        Binding("f", "filter", "Filter"),
        Binding("r", "revoke_grant", "Revoke"),
        Binding("t", "revoke_token", "Revoke token"),
        Binding("s", "suspend_agent", "Suspend"),
        Binding("u", "reactivate_agent", "Reactivate"),
        Binding("a", "approve", "Approve"),
        Binding("d", "deny", "Deny"),
        Binding("w", "checkpoint", "Checkpoint"),
        Binding("v", "verify", "Verify"),
        Binding("escape", "clear_filter", "Clear filter", show=False),
    ]

    def __init__(self, data: TuiData, *, expand_limit: int = 300) -> None:
        super().__init__()
        self.data = data
        self.expand_limit = expand_limit
        self.detail: GrantDetail | None = None

    @property
    def gx_app(self) -> GrantexHost:
        """The app this screen runs in, as far as the screen uses it (see :mod:`..host`)."""
        assert isinstance(self.app, GrantexHost)
        return self.app

    # ── layout ───────────────────────────────────────────────────────────

    def compose(self) -> ComposeResult:
        yield Header(icon="⛨")
        yield OverviewBar(read_only=self.data.read_only, id="overview")
        with TabbedContent(initial="grants", id="views"):
            with TabPane("1 Grants", id="grants"):
                yield FilterInput(placeholder="find a grant id, or filter: principal= agent= status= scope= "
                                              "(enter applies, esc leaves)", target="#tree", id="tree-filter")
                with Horizontal(id="grants-body"):
                    tree = DelegationTree(self.data, expand_limit=self.expand_limit, id="tree")
                    tree.border_title = "Delegation trees"
                    yield tree
                    yield GrantDetailView(id="detail")
            with TabPane("2 Consent inbox", id="inbox"):
                yield ConsentInbox(self.data, id="inbox-view")
            with TabPane("3 Audit trail", id="audit"):
                yield AuditView(self.data, id="audit-view")
        yield Footer()

    def on_mount(self) -> None:
        self.query_one("#detail", GrantDetailView).border_title = "Detail"
        self.query_one(OverviewBar).show(self.gx_app.overview, self.gx_app.chain_state)
        self.query_one(DelegationTree).load()
        self.query_one(ConsentInbox).reload()
        self.query_one(AuditView).reload()

    # ── helpers ──────────────────────────────────────────────────────────

    @property
    def tree(self) -> DelegationTree:  # type: ignore[override]  # Textual's DOMNode.tree is a debug view
        return self.query_one(DelegationTree)

    @property
    def inbox(self) -> ConsentInbox:
        return self.query_one(ConsentInbox)

    @property
    def audit(self) -> AuditView:
        return self.query_one(AuditView)

    @property
    def active_tab(self) -> str:
        return self.query_one(TabbedContent).active or "grants"

    def reload_views(self) -> None:
        """The file changed: re-read every view, keeping selections."""
        self.tree.reload()
        self._load_detail()
        self.inbox.reload()
        self.audit.reload()

    def show_overview(self, overview: Any) -> None:
        self.query_one(OverviewBar).show(overview=overview)

    def show_chain(self, state: ChainState | None) -> None:
        self.query_one(OverviewBar).show(chain=state)
        self.audit.show_chain(state)

    def _selected_grant(self) -> GrantNode | None:
        grant = self.tree.cursor_grant
        if grant is None:
            self.notify("Select a grant in the tree first.", severity="warning")
        return grant

    def _wrote(self, message: str) -> None:
        self.notify(message, title="Done", timeout=6)
        self.gx_app.poll_now()

    # ── which keys apply ─────────────────────────────────────────────────

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        tabs = ACTION_TABS.get(action)
        if tabs is not None and self.active_tab not in tabs:
            return False
        if action in WRITE_ACTIONS and self.data.read_only:
            return None
        return True

    @on(TabbedContent.TabActivated)
    def _tab_changed(self, event: TabbedContent.TabActivated) -> None:
        self.refresh_bindings()
        tab = event.pane.id or "grants"
        if tab in MAIN_WIDGET:
            self.query_one(MAIN_WIDGET[tab]).focus()

    def action_show_tab(self, tab: str) -> None:
        if tab in TABS:
            self.query_one(TabbedContent).active = tab
            self.query_one(MAIN_WIDGET[tab]).focus()
            self.refresh_bindings()

    # ── the grant tree and its detail ────────────────────────────────────

    @on(DelegationTree.FirstLoad)
    def _first_load(self) -> None:
        self.gx_app.start_background_checks()

    @on(Tree.NodeHighlighted)
    def _highlighted(self, event: Tree.NodeHighlighted[NodeData]) -> None:
        self._load_detail()

    def _load_detail(self) -> None:
        view = self.query_one(GrantDetailView)
        grant, principal = self.tree.cursor_grant, self.tree.cursor_principal
        if grant is not None:
            db_job(self, lambda: self.data.grant_detail(grant.id), self._show_detail, group="detail",
                   exclusive=True)
        elif principal is not None:
            self.detail = None
            view.show_principal(principal, filtered=self.tree.filter.narrows_grants)
        else:
            self.detail = None
            view.show_nothing()

    def _show_detail(self, detail: GrantDetail) -> None:
        current = self.tree.cursor_grant
        if current is None or current.id != detail.grant.id:
            return
        self.detail = detail
        self.query_one(GrantDetailView).show_grant(detail)

    def action_find(self) -> None:
        box = self.query_one("#tree-filter", FilterInput)
        box.value = ""
        box.focus()

    def action_filter(self) -> None:
        box_id = "#tree-filter" if self.active_tab == "grants" else "#audit-filter"
        self.query_one(box_id).focus()

    def action_clear_filter(self) -> None:
        if self.active_tab == "grants":
            self.query_one("#tree-filter", FilterInput).value = ""
            if not self.tree.filter.empty:
                self._apply_tree_filter("")
        else:
            self.query_one("#audit-filter", FilterInput).value = ""
            if self.audit.filter != AuditFilter():
                self._apply_audit_filter("")

    @on(FilterInput.Submitted, "#tree-filter")
    def _tree_filter_submitted(self, event: FilterInput.Submitted) -> None:
        self._apply_tree_filter(event.value)

    def _apply_tree_filter(self, text: str) -> None:
        try:
            values = parse_filter(text, TREE_KEYS, bare="id")
        except FilterError as exc:
            self.notify(str(exc), title="Filter", severity="error")
            return
        flt = TreeFilter(principal=values.get("principal"), agent=values.get("agent"),
                         status=values.get("status"), scope=values.get("scope"), grant_id=values.get("id"))
        tree = self.tree
        title = "Delegation trees" + (f" · {describe_filter(values)}" if values else "")
        tree.focus()
        if flt.grant_id is None:
            tree.load(flt, title=title)
            return
        grant_id = flt.grant_id
        db_job(self, lambda: self.data.path_to(grant_id),
               lambda path: tree.load(flt, open_path=path, title=title), group="tree")

    @on(FilterInput.Submitted, "#audit-filter")
    def _audit_filter_submitted(self, event: FilterInput.Submitted) -> None:
        self._apply_audit_filter(event.value)

    def _apply_audit_filter(self, text: str) -> None:
        try:
            values = parse_filter(text, AUDIT_KEYS)
        except FilterError as exc:
            self.notify(str(exc), title="Filter", severity="error")
            return
        self.audit.apply(AuditFilter(**values))
        self.audit.table.focus()

    # ── revoking, suspending ─────────────────────────────────────────────

    def action_revoke_grant(self) -> None:
        grant = self._selected_grant()
        if grant is None:
            return
        if grant.status == "revoked":
            self.notify(f"Grant {short_id(grant.id)} is already revoked.", severity="warning")
            return
        db_job(self, lambda: self.data.blast_radius(grant.id), self._confirm_revoke, group="action")

    def _confirm_revoke(self, radius: BlastRadius) -> None:
        def decided(confirmed: bool | None) -> None:
            if confirmed:
                db_job(self, lambda: self.data.revoke_grant(radius.grant_id),
                       lambda result: self._wrote(
                           f"Revoked {plural(len(result.revoked_grant_ids), 'grant')} in one transaction "
                           f"(the root {short_id(result.grant_id)} and everything delegated from it)."),
                       group="action")

        self.app.push_screen(RevokeGrantScreen(radius), decided)

    def action_revoke_token(self) -> None:
        grant = self._selected_grant()
        if grant is None:
            return
        db_job(self, lambda: self.data.live_tokens(grant.id), lambda found: self._pick_token(grant, found),
               group="action")

    def _pick_token(self, grant: GrantNode, found: tuple[TokenInfo, ...]) -> None:
        if not found:
            self.notify(f"{shown(grant.agent_name)}'s grant {short_id(grant.id)} has no live token.",
                        severity="warning")
            return

        def decided(jti: str | None) -> None:
            if jti:
                db_job(self, lambda: self.data.revoke_token(jti),
                       lambda cascaded: self._wrote(
                           f"Token {short_id(jti)} revoked"
                           + (f"; {plural(len(cascaded), 'delegated grant')} revoked with it." if cascaded
                              else ".")),
                       group="action")

        self.app.push_screen(RevokeTokenScreen(grant.id, shown(grant.agent_name), found, self.data.now()),
                             decided)

    def action_suspend_agent(self) -> None:
        self._agent_action(suspend=True)

    def action_reactivate_agent(self) -> None:
        self._agent_action(suspend=False)

    def _agent_action(self, *, suspend: bool) -> None:
        grant = self._selected_grant()
        if grant is None:
            return
        db_job(self, lambda: self.data.agent_impact(grant.agent_id),
               lambda impact: self._confirm_agent(impact, suspend=suspend), group="action")

    def _confirm_agent(self, impact: AgentImpact, *, suspend: bool) -> None:
        agent = impact.agent
        name = shown(agent.name)
        if suspend and agent.status != "active":
            self.notify(f"{name} is {agent.status}; u reactivates it.", severity="warning")
            return
        if not suspend and agent.status != "suspended":
            self.notify(f"{name} is {agent.status}, not suspended.", severity="warning")
            return
        grants = plural(impact.active_grants, "active grant")
        if suspend:
            body = Text.assemble(
                "Every token ", (name, "bold"), f" holds ({grants}), and every token delegated from "
                "its grants, fails online verification until you reactivate it. Nothing is revoked.")
        else:
            body = Text.assemble(
                "Tokens of ", (name, "bold"), f"'s {grants} verify again (those not revoked or "
                "expired), and it can be granted access again.")
        verb = "Suspend" if suspend else "Reactivate"

        def decided(confirmed: bool | None) -> None:
            if not confirmed:
                return
            call = self.data.suspend_agent if suspend else self.data.reactivate_agent
            db_job(self, lambda: call(agent.id),
                   lambda a: self._wrote(f"{shown(a.name)} is now {a.status}."), group="action")

        self.app.push_screen(ConfirmScreen(f"{verb} agent {name} ({agent.id})?", body,
                                           f"{verb} agent", danger=suspend), decided)

    # ── consent ──────────────────────────────────────────────────────────

    def _selected_request(self) -> tuple[str, str, dict[str, Any]] | None:
        row, details = self.inbox.selected, self.inbox.details
        if row is None or details is None or details["request"]["authRequestId"] != row.request.request_id:
            self.notify("No pending request is selected.", severity="warning")
            return None
        return row.request.request_id, shown(row.agent_name), details

    def _approve_decision(self) -> None:
        """A decision request: approve as the OS user; dwell runs from when its detail was shown."""
        row, details = self.inbox.selected_decision, self.inbox.decision_details
        if row is None or details is None or details["id"] != row.request_id:
            self.notify("No pending request is selected.", severity="warning")
            return
        request_id, shown_at = row.request_id, float(details["shownAt"])

        def decided(confirmed: bool | None) -> None:
            if confirmed:
                db_job(self, lambda: self.data.approve_decision(request_id, shown_at),
                       lambda done: self._wrote(
                           f"Approved decision {request_id} ({done.position} of "
                           f"{done.request.approvals_required})."), group="action")

        body = Group(render_decision(details, self.data.now()),
                     Text("\nApproving mints a single-use decision grant for the requester.", style="italic"))
        self.app.push_screen(ConfirmScreen("Approve this decision?", body, "Approve", danger=False), decided)

    def action_approve(self) -> None:
        if self.inbox.selected_decision is not None:
            self._approve_decision()
            return
        chosen = self._selected_request()
        if chosen is None:
            return
        request_id, agent_name, details = chosen

        def decided(confirmed: bool | None) -> None:
            if confirmed:
                db_job(self, lambda: self.data.approve(request_id),
                       lambda decision: self._approved(decision, agent_name), group="action")

        body = Group(render_consent(details, self.data.now()),
                     Text("\nApproving creates a single-use code for the agent.", style="italic"))
        self.app.push_screen(ConfirmScreen("Approve this request?", body, "Approve", danger=False), decided)

    def _approved(self, decision: Any, agent_name: str) -> None:
        self.app.push_screen(CodeScreen(decision, agent_name))
        self.gx_app.poll_now()

    def action_deny(self) -> None:
        if self.inbox.selected_decision is not None:
            self.notify("A decision request is approved or left to expire; cancel it with "
                        "'grantex-local decisions cancel'.", severity="warning")
            return
        chosen = self._selected_request()
        if chosen is None:
            return
        request_id, agent_name, details = chosen

        def decided(confirmed: bool | None) -> None:
            if confirmed:
                db_job(self, lambda: self.data.deny(request_id),
                       lambda _: self._wrote(f"Denied {agent_name}'s request."), group="action")

        self.app.push_screen(ConfirmScreen("Deny this request?", render_consent(details, self.data.now()),
                                           "Deny"), decided)

    # ── the audit trail ──────────────────────────────────────────────────

    def action_checkpoint(self) -> None:
        def done(written: list[dict[str, Any]]) -> None:
            if not written:
                self.notify("Nothing to sign: a checkpoint already covers every entry.")
                self.gx_app.poll_now()
                return
            sizes = ", ".join(f"{c['entryCount']:,} entries" for c in written)
            self._wrote(f"Signed {plural(len(written), 'checkpoint')} ({sizes}).")

        db_job(self, self.data.write_checkpoints, done, group="action")

    def action_verify(self) -> None:
        self.gx_app.verify_chain(force=True)

    # ── used by the command palette ──────────────────────────────────────

    async def run_command(self, action: str, tab: str | None) -> None:
        """Switch to the action's view, then run it as its key would (refusing writes in auditor mode)."""
        if action in WRITE_ACTIONS and self.data.read_only:
            self.notify("Auditor mode is read-only: this action is disabled.", severity="warning")
            return
        if tab is not None and self.active_tab != tab:
            self.action_show_tab(tab)
        await self.run_action(action)

    def focus_main(self) -> None:
        self.query_one(MAIN_WIDGET.get(self.active_tab, "#tree")).focus()
