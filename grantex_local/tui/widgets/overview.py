"""One line at the top: what is in the file right now, and whether the chain holds.

It answers "who can do what, right now" in numbers before any tree is opened,
and keeps a broken chain visible from every tab.
"""

from __future__ import annotations

from rich.text import Text
from textual.widgets import Static

from ..data import ChainState, Overview
from ..format import plural


def overview_text(o: Overview | None, chain: ChainState | None, *, read_only: bool) -> Text:
    text = Text()
    if read_only:
        text.append(" AUDITOR MODE · READ-ONLY ", style="bold reverse yellow")
        text.append(" ")
    if o is None:
        text.append("reading the ledger…", style="italic")
        return text
    if o.as_of is not None:  # auditor mode: active/expired are judged at this instant, not today
        text.append(f"as of {o.as_of}", style="bold yellow")
        text.append(" · ")
    text.append(plural(o.agents, "agent"))
    if o.suspended_agents:
        text.append(f" ({o.suspended_agents:,} suspended)", style="magenta")
    text.append(f" · {plural(o.grants, 'grant')}, {o.active_grants:,} active")
    text.append(" · ")
    text.append(plural(o.pending_requests, "pending request"),
                style="bold cyan" if o.pending_requests else "")
    text.append(f" · {plural(o.audit_entries, 'audit entry', 'audit entries')} ")
    if o.failed_deliveries:  # only when there are some: a receiver missed events for good
        text.append(f" {plural(o.failed_deliveries, 'webhook delivery', 'webhook deliveries')} failed ",
                    style="bold reverse red")
        text.append(" ")
    if o.open_anomalies:  # only when there are some: stored by 'anomalies detect', never run here
        worst = o.worst_anomalies[0].severity if o.worst_anomalies else ""
        text.append(f" {plural(o.open_anomalies, 'open anomaly', 'open anomalies')} ",
                    style="bold reverse red" if worst in ("high", "critical") else "bold reverse yellow")
        text.append(" " + "; ".join(f"{a.severity} {a.type}" + (f" {a.agent_id}" if a.agent_id else "")
                                    for a in o.worst_anomalies))
        text.append(" ")
    if chain is not None:
        text.append(" chain ✓ " if chain.ok else " chain ✗ BROKEN ",
                    style="bold reverse green" if chain.ok else "bold reverse red")
    return text


class OverviewBar(Static):
    """Counts from the library's ledger summary, refreshed whenever the file changes."""

    def __init__(self, *, read_only: bool, id: str | None = None) -> None:
        super().__init__(overview_text(None, None, read_only=read_only), id=id)
        self.read_only = read_only
        self.overview: Overview | None = None
        self.chain: ChainState | None = None

    def show(self, overview: Overview | None = None, chain: ChainState | None = None) -> None:
        if overview is not None:
            self.overview = overview
        if chain is not None:
            self.chain = chain
        self.update(overview_text(self.overview, self.chain, read_only=self.read_only))
