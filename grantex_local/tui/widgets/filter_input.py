"""A one-line filter: enter applies it, escape goes back to the list it filters."""

from __future__ import annotations

from typing import ClassVar

from textual.binding import Binding, BindingType
from textual.widgets import Input


class FilterInput(Input):
    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape", "leave", "Back to the list")]

    def __init__(self, *, placeholder: str, target: str, id: str | None = None) -> None:
        super().__init__(placeholder=placeholder, id=id, compact=True)
        self.target = target
        """CSS selector of the widget that gets focus back."""

    def action_leave(self) -> None:
        self.screen.query_one(self.target).focus()
