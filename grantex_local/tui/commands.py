"""The command palette (ctrl+p): every action of the app, by name.

One table lists them, so the palette, the tests and the help agree on what
exists. Choosing a command switches to the view it belongs to and runs the
same action its key runs; in auditor mode write commands say they are
disabled instead of running.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial

from textual.command import DiscoveryHit, Hit, Hits, Provider

from .host import GrantexHost
from .screens.main import MainScreen


@dataclass(frozen=True)
class PaletteCommand:
    title: str
    help: str
    action: str
    """An action of the main screen (``revoke_grant``) or of the app (``app.help``)."""
    tab: str | None = None
    writes: bool = False


PALETTE: tuple[PaletteCommand, ...] = (
    PaletteCommand("Show the delegation trees", "Principals, their grants and what was delegated",
                   "show_tab('grants')"),
    PaletteCommand("Show the consent inbox", "Requests waiting for your approval", "show_tab('inbox')"),
    PaletteCommand("Show the audit trail", "The hash chain, newest first, and whether it verifies",
                   "show_tab('audit')"),
    PaletteCommand("Find a grant by id", "Open the tree at one grant", "find", "grants"),
    PaletteCommand("Filter the grant tree", "By principal, agent, status or scope", "filter", "grants"),
    PaletteCommand("Clear the grant tree filter", "Show every principal again", "clear_filter", "grants"),
    PaletteCommand("Revoke the selected grant", "Shows the blast radius first; revokes the whole subtree",
                   "revoke_grant", "grants", writes=True),
    PaletteCommand("Revoke a token of the selected grant", "One token, and grants delegated from it",
                   "revoke_token", "grants", writes=True),
    PaletteCommand("Suspend the selected grant's agent", "Its tokens stop verifying until reactivated",
                   "suspend_agent", "grants", writes=True),
    PaletteCommand("Reactivate the selected grant's agent", "Its unrevoked tokens verify again",
                   "reactivate_agent", "grants", writes=True),
    PaletteCommand("Approve the selected consent request", "Creates the code the agent is waiting for",
                   "approve", "inbox", writes=True),
    PaletteCommand("Deny the selected consent request", "The agent gets no code", "deny", "inbox",
                   writes=True),
    PaletteCommand("Filter the audit trail", "By agent, grant, principal, action, status or time",
                   "filter", "audit"),
    PaletteCommand("Clear the audit trail filter", "Show every entry again", "clear_filter", "audit"),
    PaletteCommand("Write a signed checkpoint", "Covers every entry of every chain as it is now",
                   "checkpoint", "audit", writes=True),
    PaletteCommand("Verify the audit chain now", "Walk every chain from the stored bytes", "verify", "audit"),
    PaletteCommand("Reload from the ledger file", "Re-read every view (changes also show by themselves)",
                   "app.reload"),
    PaletteCommand("Keys and help", "Every key, and the filter syntax", "app.help"),
)


class GrantexCommands(Provider):
    """Offers :data:`PALETTE`; write commands are marked (and refused) in auditor mode."""

    def _title(self, command: PaletteCommand) -> str:
        app = self.app
        read_only = isinstance(app, GrantexHost) and app.data.read_only
        return command.title + (" (disabled: read-only)" if command.writes and read_only else "")

    async def _run(self, command: PaletteCommand) -> None:
        app = self.app
        if command.action.startswith("app."):
            await app.run_action(command.action)
            return
        screen = app.screen
        if isinstance(app, GrantexHost) and isinstance(screen, MainScreen):
            await screen.run_command(command.action, command.tab)

    async def discover(self) -> Hits:
        for command in PALETTE:
            yield DiscoveryHit(self._title(command), partial(self._run, command), help=command.help)

    async def search(self, query: str) -> Hits:
        matcher = self.matcher(query)
        for command in PALETTE:
            title = self._title(command)
            score = matcher.match(title)
            if score > 0:
                yield Hit(score, matcher.highlight(title), partial(self._run, command), text=title,
                          help=command.help)
