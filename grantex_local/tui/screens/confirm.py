"""Yes/no dialogs for the other consequential actions, and the token picker.

Posting's and Harlequin's pattern: a modal with the consequence spelled out,
focus on Cancel, ``y`` to confirm, ``n`` or escape to cancel.
"""

from __future__ import annotations

from typing import ClassVar

from rich.console import RenderableType
from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Label, OptionList, Static
from textual.widgets.option_list import Option

from ..data import TokenInfo
from ..format import plural, relative


class ConfirmScreen(ModalScreen[bool]):
    """Answers True for y / the confirm button, False for n / escape / Cancel."""

    AUTO_FOCUS = "#cancel"
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("y", "confirm", "Yes"),
        Binding("n,escape", "cancel", "No"),
    ]

    def __init__(self, title: str, body: RenderableType, confirm_label: str, *, danger: bool = True) -> None:
        super().__init__()
        self.title_text = title
        self.body = body
        self.confirm_label = confirm_label
        self.danger = danger

    def compose(self) -> ComposeResult:
        with Vertical(id="dialog", classes="danger" if self.danger else ""):
            yield Label(Text(self.title_text, style="bold"), id="dialog-title")
            yield Static(self.body, id="dialog-body")
            with Horizontal(id="dialog-buttons"):
                yield Button("Cancel (n)", id="cancel", variant="primary")
                yield Button(f"{self.confirm_label} (y)", id="confirm",
                             variant="error" if self.danger else "success")

    @on(Button.Pressed, "#confirm")
    def action_confirm(self) -> None:
        self.dismiss(True)

    @on(Button.Pressed, "#cancel")
    def action_cancel(self) -> None:
        self.dismiss(False)


class RevokeTokenScreen(ModalScreen[str | None]):
    """Pick one live token of a grant to revoke; answers its jti, or None."""

    AUTO_FOCUS = "#cancel"
    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape", "cancel", "Cancel")]

    def __init__(self, grant_id: str, agent_name: str, tokens: tuple[TokenInfo, ...], now: float) -> None:
        super().__init__()
        self.grant_id = grant_id
        self.agent_name = agent_name
        self.tokens = tokens
        self.now = now

    def compose(self) -> ComposeResult:
        options = []
        for t in self.tokens:
            text = Text(t.jti, style="bold")
            text.append(f"  expires {relative(t.expires_at, self.now)}  ")
            text.append(plural(t.delegated_grants, "delegated grant") + " revoked with it",
                        style="bold red" if t.delegated_grants else "dim")
            options.append(Option(text, id=t.jti))
        with Vertical(id="dialog", classes="danger"):
            yield Label(Text(f"Revoke one token of {self.agent_name}'s grant", style="bold"),
                        id="dialog-title")
            yield Static(Text("The chosen token stops verifying at once; grants delegated from it are "
                              "revoked too. The grant and its other tokens stay valid. Choose with ↑/↓ "
                              "(tab to the list), then Revoke token."), id="dialog-body")
            yield OptionList(*options, id="token-list")
            with Horizontal(id="dialog-buttons"):
                yield Button("Cancel", id="cancel", variant="primary")
                yield Button("Revoke token", id="confirm", variant="error")

    def on_mount(self) -> None:
        tokens = self.query_one(OptionList)
        if self.tokens:
            tokens.highlighted = 0

    @property
    def chosen(self) -> str | None:
        tokens = self.query_one(OptionList)
        if tokens.highlighted is None:
            return None
        return tokens.get_option_at_index(tokens.highlighted).id

    @on(Button.Pressed, "#confirm")
    def _confirm(self) -> None:
        self.dismiss(self.chosen)

    @on(OptionList.OptionSelected)
    def _selected(self) -> None:
        self.query_one("#confirm", Button).focus()

    @on(Button.Pressed, "#cancel")
    def action_cancel(self) -> None:
        self.dismiss(None)
