"""After approval: the single-use code the agent is waiting for, shown once.

The library returns the code only at approval (it stores just its hash), so
this dialog is the one place a human can pick it up: read it, or press ``c``
to copy it (OSC 52; most terminals pass it to the system clipboard).
"""

from __future__ import annotations

from typing import ClassVar
from urllib.parse import urlencode

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Label, Static

from ...models import ConsentDecision


class CodeScreen(ModalScreen[None]):
    AUTO_FOCUS = "#close"
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("c", "copy", "Copy code"),
        Binding("escape,enter", "close", "Close"),
    ]

    def __init__(self, decision: ConsentDecision, agent_name: str) -> None:
        super().__init__()
        self.decision = decision
        self.code = decision.code or ""
        self.agent_name = agent_name

    def compose(self) -> ComposeResult:
        with Vertical(id="dialog"):
            yield Label(Text("Approved", style="bold green"), id="dialog-title")
            yield Static(Text.assemble(
                "Give this code to ", (self.agent_name, "bold"),
                ". It works once, for this agent only, and expires in 10 minutes:"))
            yield Static(Text(self.code, style="bold reverse"), id="code")
            if self.decision.redirect_uri:
                query = {"code": self.code}
                if self.decision.state:
                    query["state"] = self.decision.state
                yield Static(Text(f"or send the browser to: {self.decision.redirect_uri}?{urlencode(query)}",
                                  overflow="fold"))
            with Horizontal(id="dialog-buttons"):
                yield Button("Copy (c)", id="copy", variant="success")
                yield Button("Close", id="close", variant="primary")

    @on(Button.Pressed, "#copy")
    def action_copy(self) -> None:
        self.app.copy_to_clipboard(self.code)
        self.notify("Code copied to the clipboard (if your terminal allows it).", timeout=4)

    @on(Button.Pressed, "#close")
    def action_close(self) -> None:
        self.dismiss(None)
