"""The revoke dialog: the blast radius first, then a deliberate confirmation.

Why it is built this way: revocation cannot be undone and cascades to every
grant delegated below. So the dialog shows, before anything happens, what
the library says the cascade would touch (grants, agents, live tokens, as a
small tree); focus starts on Cancel, so a stray Enter does nothing; and the
Revoke button stays disabled until the last characters of the grant id are
typed, a step no one performs by accident. Escape cancels.
"""

from __future__ import annotations

from typing import Any, ClassVar

from rich.text import Text
from rich.tree import Tree as RichTree
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Label, Static

from ..data import BLAST_TREE_LIMIT, BlastRadius
from ..format import CONFIRM_CHARS, badge, plural, short_id
from ..format import shown as shown_text


def blast_tree(radius: BlastRadius, limit: int = BLAST_TREE_LIMIT) -> RichTree:
    """The subtree that would be revoked, at most ``limit`` nodes, each with its current status."""

    def label(node: dict[str, Any]) -> Text:
        text = Text(node.get("agentName", "?"), style="bold")
        status = node.get("status", "active")
        if status == "active" and node.get("agentStatus") not in (None, "active"):
            status = "suspended" if node.get("agentStatus") == "suspended" else "deleted"
        text.append(f" depth {node.get('delegationDepth', 0)} ", style="dim")
        text.append_text(badge(status))
        text.append(f" {short_id(node.get('id'))}", style="dim")
        return text

    root = RichTree(label(radius.tree), guide_style="dim")
    shown = 1
    stack: list[tuple[RichTree, dict[str, Any]]] = [(root, radius.tree)]
    hidden = 0
    while stack:
        branch, node = stack.pop(0)
        for child in node.get("children", []):
            if shown >= limit:
                hidden += 1
                continue
            shown += 1
            stack.append((branch.add(label(child)), child))
    if hidden:
        root.add(Text(f"… and {hidden:,} more", style="italic dim"))
    return root


def consequences(radius: BlastRadius) -> Text:
    text = Text()
    text.append(shown_text(radius.agent_name), style="bold")
    text.append(" acting for ")
    text.append(shown_text(radius.principal_id), style="bold")
    text.append(".\nRevoking it also revokes ")
    text.append(plural(radius.descendants, "delegated grant"), style="bold red")
    text.append(", and ")
    text.append(plural(radius.live_tokens, "live token"), style="bold red")
    text.append(" stop verifying at once. This cannot be undone.")
    if radius.agents:
        text.append("\nAgents that lose access: ")
        text.append(", ".join(map(shown_text, radius.agents)), style="bold")
    return text


class RevokeGrantScreen(ModalScreen[bool]):
    """Answers True only after the user typed the id's tail and chose Revoke."""

    AUTO_FOCUS = "#cancel"
    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape", "cancel", "Cancel")]

    def __init__(self, radius: BlastRadius) -> None:
        super().__init__()
        self.radius = radius
        self.suffix = radius.grant_id[-CONFIRM_CHARS:]

    def compose(self) -> ComposeResult:
        grants = 1 + self.radius.descendants
        with Vertical(id="dialog", classes="danger"):
            yield Label(Text(f"Revoke grant {self.radius.grant_id}?", style="bold"), id="dialog-title")
            yield Static(consequences(self.radius), id="consequences")
            with VerticalScroll(id="blast", can_focus=False):
                yield Static(blast_tree(self.radius))
            yield Label(Text.assemble("To confirm, type the last ", (str(CONFIRM_CHARS), "bold"),
                                      " characters of the grant id: ", (self.suffix, "bold reverse")))
            yield Input(placeholder=f"type {self.suffix}", id="confirm-input", max_length=CONFIRM_CHARS * 2)
            with Horizontal(id="dialog-buttons"):
                yield Button("Cancel", id="cancel", variant="primary")
                yield Button(f"Revoke {plural(grants, 'grant')}", id="revoke", variant="error",
                             disabled=True)

    def typed_ok(self) -> bool:
        return self.query_one("#confirm-input", Input).value.strip().upper() == self.suffix.upper()

    @on(Input.Changed, "#confirm-input")
    def _typed(self) -> None:
        self.query_one("#revoke", Button).disabled = not self.typed_ok()

    @on(Input.Submitted, "#confirm-input")
    def _submitted(self) -> None:
        if self.typed_ok():
            self.dismiss(True)
        else:
            self.app.bell()

    @on(Button.Pressed, "#revoke")
    def _revoke(self) -> None:
        if self.typed_ok():
            self.dismiss(True)

    @on(Button.Pressed, "#cancel")
    def action_cancel(self) -> None:
        self.dismiss(False)
