"""SVG snapshots of the TUI on the fixed fixture ledger with the ledger's clock frozen.

The fixture (from test_tui) has deterministic ids and time stamps, and the app
reads time only from the ledger's clock, so every run draws the same screen.
Nothing random (keys, tokens, codes, entry hashes, checkpoint ids) is drawn.
Update after an intended change with ``pytest tests/test_tui_snapshots.py --snapshot-update``
and look at the SVGs in ``tests/__snapshots__/`` before committing them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("pytest_textual_snapshot")

from test_tui import (
    APP_NOW,
    SIZE,
    Fixture,
    GrantexApp,
    TuiData,
    build_fixture,
    copy_fixture,
    export_fixture,
    make_app,
    move_to,
    settle,
)
from textual.pilot import Pilot

SnapCompare = Callable[..., bool]


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Fixture]:
    path = tmp_path_factory.mktemp("tui-snapshots") / "grantex.db"
    return path, build_fixture(path)


@pytest.fixture
def fx(template: tuple[Path, Fixture], tmp_path: Path) -> tuple[Path, Fixture]:
    return copy_fixture(template, tmp_path)


@pytest.fixture
def app_factory() -> Iterator[Callable[..., GrantexApp]]:
    made: list[GrantexApp] = []

    def make(path: Path, **kwargs: Any) -> GrantexApp:
        made.append(make_app(path, **kwargs))
        return made[-1]

    yield make
    for app in made:
        app.data.close()


def test_main_screen_on_a_depth_2_grant(snap_compare: SnapCompare, fx: tuple[Path, Fixture],
                                        app_factory: Callable[..., GrantexApp]) -> None:
    """The delegation trees of four principals, every status badge, and a depth-2 grant's detail."""
    path, f = fx

    async def run_before(pilot: Pilot[Any]) -> None:
        await settle(pilot)
        await move_to(pilot, f.alice_fare)

    assert snap_compare(app_factory(path, poll_seconds=0), terminal_size=SIZE, run_before=run_before)


def test_revoke_dialog(snap_compare: SnapCompare, fx: tuple[Path, Fixture],
                       app_factory: Callable[..., GrantexApp]) -> None:
    """Blast radius as a small tree, focus on Cancel, Revoke disabled until the id's tail is typed."""
    path, f = fx

    async def run_before(pilot: Pilot[Any]) -> None:
        await settle(pilot)
        await move_to(pilot, f.alice_root)
        await pilot.press("r")
        await settle(pilot)

    assert snap_compare(app_factory(path, poll_seconds=0), terminal_size=SIZE, run_before=run_before)


def test_audit_view(snap_compare: SnapCompare, fx: tuple[Path, Fixture],
                    app_factory: Callable[..., GrantexApp]) -> None:
    """Newest first across both chains, statuses in words, and the chain status bar."""
    path, _ = fx

    async def run_before(pilot: Pilot[Any]) -> None:
        await settle(pilot)
        await pilot.press("3")
        await settle(pilot)

    assert snap_compare(app_factory(path, poll_seconds=0), terminal_size=SIZE, run_before=run_before)


def test_auditor_mode(snap_compare: SnapCompare, fx: tuple[Path, Fixture], tmp_path: Path) -> None:
    """An export bundle opened read-only: the verdict in the status bar, write keys shown disabled."""
    bundle = export_fixture(fx[0], tmp_path / "bundle")
    data = TuiData.open_bundle(bundle, clock=lambda: APP_NOW)

    async def run_before(pilot: Pilot[Any]) -> None:
        await settle(pilot)
        await pilot.press("3")
        await settle(pilot)

    try:
        assert snap_compare(GrantexApp(data, poll_seconds=0), terminal_size=SIZE, run_before=run_before)
    finally:
        data.close()
