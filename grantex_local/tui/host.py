"""What the main screen and the command palette ask of the app they run in.

Why a Protocol here, below all three: the app builds the main screen and offers the palette, so
neither may import the app back (that was the ``app ↔ commands ↔ screens/main`` circle). They
name the few things they use instead, and :class:`~grantex_local.tui.app.GrantexApp` provides
them; a check with ``isinstance(app, GrantexHost)`` replaces ``isinstance(app, GrantexApp)``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol, runtime_checkable

if TYPE_CHECKING:
    from .data import ChainState, Overview, TuiData


@runtime_checkable
class GrantexHost(Protocol):
    """The app's shared state and the refreshes a screen may ask for."""

    data: TuiData
    overview: Overview | None
    chain_state: ChainState | None

    def poll_now(self) -> None:
        """Check the file for other writers now (after this screen wrote)."""

    def start_background_checks(self) -> None:
        """Start verifying and watching, once the first screen is drawn."""

    def verify_chain(self, *, force: bool = False) -> None:
        """Verify every chain again."""
