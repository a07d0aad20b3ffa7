"""The grantex-local terminal UI: the App, its global keys, and how it keeps up with the file.

Why it is shaped like this (after Posting and Harlequin): the App owns only
what is global (quit, help, the command palette, change detection, chain
verification); the main screen owns the views and their actions; widgets
render what the data layer (:mod:`grantex_local.tui.data`, the one place the
TUI calls the library) hands them; every database call runs in a worker.

Other processes write to the same file (an agent appending audit entries, a
revocation from the CLI). The App polls ``PRAGMA data_version`` on a second
connection every half second and, when it moved, re-reads every view and
re-verifies the chain. The app's own writes take the same path (they poll at
once), so there is one way views get refreshed.
"""

from __future__ import annotations

import time
from dataclasses import replace
from typing import ClassVar

from textual.app import App
from textual.binding import Binding, BindingType
from textual.widgets import Tree

from .commands import GrantexCommands
from .data import ChainState, Overview, TuiData
from .jobs import db_job
from .screens.help import HelpScreen, Section
from .screens.main import ACTION_TABS, MainScreen
from .widgets.audit import AuditTable
from .widgets.filter_input import FilterInput
from .widgets.inbox import RequestTable
from .widgets.tree import DelegationTree

POLL_SECONDS = 0.5
FIRST_SCREEN_GRACE = 2.0
TICK_SECONDS = 30.0
"""Grants and requests expire with no write to the file: re-read everything this often anyway."""
VERIFY_BACKOFF = 4.0
"""After a verification that took t seconds, wait VERIFY_BACKOFF·t before the next one, so a huge
chain under constant appends never keeps a core busy."""


TREE_HELP = {
    "select_cursor": "Open or close the node (on '… more': load the next page)",
    "toggle_node": "Open or close the node",
    "toggle_expand_all": "Open or close everything already loaded below",
    "cursor_up": "Up",
    "cursor_down": "Down",
    "cursor_parent": "To the parent",
    "cursor_parent_next_sibling": "To the parent's next sibling",
    "cursor_previous_sibling": "To the previous sibling",
    "cursor_next_sibling": "To the next sibling",
}


class GrantexApp(App[None]):
    """Browse delegation trees, watch the audit trail, approve consent, revoke safely."""

    CSS_PATH = "app.tcss"
    TITLE = "grantex-local"
    COMMANDS: ClassVar = App.COMMANDS | {GrantexCommands}
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("ctrl+r", "reload", "Reload", show=False),
    ]
    """Global keys; ? and q live on the main screen (so a dialog never quits by accident)."""

    def __init__(self, data: TuiData, *, expand_limit: int = 300, poll_seconds: float = POLL_SECONDS) -> None:
        super().__init__()
        self.data = data
        self.expand_limit = expand_limit
        self.poll_seconds = poll_seconds
        self.overview: Overview | None = None
        self.chain_state: ChainState | None = None
        self._polling = False
        self._poll_failed = False
        self._verifying = False
        self._verify_again = False
        self._verify_cost = 0.0
        self._verified_at = 0.0
        self._verify_timer_set = False
        self._started = False
        self.sub_title = data.file_name + (" · auditor mode (read-only)" if data.read_only else "")

    def get_default_screen(self) -> MainScreen:
        return MainScreen(self.data, expand_limit=self.expand_limit)

    @property
    def main(self) -> MainScreen:
        screen = self.screen_stack[0] if self.screen_stack else self.screen
        assert isinstance(screen, MainScreen)
        return screen

    def on_mount(self) -> None:
        self.load_overview()
        self.set_timer(FIRST_SCREEN_GRACE, self.start_background_checks)

    def start_background_checks(self) -> None:
        """After the first screen is drawn: verify the chain, then watch the file.

        A chain walk is CPU-bound and would slow the first paint of a big ledger,
        so it waits for the tree's first level (or FIRST_SCREEN_GRACE seconds).
        """
        if self._started:
            return
        self._started = True
        self.verify_chain(force=True)
        if self.poll_seconds > 0:
            self.set_interval(self.poll_seconds, self.poll_now)
            self.set_interval(TICK_SECONDS, self.refresh_all)

    # ── keeping up with the file ─────────────────────────────────────────

    def poll_now(self) -> None:
        """Ask the watcher connection whether anyone committed; refresh everything if so."""
        if self._polling:
            return
        self._polling = True
        db_job(self, self._changed, self._polled, failed=lambda _: self._polled(None), group="poll")

    def _changed(self) -> bool:
        return self.data.changed()

    def _polled(self, changed: bool | None) -> None:
        self._polling = False
        if changed is None:
            self._poll_failed = True
            return
        if changed:
            self.refresh_all()

    def refresh_all(self) -> None:
        self.load_overview()
        self.verify_chain()
        self.main.reload_views()

    def load_overview(self) -> None:
        db_job(self, self.data.overview, self._show_overview, group="overview", exclusive=True)

    def _show_overview(self, overview: Overview) -> None:
        self.overview = overview
        self.main.show_overview(overview)

    def verify_chain(self, *, force: bool = False) -> None:
        """Re-verify every chain, at most one walk at a time and backing off after slow walks."""
        if self._verifying:
            self._verify_again = True
            return
        wait = VERIFY_BACKOFF * self._verify_cost - (time.monotonic() - self._verified_at)
        if not force and wait > 0:
            if not self._verify_timer_set:
                self._verify_timer_set = True
                self.set_timer(wait, self._verify_timer_fired)
            return
        self._verifying = True
        started = time.monotonic()
        db_job(self, self.data.chain_state, lambda state: self._verified(state, started),
               failed=lambda _: self._verified(None, started), group="verify")

    def _verify_timer_fired(self) -> None:
        self._verify_timer_set = False
        self.verify_chain(force=True)

    def _verified(self, state: ChainState | None, started: float) -> None:
        self._verifying = False
        self._verified_at = time.monotonic()
        self._verify_cost = self._verified_at - started
        if state is not None:
            self.chain_state = state
            self.main.show_chain(state)
        if self._verify_again:
            self._verify_again = False
            self.verify_chain()

    # ── global actions ───────────────────────────────────────────────────

    def action_reload(self) -> None:
        self.refresh_all()

    def help_sections(self) -> list[Section]:
        """Every key, grouped the way the screen groups them; built from the bindings themselves."""
        screen = [b for b in MainScreen.BINDINGS if isinstance(b, Binding)]
        views = [b for b in screen if b.action.startswith("show_tab")]
        app_keys = [b for b in screen if b.action.startswith("app.")]
        app_keys += [b for b in self.BINDINGS if isinstance(b, Binding)]

        def of(tab: str) -> list[Binding]:
            return [b for b in screen if tab in ACTION_TABS.get(b.action, ())]

        tree_builtin = [replace(b, description=TREE_HELP.get(b.action, b.description))
                        for b in Tree.BINDINGS if isinstance(b, Binding)]
        move = [b for b in DelegationTree.BINDINGS if isinstance(b, Binding)]
        table_move = [b for b in RequestTable.BINDINGS + AuditTable.BINDINGS if isinstance(b, Binding)]
        palette = Binding(self.COMMAND_PALETTE_BINDING, "command_palette", "Command palette (every action)")
        leave = [b for b in FilterInput.BINDINGS if isinstance(b, Binding)]
        return [
            ("Everywhere", [*app_keys, palette, *views]),
            ("Delegation trees (1)", [*move, *tree_builtin, *of("grants")]),
            ("Consent inbox (2)", [*table_move[:2], *of("inbox")]),
            ("Audit trail (3): reaching the last row loads older entries", [*table_move[2:], *of("audit")]),
            ("In a filter line", leave),
            ("Dialogs", [Binding("tab", "", "Next button or field"),
                         Binding("escape", "", "Cancel (nothing happens); in a list: clear its filter"),
                         Binding("y", "", "Confirm (not in the revoke dialog: type the id's tail there)"),
                         Binding("n", "", "Cancel"),
                         Binding("c", "", "Copy the approval code")]),
        ]

    def action_help(self) -> None:
        keys: dict[str, str] = {}
        for _, bindings in self.help_sections():
            for b in bindings:
                shown = (self.get_key_display(Binding(k.strip(), "")) for k in b.key.split(","))
                keys[b.key] = ", ".join(shown)
        self.push_screen(HelpScreen(self.help_sections(), keys))
