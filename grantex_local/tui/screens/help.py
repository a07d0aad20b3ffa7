"""``?``: every key, generated from the bindings themselves so the help can never drift from them."""

from __future__ import annotations

from typing import ClassVar

from rich.console import Group
from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Label, Static

FILTER_HELP = (
    "Filters are key=value words (quote values with spaces). Grant tree: principal= agent= (name or id) "
    "status=active|revoked|expired|suspended scope= (exact, or a prefix such as payments), and a bare "
    "grant id (or id=) finds that grant's tree. Audit trail: agent= grant= principal= action= "
    "status=success|failure|blocked since= until= (ISO times) developer=. Enter applies, empty clears, "
    "escape goes back."
)

Section = tuple[str, list[Binding]]


def key_table(app_key_display: dict[str, str], sections: list[Section]) -> Table:
    table = Table.grid(padding=(0, 2))
    table.add_column(style="bold cyan", no_wrap=True, justify="right")
    table.add_column()
    for title, bindings in sections:
        table.add_row("", Text(f"\n{title}", style="bold underline"))
        rows: dict[str, tuple[list[str], str]] = {}
        for b in bindings:
            key = app_key_display.get(b.key, b.key)
            merge = b.action or f"{key}:{b.description}"  # one row per action, all its keys
            keys, label = rows.setdefault(merge, ([], b.description or b.action))
            if key not in keys:
                keys.append(key)
        for keys, label in rows.values():
            table.add_row(", ".join(keys), label)
    return table


class HelpScreen(ModalScreen[None]):
    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape,question_mark,q", "close", "Close")]

    def __init__(self, sections: list[Section], key_display: dict[str, str]) -> None:
        super().__init__()
        self.sections = sections
        self.key_display = key_display

    def compose(self) -> ComposeResult:
        with Vertical(id="help-dialog"):
            yield Label(Text("grantex-local: keys", style="bold"), id="dialog-title")
            with VerticalScroll(id="help-body"):
                yield Static(Group(key_table(self.key_display, self.sections),
                                   Text("\n" + FILTER_HELP, style="italic")))
            yield Label(Text("escape, ? or q closes · ctrl+p opens the command palette", style="dim"))

    def action_close(self) -> None:
        self.dismiss(None)
