"""The audit trail, newest first, with the chain's health in a status bar.

The status bar answers the auditor's first questions without a keystroke:
does every chain verify from the stored bytes (and if not, the first broken
seq and why), and how many entries no signed checkpoint covers yet (``w``
signs one). The app re-verifies whenever the file changes, including changes
made behind its back by another process.
"""

from __future__ import annotations

from typing import Any, ClassVar

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical
from textual.widgets import DataTable, Static

from ..data import AUDIT_PAGE, AuditFilter, AuditRow, BundleInfo, ChainState, TuiData
from ..format import plural, short_id, shown, status_word
from ..jobs import db_job
from .filter_input import FilterInput
from .tree import MOVE

AUDIT_KEYS = ("agent", "grant", "principal", "action", "status", "since", "until", "developer")


class AuditTable(DataTable[Any]):
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("j", "cursor_down", "Down", group=MOVE),
        Binding("k", "cursor_up", "Up", group=MOVE),
        Binding("end,G", "last_row", "Last row (then older entries load)", show=False),
        Binding("home,g", "first_row", "Newest entry", show=False),
    ]

    def action_last_row(self) -> None:
        if self.row_count:
            self.move_cursor(row=self.row_count - 1)

    def action_first_row(self) -> None:
        if self.row_count:
            self.move_cursor(row=0)


def chain_text(state: ChainState | None, bundle: BundleInfo | None, read_only: bool) -> Text:
    """One line: bundle verdict (auditor mode), chain verdict, checkpoint coverage, the key to act."""
    text = Text()
    if bundle is not None:
        summary = bundle.summary
        verdict = "verified" if summary.get("valid", True) else "NOT VERIFIED"
        text.append(f" Bundle {bundle.name}: {verdict} ", style="bold reverse green"
                    if summary.get("valid", True) else "bold reverse red")
        chains = summary.get("chains")
        detail = []
        if isinstance(chains, list):
            detail.append(plural(len(chains), "chain"))
        if isinstance(summary.get("entries"), int):
            detail.append(plural(summary["entries"], "entry", "entries"))
        if summary.get("keySource") == "bundle":
            detail.append("signed with the key inside the bundle (self-consistent; not proof of origin)")
        elif summary.get("keySource"):
            detail.append("signature checked with the key you gave")
        text.append(" " + ", ".join(detail) + " · ")
    if state is None:
        text.append("Verifying the chain…", style="italic")
        return text
    if state.ok:
        text.append(" ✓ CHAIN VERIFIES ", style="bold reverse green")
        text.append(f" {plural(state.chains, 'chain')}, {plural(state.entries, 'entry', 'entries')} · ")
        if state.uncovered:
            text.append(f"{plural(state.uncovered, 'entry', 'entries')} not covered by a checkpoint",
                        style="bold yellow")
            if not read_only:
                text.append(" (w writes one)")
        else:
            text.append("every entry is covered by a checkpoint")
        return text
    text.append(" ✗ CHAIN BROKEN ", style="bold reverse red")
    where = f" in {shown(state.broken_chain)}" if state.broken_chain else ""
    seq = f" at seq {state.broken_seq}" if state.broken_seq is not None else ""
    text.append(f"{where}{seq}: {state.reason}", style="bold red")
    if state.message:
        text.append(f" ({state.message})")
    return text


class AuditView(Vertical):
    """Filter line, entries table, and the chain status bar."""

    def __init__(self, data: TuiData, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.data_source = data
        self.filter = AuditFilter()
        self.rows: tuple[AuditRow, ...] = ()
        self.limit = AUDIT_PAGE
        self.loaded_once = False

    def compose(self) -> ComposeResult:
        yield FilterInput(placeholder="filter: agent= grant= principal= action= status= since= until= "
                                      "developer= (enter applies, esc leaves)", target="#audit-table",
                          id="audit-filter")
        table = AuditTable(id="audit-table", cursor_type="row", zebra_stripes=True)
        table.border_title = "Audit trail, newest first"
        yield table
        yield Static(chain_text(None, self.data_source.bundle, self.data_source.read_only),
                     id="chain-status")

    def on_mount(self) -> None:
        table = self.query_one(AuditTable)
        for label, key in (("Seq", "seq"), ("Time", "time"), ("Action", "action"), ("Status", "status"),
                           ("Agent", "agent"), ("Grant", "grant"), ("Principal", "principal"),
                           ("Flags", "flags"), ("Chain (developer)", "chain")):
            table.add_column(label, key=key)
        known = getattr(self.app, "chain_state", None)  # a verification may have finished before mount
        if known is not None:
            self.show_chain(known)

    @property
    def table(self) -> AuditTable:
        return self.query_one(AuditTable)

    def reload(self) -> None:
        flt, limit = self.filter, self.limit
        db_job(self, lambda: self.data_source.audit_page(flt, limit), self._show, group="audit",
               exclusive=True)

    def apply(self, flt: AuditFilter) -> None:
        self.filter = flt
        self.limit = AUDIT_PAGE
        self.reload()

    def _show(self, rows: tuple[AuditRow, ...]) -> None:
        table = self.table
        row_before = table.cursor_row
        self.rows = rows
        table.clear()
        for r in rows:
            e = r.entry
            flags = Text(" ".join(f"⚠ {f.replace('_', ' ')}" for f in e.flags), style="bold yellow")
            table.add_row(Text(str(e.seq), style="dim"), shown(e.timestamp), shown(e.action),
                          status_word(shown(e.status)), shown(r.agent_name), shown(short_id(e.grant_id)),
                          shown(e.principal_id), flags, shown(r.chain_name), key=e.entry_id)
        described = "" if self.filter == AuditFilter() else " (filtered)"
        table.border_title = f"Audit trail, newest first{described}: {plural(len(rows), 'entry', 'entries')}"
        if rows:
            table.move_cursor(row=min(max(row_before, 0), len(rows) - 1))
        self.loaded_once = True

    def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        """Reaching the last row loads older entries (the table grows a page at a time)."""
        event.stop()
        if self.rows and event.cursor_row == len(self.rows) - 1 and len(self.rows) >= self.limit:
            self.limit += AUDIT_PAGE
            self.reload()

    def show_chain(self, state: ChainState | None) -> None:
        status = self.query_one("#chain-status", Static)
        status.update(chain_text(state, self.data_source.bundle, self.data_source.read_only))
        status.set_class(state is not None and not state.ok, "-broken")
