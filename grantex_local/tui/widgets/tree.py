"""The delegation tree: principals → root grants → delegated grants, loaded as nodes open.

Why lazy: a ledger can hold 100,000 grants; the first screen asks the library
for the principals only (one grouped query), and each level is one page query
when its node opens. Small ledgers (the demo) are opened all the way down so a
new user sees whole trees at once.

Refreshing after a change keeps what the user had open: every expanded node
re-reads its children; unchanged lists are relabelled in place, changed ones
rebuilt, and the cursor goes back to the same grant.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, ClassVar, Literal

from rich.text import Text
from textual.binding import Binding, BindingType
from textual.message import Message
from textual.widgets import Tree
from textual.widgets.tree import TreeNode, UnknownNodeID

from ..data import GRANT_PAGE, PRINCIPAL_PAGE, GrantNode, Page, PrincipalNode, TreeFilter, TuiData
from ..format import badge, plural, short_id, shown
from ..jobs import db_job

MOVE = Binding.Group("Move")

Kind = Literal["root", "principal", "grant", "more"]


@dataclass
class NodeData:
    """What a tree node stands for, and how much of its children is loaded."""

    kind: Kind
    key: str
    principal: PrincipalNode | None = None
    grant: GrantNode | None = None
    loaded: int = 0
    total: int = 0
    fetched: bool = False


def principal_key(p: PrincipalNode) -> str:
    return f"p:{p.developer_id}:{p.principal_id}"


def principal_label(p: PrincipalNode, flt: TreeFilter) -> Text:
    text = Text(shown(p.principal_id), style="bold")
    if p.several_developers:
        text.append(f" ({shown(p.developer_name)})", style="italic")
    if flt.narrows_grants:
        text.append(f"  {plural(p.grants, 'matching grant')}", style="dim")
    else:
        text.append(f"  {plural(p.roots, 'tree')} · {plural(p.grants, 'grant')} · {p.active:,} active",
                    style="dim")
    return text


def grant_label(g: GrantNode) -> Text:
    """Status badge first (it must survive a narrow terminal), then agent, scopes, depth, id tail."""
    dim = g.status in ("revoked", "expired")
    text = badge(g.status)
    text.append(" ")
    text.append(shown(g.agent_name),
                style="strike dim" if g.status == "revoked" else ("dim" if dim else "bold"))
    text.append(f" · {plural(len(g.scopes), 'scope')} · depth {g.depth} · {short_id(g.id)}", style="dim")
    return text


def more_label(remaining: int, page: int) -> Text:
    return Text(f"… {remaining:,} more (enter loads {min(page, remaining):,})", style="italic dim")


class DelegationTree(Tree[NodeData]):
    """Principals and their delegation trees, one lazily loaded level at a time."""

    class FirstLoad(Message):
        """The principals are on screen: the first screen is usable."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("j", "cursor_down", "Down", group=MOVE),
        Binding("k", "cursor_up", "Up", group=MOVE),
        Binding("l", "open", "Open", show=False),
        Binding("h", "close_or_parent", "Close / parent", show=False),
    ]

    def __init__(self, data: TuiData, *, expand_limit: int = 300, id: str | None = None) -> None:
        super().__init__("ledger", NodeData("root", "root"), id=id)
        self.show_root = False
        self.guide_depth = 3
        self.data_source = data
        self.expand_limit = expand_limit
        self.filter = TreeFilter()
        self._open_all = False
        self._want_open: set[str] = set()
        self._want_cursor: str | None = None
        self.loaded_once = False

    # ── what is selected ─────────────────────────────────────────────────

    @property
    def cursor_grant(self) -> GrantNode | None:
        node = self.cursor_node
        return node.data.grant if node is not None and node.data is not None else None

    @property
    def cursor_principal(self) -> PrincipalNode | None:
        node = self.cursor_node
        return node.data.principal if node is not None and node.data is not None else None

    def find(self, key: str) -> TreeNode[NodeData] | None:
        stack = [self.root]
        while stack:
            node = stack.pop()
            if node.data is not None and node.data.key == key:
                return node
            stack.extend(node.children)
        return None

    def _alive(self, node: TreeNode[NodeData]) -> bool:
        if node is self.root:
            return True
        try:
            return self.get_node_by_id(node.id) is node
        except UnknownNodeID:
            return False

    # ── loading ──────────────────────────────────────────────────────────

    def load(self, flt: TreeFilter | None = None, *, open_path: tuple[str, ...] = (),
             title: str = "Delegation trees") -> None:
        """Start again from the principals (with a new filter); ``open_path`` opens down to a grant.

        The old tree stays until the new first level has arrived, so a filter the
        library refuses leaves the screen as it was (the error is a notification).
        """
        new_filter = self.filter if flt is None else flt
        source = self.data_source

        def show(page: Page[Any]) -> None:
            self.filter = new_filter
            self.border_title = title
            self.clear()
            self.move_cursor(None)
            self.root.data = NodeData("root", "root")
            # A small forest opens all the way down; a big one level by level.
            self._open_all = sum(p.grants for p in page.items) <= self.expand_limit and not page.remaining
            self._want_open = {f"g:{gid}" for gid in open_path[:-1]}
            self._want_cursor = f"g:{open_path[-1]}" if open_path else None
            self._fill(self.root, page, append=False)

        db_job(self, lambda: source.principals(new_filter), show, group="tree")

    def _fetch(self, node: TreeNode[NodeData], *, more: bool = False) -> None:
        """Read one page of ``node``'s children (the next page when ``more``)."""
        data = node.data
        assert data is not None
        offset = data.loaded if more else 0
        flt, source = self.filter, self.data_source

        def job() -> Page[Any]:
            if data.kind == "root":
                return source.principals(flt, offset)
            if data.kind == "principal":
                assert data.principal is not None
                return source.principal_grants(data.principal, flt, offset)
            assert data.grant is not None
            return source.child_grants(data.grant.id, offset)

        db_job(self, job, lambda page: self._fill(node, page, append=more), group="tree")

    def _fill(self, node: TreeNode[NodeData], page: Page[Any], *, append: bool) -> None:
        if not self._alive(node) or node.data is None:
            return
        data = node.data
        if not append:
            node.remove_children()
            data.loaded = 0
        else:
            for child in list(node.children):
                if child.data is not None and child.data.kind == "more":
                    child.remove()
        for item in page.items:
            self._add_item(node, item)
        data.loaded += len(page.items)
        data.total = page.total
        data.fetched = True
        if page.remaining:
            node.add_leaf(more_label(page.remaining, self._page_size(data)),
                          NodeData("more", f"m:{data.key}"))
        if data.kind == "root":
            if not self.loaded_once:
                self.post_message(self.FirstLoad())
            self.loaded_once = True
            if self.cursor_line < 0 and node.children and self._want_cursor is None:
                self._goto(node.children[0])
        self._settle_cursor()

    def _page_size(self, data: NodeData) -> int:
        return PRINCIPAL_PAGE if data.kind == "root" else GRANT_PAGE

    def _add_item(self, parent: TreeNode[NodeData], item: PrincipalNode | GrantNode) -> None:
        # Not _add_child: that name is Textual's own (DOMNode._add_child mounts a widget).
        if isinstance(item, PrincipalNode):
            key = principal_key(item)
            child = parent.add(principal_label(item, self.filter), NodeData("principal", key, principal=item))
        else:
            key = f"g:{item.id}"
            child = parent.add(grant_label(item), NodeData("grant", key, grant=item),
                               allow_expand=item.children > 0)
        if child.allow_expand and (self._open_all or key in self._want_open or self._opens_path(item)):
            child.expand()

    def _opens_path(self, item: PrincipalNode | GrantNode) -> bool:
        """With a search, open the principal that holds the found grant's tree."""
        return isinstance(item, PrincipalNode) and self.filter.grant_id is not None

    def _settle_cursor(self) -> None:
        if self._want_cursor is None:
            return
        node = self.find(self._want_cursor)
        if node is not None:
            self._want_cursor = None
            self._goto(node)

    def _goto(self, node: TreeNode[NodeData]) -> None:
        """Put the cursor on ``node`` once the tree has laid out its lines."""

        def go() -> None:
            if self._alive(node):
                self.move_cursor(node)

        self.call_after_refresh(go)

    def on_tree_node_expanded(self, event: Tree.NodeExpanded[NodeData]) -> None:
        event.stop()
        data = event.node.data
        if data is not None and not data.fetched and data.kind in ("principal", "grant"):
            data.fetched = True
            self._fetch(event.node)

    def on_tree_node_selected(self, event: Tree.NodeSelected[NodeData]) -> None:
        node = event.node
        if node.data is not None and node.data.kind == "more" and node.parent is not None:
            event.stop()
            parent = node.parent
            node.set_label(Text("loading…", style="italic dim"))
            self._fetch(parent, more=True)

    # ── refreshing in place ──────────────────────────────────────────────

    def reload(self) -> None:
        """Re-read every open level; keep what is open and where the cursor is.

        Closed nodes drop the children they had loaded (those may be stale now);
        opening them again reads them afresh.
        """
        self._forget_closed(self.root)
        opened = self._opened()
        if not self.loaded_once or not opened:
            return
        cursor = self.cursor_node
        if cursor is not None and cursor.data is not None and cursor.data.kind != "more":
            self._want_cursor = cursor.data.key
        self._want_open = {n.data.key for n in opened if n.data is not None}
        flt, source = self.filter, self.data_source
        specs = [(n, replace(n.data)) for n in opened if n.data is not None]

        def job() -> list[tuple[TreeNode[NodeData], Page[Any]]]:
            out = []
            for node, data in specs:
                limit = max(self._page_size(data), data.loaded)
                if data.kind == "root":
                    page: Page[Any] = source.principals(flt, 0, limit)
                elif data.kind == "principal":
                    assert data.principal is not None
                    page = source.principal_grants(data.principal, flt, 0, limit)
                else:
                    assert data.grant is not None
                    page = source.child_grants(data.grant.id, 0, limit)
                out.append((node, page))
            return out

        db_job(self, job, self._reconcile, group="tree-reload", exclusive=True)

    def _forget_closed(self, node: TreeNode[NodeData]) -> None:
        for child in node.children:
            data = child.data
            if data is None or not data.fetched:
                continue
            if child.is_expanded:
                self._forget_closed(child)
            else:
                child.remove_children()
                data.fetched, data.loaded = False, 0

    def _opened(self) -> list[TreeNode[NodeData]]:
        """Nodes whose children are on screen, parents before children."""
        out, queue = [], [self.root]
        while queue:
            node = queue.pop(0)
            if node.data is not None and node.data.fetched and (node is self.root or node.is_expanded):
                out.append(node)
                queue.extend(node.children)
        return out

    def _reconcile(self, results: list[tuple[TreeNode[NodeData], Page[Any]]]) -> None:
        for node, page in results:
            if not self._alive(node) or node.data is None:
                continue
            if node is self.root and not page.items:
                self._fill(node, page, append=False)
                continue
            current = [c for c in node.children if c.data is not None and c.data.kind != "more"]
            keys = [principal_key(i) if isinstance(i, PrincipalNode) else f"g:{i.id}" for i in page.items]
            if [c.data.key for c in current if c.data is not None] != keys:
                self._fill(node, page, append=False)  # something appeared or moved: rebuild this level
                continue
            for child, item in zip(current, page.items, strict=True):
                self._update(child, item)
            node.data.total = page.total
            for child in list(node.children):
                if child.data is not None and child.data.kind == "more":
                    child.remove()
            if page.remaining:
                node.add_leaf(more_label(page.remaining, self._page_size(node.data)),
                              NodeData("more", f"m:{node.data.key}"))
        self._settle_cursor()

    def _update(self, child: TreeNode[NodeData], item: PrincipalNode | GrantNode) -> None:
        data = child.data
        assert data is not None
        if isinstance(item, PrincipalNode):
            data.principal = item
            child.set_label(principal_label(item, self.filter))
        else:
            grew = data.grant is not None and item.children != data.grant.children
            data.grant = item
            child.set_label(grant_label(item))
            child.allow_expand = item.children > 0
            if grew and child.is_expanded:
                self._fetch(child)

    # ── keys ─────────────────────────────────────────────────────────────

    def action_open(self) -> None:
        node = self.cursor_node
        if node is None:
            return
        if node.allow_expand and not node.is_expanded:
            node.expand()
        elif node.children:
            self.move_cursor(node.children[0])

    def action_close_or_parent(self) -> None:
        node = self.cursor_node
        if node is None:
            return
        if node.is_expanded:
            node.collapse()
        elif node.parent is not None and node.parent is not self.root:
            self.move_cursor(node.parent)
