"""The terminal UI, driven by Textual's Pilot on a fixture ledger; every outcome is read back from the FILE.

The fixture is built with ids from ``ids.deterministic`` and a fixed clock, so
ids, DIDs and time stamps are the same on every run (the snapshot tests use it
too). Keys, codes and token strings stay random and are never asserted on.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import shutil
import sqlite3
from collections.abc import AsyncIterator, Callable, Coroutine, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("textual")

from textual.pilot import Pilot
from textual.widgets import Button, Input
from textual.worker import WorkerState

from grantex_local import Grantex, Ledger, grants, ids, tokens
from grantex_local.clock import parse_iso
from grantex_local.developers import create_developer
from grantex_local.tui.app import GrantexApp
from grantex_local.tui.commands import PALETTE
from grantex_local.tui.data import TuiData
from grantex_local.tui.screens import (
    CodeScreen,
    ConfirmScreen,
    HelpScreen,
    MainScreen,
    RevokeGrantScreen,
    RevokeTokenScreen,
)
from grantex_local.tui.widgets.audit import chain_text

START = 1_767_268_800.0  # 2026-01-01T12:00:00Z
APP_NOW = START + 3600.0  # the app looks at the ledger one hour after it was built
SEED = 4
SIZE = (120, 36)
TRAVEL = ["com.example.travel:search", "com.example.travel:book"]
TRIGGERS = tuple(f"{t}_no_{v}" for t in ("audit_entries", "audit_merkle", "audit_checkpoints")
                 for v in ("update", "delete"))


def sync(test: Callable[..., Coroutine[Any, Any, None]]) -> Callable[..., None]:
    """Run an async test with asyncio.run (no async pytest plugin needed); fixtures still apply."""

    @functools.wraps(test)
    def run(*args: Any, **kwargs: Any) -> None:
        asyncio.run(test(*args, **kwargs))

    return run


class StepClock:
    """Starts at START; the builder moves it forward between steps."""

    def __init__(self) -> None:
        self.now = START

    def __call__(self) -> float:
        return self.now


@dataclass(frozen=True)
class Fixture:
    """Ids of the fixture's interesting grants (deterministic: same values every run)."""

    alice_root: str
    alice_flight: str
    alice_fare: str  # depth 2
    alice_hotel: str
    bob_root: str
    bob_searcher: str  # revoked branch
    carol_root: str  # expired by APP_NOW
    dave_root: str  # agent suspended
    request_id: str  # acme-labs' pending request
    partner_agent: str
    flight_agent: str


def build_fixture(path: Path) -> Fixture:
    """Every state the TUI shows: depth 2, a revoked branch, an expired grant, a suspended agent,
    a pending request of a non-sandbox developer, and agent actions in the chain."""
    clock = StepClock()
    with ids.deterministic(SEED, int(START * 1000)), Ledger(path, clock=clock) as ledger:
        gx = Grantex(ledger)

        def agent(name: str, scopes: list[str], description: str = "") -> Any:
            return gx.agents.register(name=name, scopes=scopes, description=description)

        def root(who: Any, principal: str, scopes: list[str], expires_in: str = "24h") -> Any:
            auth = gx.authorize(agent_id=who.id, user_id=principal, scopes=scopes, expires_in=expires_in)
            return gx.tokens.exchange(code=auth.code, agent_id=who.id)

        def delegate(parent: Any, who: Any, scopes: list[str], expires_in: str = "8h") -> Any:
            return gx.grants.delegate(parent_grant_token=parent.grant_token, sub_agent_id=who.id,
                                      scopes=scopes, expires_in=expires_in)

        booker = agent("travel-booker", ["calendar:read", *TRAVEL, "payments:initiate"], "Books trips")
        flights = agent("flight-finder", [*TRAVEL, "payments:initiate"], "Finds flights")
        fares = agent("fare-watcher", ["com.example.travel:search"], "Watches fares")
        hotels = agent("hotel-scout", [*TRAVEL], "Finds hotels")
        research = agent("research-assistant", ["files:read", "com.example.search:query"])
        searcher = agent("web-searcher", ["com.example.search:query"])
        summariser = agent("summariser", ["files:read"])
        triage = agent("inbox-triage", ["email:read", "email:send"])
        clock.now += 60
        a_root = root(booker, "user_alice", ["calendar:read", *TRAVEL, "payments:initiate:max_5000"])
        a_flight = delegate(a_root, flights, [*TRAVEL, "payments:initiate:max_3000"])
        a_fare = delegate(a_flight, fares, ["com.example.travel:search"], "2h")
        a_hotel = delegate(a_root, hotels, TRAVEL)
        gx.audit.log(agent_id=flights.id, grant_id=a_flight.grant_id, action="flights.search",
                     metadata={"from": "LIS", "to": "BER"})
        gx.audit.log(agent_id=flights.id, grant_id=a_flight.grant_id, action="flights.book",
                     status="failure", metadata={"reason": "fare changed"})
        clock.now += 60
        b_root = root(research, "user_bob", ["files:read", "com.example.search:query"])
        b_searcher = delegate(b_root, searcher, ["com.example.search:query"], "2h")
        delegate(b_root, summariser, ["files:read"], "2h")
        gx.grants.revoke(b_searcher.grant_id)
        clock.now += 60
        c_root = root(booker, "user_carol", ["calendar:read"], "30m")
        d_root = root(triage, "user_dave", ["email:read", "email:send"])
        gx.agents.suspend(triage.id)
        clock.now = APP_NOW - 10
        partner = create_developer(ledger, "acme-labs", sandbox=False)
        pgx = Grantex(ledger, developer_id=partner.id)
        scheduler = pgx.agents.register(name="acme-scheduler", scopes=["calendar:read", "calendar:write"],
                                        description="Schedules meetings with Acme Labs' customers")
        request = pgx.authorize(agent_id=scheduler.id, user_id="user_alice",
                                scopes=["calendar:read", "calendar:write"], expires_in="8h")
    return Fixture(a_root.grant_id, a_flight.grant_id, a_fare.grant_id, a_hotel.grant_id, b_root.grant_id,
                   b_searcher.grant_id, c_root.grant_id, d_root.grant_id, request.request_id, scheduler.id,
                   flights.id)


@pytest.fixture(scope="session")
def fixture_template(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Fixture]:
    path = tmp_path_factory.mktemp("tui-template") / "grantex.db"
    return path, build_fixture(path)


def copy_fixture(template: tuple[Path, Fixture], directory: Path) -> tuple[Path, Fixture]:
    """A fresh copy of the fixture ledger (always named grantex.db: the header shows the name)."""
    source, ids_ = template
    target = directory / "grantex.db"
    for suffix in ("", "-wal"):
        if Path(f"{source}{suffix}").exists():
            shutil.copy(f"{source}{suffix}", f"{target}{suffix}")
    return target, ids_


@pytest.fixture
def fx(fixture_template: tuple[Path, Fixture], tmp_path: Path) -> tuple[Path, Fixture]:
    return copy_fixture(fixture_template, tmp_path)


def make_app(path: Path, *, read_only: bool = False, expand_limit: int = 300,
             poll_seconds: float = 0.2) -> GrantexApp:
    ledger = Ledger(path, create=False, clock=lambda: APP_NOW)
    return GrantexApp(TuiData(ledger, read_only=read_only), expand_limit=expand_limit,
                      poll_seconds=poll_seconds)


@pytest.fixture
def app_factory() -> Iterator[Callable[..., GrantexApp]]:
    """Makes apps on a ledger path and closes their ledgers after the test."""
    made: list[GrantexApp] = []

    def make(path: Path, **kwargs: Any) -> GrantexApp:
        app = make_app(path, **kwargs)
        made.append(app)
        return app

    yield make
    for app in made:
        app.data.close()


async def settle(pilot: Pilot[Any], rounds: int = 3) -> None:
    """Let every database worker finish and its result reach the screen."""
    for _ in range(rounds):
        for _ in range(1000):
            if not any(w.state in (WorkerState.PENDING, WorkerState.RUNNING) for w in pilot.app.workers):
                break
            await asyncio.sleep(0.005)
        await pilot.pause()


@contextlib.asynccontextmanager
async def started(app: GrantexApp) -> AsyncIterator[Pilot[Any]]:
    """The app running headless at the test size, its first screen loaded."""
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        yield pilot


async def wait_until(pilot: Pilot[Any], check: Callable[[], bool], seconds: float = 4.0) -> None:
    for _ in range(int(seconds / 0.05)):
        if check():
            return
        await pilot.pause(0.05)
    assert check(), "condition not met in time"


async def type_text(pilot: Pilot[Any], text: str) -> None:
    """Type into the focused input at once (pressing one key per character is slow in Pilot)."""
    focused = pilot.app.focused
    assert isinstance(focused, Input), focused
    focused.insert_text_at_cursor(text)
    await pilot.pause()


def main(app: GrantexApp) -> MainScreen:
    return app.main


async def move_to(pilot: Pilot[Any], grant_id: str) -> None:
    """Press j until the tree's cursor is on ``grant_id`` (fails if it never gets there)."""
    app = pilot.app
    assert isinstance(app, GrantexApp)
    tree = main(app).tree
    for _ in range(60):
        grant = tree.cursor_grant
        if grant is not None and grant.id == grant_id:
            await settle(pilot)
            return
        await pilot.press("j")
    raise AssertionError(f"never reached {grant_id}")


def grant_rows(path: Path) -> dict[str, str | None]:
    conn = sqlite3.connect(path)
    try:
        return dict(conn.execute("SELECT id, revoked_at FROM grants").fetchall())
    finally:
        conn.close()


def ledger_state(path: Path) -> tuple[Any, ...]:
    """Everything a write could change, read straight from the file."""
    conn = sqlite3.connect(path)
    try:
        return tuple(conn.execute(sql).fetchall() for sql in (
            "SELECT id, revoked_at FROM grants ORDER BY id",
            "SELECT jti, revoked_at FROM tokens ORDER BY jti",
            "SELECT id, status FROM agents ORDER BY id",
            "SELECT id, status FROM auth_requests ORDER BY id",
            "SELECT count(*) FROM audit_entries",
            "SELECT count(*) FROM audit_checkpoints",
        ))
    finally:
        conn.close()


async def open_revoke_dialog(pilot: Pilot[Any], grant_id: str) -> RevokeGrantScreen:
    await move_to(pilot, grant_id)
    await pilot.press("r")
    await settle(pilot)
    screen = pilot.app.screen
    assert isinstance(screen, RevokeGrantScreen)
    return screen


# ── the delegation tree ──────────────────────────────────────────────────────


@sync
async def test_tree_shows_every_principal_and_the_demo_states(fx: tuple[Path, Fixture],
                                                              app_factory: Callable[..., GrantexApp]) -> None:
    path, f = fx
    app = app_factory(path)
    async with started(app):
        tree = main(app).tree
        principals = [n.data.principal.principal_id for n in tree.root.children]  # type: ignore[union-attr]
        assert principals == ["user_alice", "user_bob", "user_carol", "user_dave"]
        labels = {n.data.grant.id: n.label.plain for n in _walk(tree.root) if n.data.grant}  # type: ignore[union-attr]
        assert "[ACTIVE]" in labels[f.alice_fare] and "depth 2" in labels[f.alice_fare]
        assert "[REVOKED]" in labels[f.bob_searcher]
        assert "[EXPIRED]" in labels[f.carol_root]
        assert "[AGENT SUSPENDED]" in labels[f.dave_root]
        assert "fare-watcher" in labels[f.alice_fare] and "1 scope " in labels[f.alice_fare]


def _walk(node: Any) -> Iterator[Any]:
    for child in node.children:
        yield child
        yield from _walk(child)


@sync
async def test_tree_loads_children_only_when_a_node_opens(fx: tuple[Path, Fixture],
                                                          app_factory: Callable[..., GrantexApp]) -> None:
    """With lazy loading forced (expand_limit=0), reach the depth-2 grant by opening nodes with keys."""
    path, f = fx
    app = app_factory(path, expand_limit=0)
    async with started(app) as pilot:
        tree = main(app).tree
        assert all(not n.children for n in tree.root.children), "nothing below the principals yet"
        assert tree.cursor_principal is not None and tree.cursor_principal.principal_id == "user_alice"
        await pilot.press("l")  # open user_alice
        await settle(pilot)
        await pilot.press("j")  # travel-booker root
        await settle(pilot)
        assert tree.cursor_grant is not None and tree.cursor_grant.id == f.alice_root
        assert tree.cursor_node is not None and not tree.cursor_node.children
        await pilot.press("enter")  # enter opens too
        await settle(pilot)
        await pilot.press("down")  # flight-finder (arrows work as well as j/k)
        await pilot.press("l")
        await settle(pilot)
        await pilot.press("j")
        await settle(pilot)
        assert tree.cursor_grant is not None and tree.cursor_grant.id == f.alice_fare
        detail = main(app).detail
        assert detail is not None and detail.grant.id == f.alice_fare
        assert detail.grant.delegation_depth == 2
        assert [link.grant_id for link in detail.chain] == [f.alice_flight, f.alice_root]
        await pilot.press("h", "h")  # up to flight-finder, which is then closed by the next h
        assert tree.cursor_grant is not None and tree.cursor_grant.id == f.alice_flight


class TwoPerPage(TuiData):
    """The data layer with pages of two principals, to reach the "… more" node with four."""

    def principals(self, flt: Any, offset: int = 0, limit: int = 2) -> Any:
        return super().principals(flt, offset, min(limit, 2) if offset == 0 and limit > 2 else limit)


@sync
async def test_long_levels_load_a_page_at_a_time(fx: tuple[Path, Fixture]) -> None:
    path, _ = fx
    data = TwoPerPage(Ledger(path, create=False, clock=lambda: APP_NOW))
    try:
        app = GrantexApp(data, poll_seconds=0)
        async with started(app) as pilot:
            tree = main(app).tree
            kinds = [n.data.kind for n in tree.root.children]  # type: ignore[union-attr]
            assert kinds == ["principal", "principal", "more"]
            assert "2 more" in tree.root.children[-1].label.plain
            tree.move_cursor(tree.root.children[-1])
            await pilot.press("enter")
            await settle(pilot)
            people = [n.data.principal.principal_id for n in tree.root.children]  # type: ignore[union-attr]
            assert people == ["user_alice", "user_bob", "user_carol", "user_dave"]
    finally:
        data.close()


@sync
async def test_grant_detail_shows_what_the_issue_asks_for(fx: tuple[Path, Fixture],
                                                          app_factory: Callable[..., GrantexApp]) -> None:
    path, f = fx
    app = app_factory(path)
    async with started(app) as pilot:
        await move_to(pilot, f.alice_flight)
        detail = main(app).detail
        assert detail is not None
        assert detail.agent.name == "flight-finder" and detail.agent.did.startswith("did:grantex:ag_")
        assert detail.grant.principal_id == "user_alice"
        assert ("payments:initiate:max_3000", "Initiate payments up to 3000 in the account's base currency") \
            in detail.scopes
        assert [link.grant_id for link in detail.chain] == [f.alice_root]
        assert len(detail.tokens) == 1 and detail.tokens[0].delegated_grants == 1
        assert [e.action for e in detail.audit][:3] == ["flights.book", "flights.search",
                                                       "grantex.grant.delegated"]
        assert detail.audit[0].status == "failure"


@sync
async def test_filter_by_status_and_find_by_id(fx: tuple[Path, Fixture],
                                               app_factory: Callable[..., GrantexApp]) -> None:
    path, f = fx
    app = app_factory(path)
    async with started(app) as pilot:
        tree = main(app).tree
        await pilot.press("f")
        await type_text(pilot, "status=revoked")
        await pilot.press("enter")
        await settle(pilot)
        shown = [n.data.grant.id for n in _walk(tree.root) if n.data.grant]  # type: ignore[union-attr]
        assert shown == [f.bob_searcher]
        await pilot.press("escape")  # clears the filter
        await settle(pilot)
        assert len([n for n in _walk(tree.root) if n.data.grant]) == 9  # type: ignore[union-attr]
        await pilot.press("slash")
        await type_text(pilot, f.alice_fare)
        await pilot.press("enter")
        await settle(pilot)
        assert [n.data.principal.principal_id for n in tree.root.children] == ["user_alice"]  # type: ignore[union-attr]
        await wait_until(pilot, lambda: tree.cursor_grant is not None
                         and tree.cursor_grant.id == f.alice_fare)
        await pilot.press("slash")  # a filter that does not parse is reported, not raised
        await type_text(pilot, "colour=red")
        await pilot.press("enter")
        await settle(pilot)
        assert any("unknown filter" in n.message for n in app._notifications)


# ── revoking ─────────────────────────────────────────────────────────────────


@sync
async def test_revoke_root_from_a_depth_2_grant_revokes_the_whole_subtree(
        fx: tuple[Path, Fixture], app_factory: Callable[..., GrantexApp]) -> None:
    """Navigate to the depth-2 grant, climb to its root, revoke it through the dialog; read the file."""
    path, f = fx
    before = grant_rows(path)
    app = app_factory(path)
    async with started(app) as pilot:
        tree = main(app).tree
        await move_to(pilot, f.alice_fare)
        assert main(app).detail is not None and main(app).detail.grant.delegation_depth == 2  # type: ignore[union-attr]
        await pilot.press("h", "h", "h")  # to flight-finder, close it, to its parent: the root
        assert tree.cursor_grant is not None and tree.cursor_grant.id == f.alice_root
        await pilot.press("r")
        await settle(pilot)
        dialog = app.screen
        assert isinstance(dialog, RevokeGrantScreen)
        assert dialog.radius.descendants == 3 and dialog.radius.live_tokens == 4
        assert set(dialog.radius.agents) == {"travel-booker", "flight-finder", "fare-watcher", "hotel-scout"}
        assert app.focused is not None and app.focused.id == "cancel"
        revoke = dialog.query_one("#revoke", Button)
        assert revoke.disabled
        await pilot.press("tab")  # to the confirmation field
        assert isinstance(app.focused, Input)
        await pilot.press(*"ZZZZZZ")
        assert revoke.disabled
        await pilot.press(*["backspace"] * 6, *f.alice_root[-6:].lower())  # case does not matter
        assert not revoke.disabled
        await pilot.press("enter")
        await settle(pilot)
        await wait_until(pilot, lambda: "[REVOKED]" in (tree.find(f"g:{f.alice_root}").label.plain  # type: ignore[union-attr]
                                                          if tree.find(f"g:{f.alice_root}") else ""))
        for grant_id in (f.alice_flight, f.alice_hotel):
            assert "[REVOKED]" in tree.find(f"g:{grant_id}").label.plain  # type: ignore[union-attr]
        await wait_until(pilot, lambda: any("Revoked 4 grants in one transaction" in n.message
                                            for n in app._notifications))
        assert isinstance(app.screen, MainScreen)
        await move_to(pilot, f.alice_flight)
        await pilot.press("l")  # opened again, flight-finder's children are read afresh
        await settle(pilot)
        assert "[REVOKED]" in tree.find(f"g:{f.alice_fare}").label.plain  # type: ignore[union-attr]
    after = grant_rows(path)
    subtree = {f.alice_root, f.alice_flight, f.alice_fare, f.alice_hotel}
    assert all(after[g] is not None for g in subtree)
    assert len({after[g] for g in subtree}) == 1, "one transaction: one revokedAt for the whole subtree"
    others = set(after) - subtree
    assert {g: after[g] for g in others} == {g: before[g] for g in others}


@sync
async def test_cancel_enter_on_cancel_and_escape_leave_the_ledger_unchanged(
        fx: tuple[Path, Fixture], app_factory: Callable[..., GrantexApp]) -> None:
    path, f = fx
    before = ledger_state(path)
    app = app_factory(path)
    async with started(app) as pilot:
        await open_revoke_dialog(pilot, f.alice_root)
        await pilot.press("enter")  # focus starts on Cancel: a stray enter cancels
        await settle(pilot)
        assert isinstance(app.screen, MainScreen)
        await pilot.press("r")
        await settle(pilot)
        await pilot.press("tab", *f.alice_root[-6:])  # confirmed text typed ...
        await pilot.press("escape")  # ... and escape still cancels
        await settle(pilot)
        assert isinstance(app.screen, MainScreen)
        await pilot.press("r")
        await settle(pilot)
        await pilot.press("y")  # the revoke dialog has no y shortcut
        await pilot.click("#cancel")
        await settle(pilot)
        assert isinstance(app.screen, MainScreen)
    assert ledger_state(path) == before


@sync
async def test_revoke_one_token_and_what_was_delegated_from_it(
        fx: tuple[Path, Fixture], app_factory: Callable[..., GrantexApp]) -> None:
    path, f = fx
    app = app_factory(path)
    async with started(app) as pilot:
        await move_to(pilot, f.alice_flight)
        await pilot.press("t")
        await settle(pilot)
        dialog = app.screen
        assert isinstance(dialog, RevokeTokenScreen) and len(dialog.tokens) == 1
        assert app.focused is not None and app.focused.id == "cancel"
        await pilot.press("escape")
        await settle(pilot)
        assert all(r[1] is None for r in _tokens(path, f.alice_flight))
        await pilot.press("t")
        await settle(pilot)
        await pilot.click("#confirm")
        await settle(pilot)
    assert all(r[1] is not None for r in _tokens(path, f.alice_flight))
    rows = grant_rows(path)
    assert rows[f.alice_fare] is not None, "the grant delegated from that token is revoked with it"
    assert rows[f.alice_flight] is None and rows[f.alice_root] is None


def _tokens(path: Path, grant_id: str) -> list[tuple[str, str | None]]:
    conn = sqlite3.connect(path)
    try:
        return conn.execute("SELECT jti, revoked_at FROM tokens WHERE grant_id = ?", (grant_id,)).fetchall()
    finally:
        conn.close()


@sync
async def test_suspend_and_reactivate_an_agent(fx: tuple[Path, Fixture],
                                               app_factory: Callable[..., GrantexApp]) -> None:
    path, f = fx

    def status() -> str:
        conn = sqlite3.connect(path)
        try:
            return conn.execute("SELECT status FROM agents WHERE id = ?", (f.flight_agent,)).fetchone()[0]
        finally:
            conn.close()

    app = app_factory(path)
    async with started(app) as pilot:
        await move_to(pilot, f.alice_flight)
        await pilot.press("s")
        await settle(pilot)
        assert isinstance(app.screen, ConfirmScreen)
        await pilot.press("n")
        await settle(pilot)
        assert status() == "active"
        await pilot.press("s")
        await settle(pilot)
        await pilot.press("y")
        await settle(pilot)
        assert status() == "suspended"
        tree = main(app).tree
        await wait_until(pilot, lambda: "[AGENT SUSPENDED]" in tree.find(f"g:{f.alice_flight}").label.plain)  # type: ignore[union-attr]
        await pilot.press("u")
        await settle(pilot)
        await pilot.press("y")
        await settle(pilot)
        assert status() == "active"


@sync
async def test_a_refused_action_is_a_notification_not_a_crash(
        fx: tuple[Path, Fixture], app_factory: Callable[..., GrantexApp]) -> None:
    """Another process revokes the grant while the dialog is open: the library refuses, the app says so."""
    path, f = fx
    app = app_factory(path, poll_seconds=0)
    async with started(app) as pilot:
        await open_revoke_dialog(pilot, f.alice_hotel)
        with Ledger(path, create=False) as other:
            grants.revoke(other, None, f.alice_hotel)
        await pilot.press("tab", *f.alice_hotel[-6:], "enter")
        await settle(pilot)
        assert any(n.severity == "error" and "already revoked" in n.message for n in app._notifications)
        assert app.is_running


# ── consent ──────────────────────────────────────────────────────────────────


@sync
async def test_approving_in_the_inbox_yields_a_code_that_exchanges_for_a_token(
        fx: tuple[Path, Fixture], app_factory: Callable[..., GrantexApp]) -> None:
    path, f = fx
    app = app_factory(path)
    async with started(app) as pilot:
        await pilot.press("2")
        await settle(pilot)
        inbox = main(app).inbox
        assert [r.request.request_id for r in inbox.rows] == [f.request_id]
        details = inbox.details
        assert details is not None
        assert details["agent"]["name"] == "acme-scheduler" and details["developer"]["name"] == "acme-labs"
        assert [s["description"] for s in details["scopes"]] == [
            "Read calendar events", "Create, modify, and delete calendar events"]
        await pilot.press("a")
        await settle(pilot)
        assert isinstance(app.screen, ConfirmScreen)
        assert app.focused is not None and app.focused.id == "cancel"
        await pilot.press("y")
        await settle(pilot)
        shown = app.screen
        assert isinstance(shown, CodeScreen) and shown.code
        await pilot.press("c")
        assert app.clipboard == shown.code
        await pilot.press("escape")
        await settle(pilot)
        await wait_until(pilot, lambda: not inbox.rows)
    with Ledger(path, create=False, clock=lambda: APP_NOW + 5) as ledger:  # the agent, seconds later
        partner = ledger.query_one("SELECT developer_id FROM agents WHERE id = ?", (f.partner_agent,))[0]  # type: ignore[index]
        gx = Grantex(ledger, developer_id=partner)
        issued = gx.tokens.exchange(code=app.clipboard, agent_id=f.partner_agent)
        verified = gx.tokens.verify(issued.grant_token)
        assert verified.valid and verified.principal == "user_alice"


@sync
async def test_denying_gives_no_code(fx: tuple[Path, Fixture],
                                     app_factory: Callable[..., GrantexApp]) -> None:
    path, f = fx
    app = app_factory(path)
    async with started(app) as pilot:
        await pilot.press("2")
        await settle(pilot)
        await pilot.press("d")
        await settle(pilot)
        await pilot.press("y")
        await settle(pilot)
        assert isinstance(app.screen, MainScreen)
    conn = sqlite3.connect(path)
    try:
        row = conn.execute("SELECT status, code_hash FROM auth_requests WHERE id = ?",
                           (f.request_id,)).fetchone()
    finally:
        conn.close()
    assert row == ("denied", None)


# ── the audit trail ──────────────────────────────────────────────────────────


@sync
async def test_audit_view_shows_a_break_made_behind_the_apps_back(
        fx: tuple[Path, Fixture], app_factory: Callable[..., GrantexApp]) -> None:
    path, _f = fx
    app = app_factory(path)
    async with started(app) as pilot:
        await pilot.press("3")
        await settle(pilot)
        assert app.chain_state is not None and app.chain_state.ok
        entries = main(app).audit.rows
        assert entries[0].entry.seq > entries[-1].entry.seq or len({r.chain_name for r in entries}) > 1
        conn = sqlite3.connect(path)
        try:
            for trigger in TRIGGERS:
                conn.execute(f"DROP TRIGGER IF EXISTS {trigger}")
            developer = conn.execute("SELECT id FROM developers WHERE is_default = 1").fetchone()[0]
            text = conn.execute("SELECT preimage FROM audit_entries WHERE developer_id = ? AND seq = 5",
                                (developer,)).fetchone()[0]
            assert '"status":"success"' in text
            conn.execute("UPDATE audit_entries SET preimage = ? WHERE developer_id = ? AND seq = 5",
                         (text.replace('"status":"success"', '"status":"failure"'), developer))
            conn.commit()
        finally:
            conn.close()
        await wait_until(pilot, lambda: app.chain_state is not None and not app.chain_state.ok)
        state = app.chain_state
        assert state is not None and state.broken_seq == 5 and state.reason == "content_changed"
        status = chain_text(state, None, False).plain
        assert "CHAIN BROKEN" in status and "seq 5" in status
        shown = main(app).audit.query_one("#chain-status")
        assert shown.has_class("-broken")


@sync
async def test_audit_filter_and_checkpoint(fx: tuple[Path, Fixture],
                                           app_factory: Callable[..., GrantexApp]) -> None:
    path, _f = fx
    app = app_factory(path)
    async with started(app) as pilot:
        await pilot.press("3")
        await settle(pilot)
        audit = main(app).audit
        await pilot.press("f")
        await type_text(pilot, "agent=flight-finder status=failure")
        await pilot.press("enter")
        await settle(pilot)
        assert [r.entry.action for r in audit.rows] == ["flights.book"]
        assert app.chain_state is not None and app.chain_state.uncovered == app.chain_state.entries > 0
        await pilot.press("w")
        await settle(pilot)
        await wait_until(pilot, lambda: app.chain_state is not None and app.chain_state.uncovered == 0)
    conn = sqlite3.connect(path)
    try:
        assert conn.execute("SELECT count(*) FROM audit_checkpoints").fetchone()[0] == 2
    finally:
        conn.close()


@sync
async def test_changes_by_another_process_show_up_by_themselves(
        fx: tuple[Path, Fixture], app_factory: Callable[..., GrantexApp]) -> None:
    path, f = fx
    app = app_factory(path)
    async with started(app) as pilot:
        tree = main(app).tree
        with Ledger(path, create=False) as other:
            grants.revoke(other, None, f.alice_root)
        await wait_until(pilot, lambda: "[REVOKED]" in tree.find(f"g:{f.alice_hotel}").label.plain)  # type: ignore[union-attr]
        assert app.overview is not None


# ── keys, help, palette, auditor mode ────────────────────────────────────────


@sync
async def test_help_lists_every_key_the_footer_shows(fx: tuple[Path, Fixture],
                                                     app_factory: Callable[..., GrantexApp]) -> None:
    path, _ = fx
    app = app_factory(path)
    async with started(app) as pilot:
        footer_actions = {b.action for b in MainScreen.BINDINGS if b.show}  # type: ignore[union-attr]
        assert {"app.help", "app.quit"} <= footer_actions
        help_actions = {b.action for _, bs in app.help_sections() for b in bs}
        assert footer_actions <= help_actions
        assert {"cursor_down", "cursor_up"} <= help_actions
        await pilot.press("question_mark")
        await settle(pilot)
        assert isinstance(app.screen, HelpScreen)
        await pilot.press("q")  # q closes the help, it does not quit
        assert isinstance(app.screen, MainScreen) and app.is_running
        await pilot.press("question_mark")
        await pilot.press("escape")
        assert isinstance(app.screen, MainScreen)


def test_every_palette_command_names_a_real_action() -> None:
    for command in PALETTE:
        name = command.action.removeprefix("app.").split("(")[0]
        owner = GrantexApp if command.action.startswith("app.") else MainScreen
        assert hasattr(owner, f"action_{name}"), command
    palette_actions = {c.action for c in PALETTE}
    for binding in MainScreen.BINDINGS:
        action = binding.action  # type: ignore[union-attr]
        assert action in palette_actions or action in ("clear_filter", "app.quit"), action


@sync
async def test_command_palette_opens_the_revoke_dialog(fx: tuple[Path, Fixture],
                                                       app_factory: Callable[..., GrantexApp]) -> None:
    path, f = fx
    app = app_factory(path)
    async with started(app) as pilot:
        await move_to(pilot, f.alice_hotel)
        await pilot.press("3")  # from another view: the command switches back to the tree
        await pilot.press("ctrl+p")
        await pilot.press(*"revoke sel")
        await pilot.pause(0.3)
        await pilot.press("enter")
        await settle(pilot)
        await wait_until(pilot, lambda: isinstance(app.screen, RevokeGrantScreen))


@sync
async def test_read_only_mode_disables_every_write(fx: tuple[Path, Fixture],
                                                   app_factory: Callable[..., GrantexApp]) -> None:
    path, f = fx
    before = ledger_state(path)
    app = app_factory(path, read_only=True)
    async with started(app) as pilot:
        screen = main(app)
        await move_to(pilot, f.alice_root)
        for action in ("revoke_grant", "revoke_token", "suspend_agent", "reactivate_agent"):
            assert screen.check_action(action, ()) is None, action
        await pilot.press("r", "t", "s", "u")
        await settle(pilot)
        assert isinstance(app.screen, MainScreen)
        await pilot.press("2", "a", "d")
        await settle(pilot)
        assert isinstance(app.screen, MainScreen)
        await pilot.press("3", "w")
        await settle(pilot)
        await screen.run_command("revoke_grant", "grants")
        await settle(pilot)
        assert isinstance(app.screen, MainScreen)
        assert any("read-only" in n.message for n in app._notifications)
    assert ledger_state(path) == before


def _bundle_to_ledger() -> Callable[..., Any]:
    from grantex_local import export

    fn = getattr(export, "bundle_to_ledger", None)
    if fn is None:
        pytest.skip("grantex_local.export.bundle_to_ledger does not exist yet")
    return fn  # type: ignore[no-any-return]


def export_fixture(path: Path, out: Path) -> Path:
    """An export bundle of the fixture ledger (skips the test while bundles cannot be opened)."""
    _bundle_to_ledger()
    from grantex_local.export import export_bundle

    with Ledger(path, create=False, clock=lambda: APP_NOW) as ledger:
        export_bundle(ledger, out)
    return out


@pytest.fixture
def bundle(fx: tuple[Path, Fixture], tmp_path: Path) -> Path:
    return export_fixture(fx[0], tmp_path / "bundle")


@sync
async def test_auditor_mode_opens_a_bundle_read_only(bundle: Path, fx: tuple[Path, Fixture]) -> None:
    data = TuiData.open_bundle(bundle, clock=lambda: APP_NOW)
    try:
        assert data.read_only and data.bundle is not None
        app = GrantexApp(data, poll_seconds=0)
        async with started(app) as pilot:
            screen = main(app)
            assert len(list(_walk(screen.tree.root))) > 4
            assert screen.check_action("revoke_grant", ()) is None
            assert "Bundle" in chain_text(app.chain_state, data.bundle, True).plain
            await pilot.press("r")
            await settle(pilot)
            assert isinstance(app.screen, MainScreen)
    finally:
        data.close()


# ── the library queries the TUI relies on ────────────────────────────────────


def test_principal_summaries_and_browse_grants(fx: tuple[Path, Fixture]) -> None:
    path, f = fx
    with Ledger(path, create=False, clock=lambda: APP_NOW) as ledger:
        people, total = grants.principal_summaries(ledger)
        assert total == 4
        alice = next(p for p in people if p["principalId"] == "user_alice")
        assert (alice["grants"], alice["roots"], alice["active"]) == (4, 1, 4)
        roots, n = grants.browse_grants(ledger, alice["developerId"], principal_id="user_alice",
                                        roots_only=True)
        assert n == 1 and roots[0]["id"] == f.alice_root and roots[0]["children"] == 2
        assert grants.browse_grants(ledger, status="suspended")[0][0]["id"] == f.dave_root
        assert grants.browse_grants(ledger, status="expired")[0][0]["id"] == f.carol_root
        assert {g["id"] for g in grants.browse_grants(ledger, scope="payments")[0]} == {
            f.alice_root, f.alice_flight}
        assert grants.browse_grants(ledger, scope="payments:initiate:max_3000")[1] == 1
        assert grants.browse_grants(ledger, scope="pay")[1] == 0, "a prefix must end at a ':'"
        assert grants.browse_grants(ledger, scope="%")[1] == 0, "LIKE wildcards are literal"
        with pytest.raises(Exception, match="status must be one of"):
            grants.principal_summaries(ledger, status="gone")
        live = tokens.live_tokens(ledger, f.alice_flight)
        assert len(live) == 1 and live[0]["delegatedGrants"] == 1
        assert tokens.live_tokens(ledger, f.bob_searcher) == [], "a revoked grant has no live token"


def test_fixture_is_deterministic(tmp_path: Path, fixture_template: tuple[Path, Fixture]) -> None:
    """Same seed, same clock: the same ids, time stamps and rows (what snapshots rely on)."""
    again = build_fixture(tmp_path / "again.db")
    assert again == fixture_template[1]

    def rows(p: Path) -> list[Any]:
        conn = sqlite3.connect(p)
        try:
            return conn.execute("SELECT id, agent_id, principal_id, scopes, issued_at, expires_at, "
                                "revoked_at FROM grants ORDER BY id").fetchall()
        finally:
            conn.close()

    assert rows(tmp_path / "again.db") == rows(fixture_template[0])
    assert json.dumps(rows(tmp_path / "again.db"))



SAMPLE_BUNDLE = Path(__file__).resolve().parents[1] / "sample_data" / "bundle"


@sync
async def test_auditor_mode_judges_statuses_at_the_bundles_export_time() -> None:
    """The committed sample is a historical export: judged by today's clock nothing would be active."""
    from grantex_local.tui.widgets.overview import OverviewBar, overview_text

    data = TuiData.open_bundle(SAMPLE_BUNDLE)
    try:
        exported = data.bundle.exported_at if data.bundle is not None else None
        assert exported is not None and data.now() == parse_iso(exported)
        app = GrantexApp(data, poll_seconds=0)
        async with started(app) as pilot:
            await wait_until(pilot, lambda: app.overview is not None)
            overview = app.overview
            assert overview is not None and overview.active_grants > 0
            assert main(app).query_one(OverviewBar).overview == overview
            line = overview_text(overview, app.chain_state, read_only=True).plain
            assert f"as of {exported[:10]} {exported[11:19]} UTC (export time)" in line
    finally:
        data.close()


@sync
async def test_the_overview_shows_webhook_deliveries_that_gave_up(tmp_path: Path) -> None:
    from grantex_local import webhooks
    from grantex_local.tui.widgets.overview import overview_text

    path = tmp_path / "hooks.db"
    with Grantex(path) as gx:
        webhooks.create(gx.ledger, gx.developer_id, "http://127.0.0.1:9/hook", ["grant.created"])
        from helpers import grant_for

        grant_for(gx, ["calendar:read"])
        assert webhooks.enqueue_new(gx.ledger) == 1

        def refuse(url: str, body: bytes, headers: Any, timeout: float) -> int:
            return 500

        # with no backoff every retry is due at once: one pass makes every attempt, then gives up
        attempts = webhooks.deliver_due(gx.ledger, http_post=refuse, base_delay=0)
        assert attempts == webhooks.DEFAULT_MAX_ATTEMPTS
        assert webhooks.failed_count(gx.ledger) == 1
    data = TuiData.open(path)
    try:
        app = GrantexApp(data, poll_seconds=0)
        async with started(app) as pilot:
            await wait_until(pilot, lambda: app.overview is not None)
            assert app.overview is not None and app.overview.failed_deliveries == 1
            line = overview_text(app.overview, app.chain_state, read_only=False).plain
            assert "1 webhook delivery failed" in line
    finally:
        data.close()
