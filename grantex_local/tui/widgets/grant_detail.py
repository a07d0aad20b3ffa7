"""The selected grant, in full: who, for whom, what (described), when, where it came from, what uses it.

Everything here is read from the library by the data layer; this widget only
lays it out. Times are absolute stamps with the distance from the ledger's
clock, so the same ledger shows the same text in a test with time frozen.
"""

from __future__ import annotations

from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.containers import VerticalScroll
from textual.widgets import Static

from ..data import GrantDetail, PrincipalNode
from ..format import badge, plural, relative, short_id, shown, status_word, when


def _fields(rows: list[tuple[str, RenderableType]]) -> Table:
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="bold", no_wrap=True)
    grid.add_column(overflow="fold")
    for name, value in rows:
        grid.add_row(name, value)
    return grid


def _heading(text: str) -> Text:
    return Text(f"\n{text}", style="bold underline")


def render_grant(d: GrantDetail) -> RenderableType:
    g, now = d.grant, d.now
    title = Text(shown(d.agent.name), style="bold")
    title.append("  ")
    title.append_text(badge(d.status))
    agent = Text(shown(d.agent.name), style="bold")
    agent.append(f"  {d.agent.did}")
    if d.agent.status != "active":
        agent.append(f"  ({d.agent.status})", style="bold magenta")
    parts: list[RenderableType] = [title, _fields([
        ("Grant", g.id),
        ("Agent", agent),
        ("Principal", shown(g.principal_id)),
        ("Developer", shown(d.developer_name)),
        ("Depth", f"{g.delegation_depth}" + (" (root grant)" if g.parent_grant_id is None else "")),
        ("Issued", when(g.issued_at, now)),
        ("Expires", when(g.expires_at, now)),
        ("Revoked", when(g.revoked_at, now) if g.revoked_at else "-"),
    ])]
    if g.audience:
        parts.append(_fields([("Audience", shown(g.audience))]))

    parts.append(_heading(f"Scopes ({len(d.scopes)})"))
    scopes = Table.grid(padding=(0, 2))
    scopes.add_column(style="cyan", no_wrap=True)
    scopes.add_column(overflow="fold")
    for scope, description in d.scopes:
        scopes.add_row(scope, description)
    parts.append(scopes)

    if d.budget is not None:
        b = d.budget
        carved_from = "  (carved from the parent's budget)" if b["parentAllocationId"] else ""
        parts.append(_heading(f"Budget ({b['currency']})"))
        parts.append(_fields([
            ("Allocated", b["initialBudget"] + carved_from),
            ("Spent", b["spent"]),
            ("Carved out", b["carved"]),
            ("Remaining", b["remainingBudget"]),
            ("Subtree spent", b["subtreeSpent"]),
        ]))

    if d.bundles:
        parts.extend(_bundle_lines(d))

    parts.append(_heading("Parent chain, up to the root"))
    if not d.chain:
        parts.append(Text("(this is a root grant: a principal approved it directly)", style="dim"))
    else:
        for link in d.chain:
            line = Text(f"↑ depth {link.depth} ", style="dim")
            line.append(shown(link.agent_name), style="bold")
            line.append(" ")
            line.append_text(badge(link.status))
            line.append(f" {link.grant_id}", style="dim")
            parts.append(line)

    parts.append(_heading(f"Live tokens ({len(d.tokens)})"))
    if not d.tokens:
        parts.append(Text("none", style="dim"))
    else:
        for t in d.tokens:
            line = Text(t.jti)
            line.append(f"  expires {relative(t.expires_at, now)} · ", style="dim")
            line.append(plural(t.delegated_grants, "grant") + " delegated from it",
                        style="yellow" if t.delegated_grants else "dim")
            parts.append(line)

    listed = f"the newest {len(d.audit)}; 3 then f grant=… lists all" if d.more_audit else str(len(d.audit))
    parts.append(_heading(f"Audit entries, newest first ({listed})"))
    if not d.audit:
        parts.append(Text("none", style="dim"))
    else:
        for e in d.audit:
            line = Text(f"#{e.seq} ", style="dim")
            line.append(f"{e.timestamp} ")
            line.append_text(status_word(e.status))
            line.append(f" {shown(e.action)}")
            for flag in e.flags:
                line.append(f" ⚠ {flag.replace('_', ' ')}", style="bold yellow")
            parts.append(line)
    return Group(*parts)


def _bundle_lines(d: GrantDetail) -> list[RenderableType]:
    """Each consent bundle with its offline window and how far its device's log has come home:
    an offline device's actions exist in the ledger only from its last sync on."""
    lines: list[RenderableType] = [_heading(f"Consent bundles, newest first ({len(d.bundles)})")]
    for b in d.bundles:
        head = Text(b.id, style="bold")
        if b.revoked_at:
            head.append(f"  revoked {when(b.revoked_at, d.now)}", style="bold red")
        if b.replaced_by:
            head.append(f"  replaced by {b.replaced_by}", style="dim")
        lines.append(head)
        lines.append(Text(f"  created {when(b.created_at, d.now)} · offline until "
                          f"{when(b.offline_expires_at, d.now)}", style="dim"))
        if b.last_sync_at:
            sync = Text(f"  last sync {when(b.last_sync_at, d.now)} · ")
            sync.append(plural(b.synced_entries, "entry", "entries") + " synced")
        else:
            sync = Text("  never synced: its offline log has not come back", style="yellow")
        lines.append(sync)
    return lines


def render_principal(p: PrincipalNode, *, filtered: bool = False) -> RenderableType:
    counts: list[tuple[str, RenderableType]] = [
        ("Matching", f"{plural(p.grants, 'grant')} match the filter, {p.active:,} of them active"),
    ] if filtered else [
        ("Trees", plural(p.roots, "root grant")),
        ("Grants", f"{p.grants:,} in all, {p.active:,} active"),
    ]
    return Group(
        Text(shown(p.principal_id), style="bold"),
        _fields([("Developer", shown(p.developer_name)), *counts]),
        Text("\nOpen the node (enter, space or l) to see the grants; select one for its detail.",
             style="dim"),
    )


class GrantDetailView(VerticalScroll):
    """A scrollable pane showing one grant (or a principal's summary)."""

    can_focus = True

    def compose(self) -> ComposeResult:
        yield Static(Text("Select a grant in the tree.", style="dim"), id="detail-body")

    def show_grant(self, detail: GrantDetail) -> None:
        self.border_title = f"Grant {short_id(detail.grant.id)}"
        self.query_one("#detail-body", Static).update(render_grant(detail))

    def show_principal(self, principal: PrincipalNode, *, filtered: bool = False) -> None:
        self.border_title = "Principal"
        self.query_one("#detail-body", Static).update(render_principal(principal, filtered=filtered))

    def show_nothing(self, message: str = "Select a grant in the tree.") -> None:
        self.border_title = "Detail"
        self.query_one("#detail-body", Static).update(Text(message, style="dim"))
