"""The grant detail shows the grant's consent bundles and how far their offline logs came home.

Bundles are issued with the library (``bundles.create``); the sync state is written into the
ledger's ``consent_bundles`` row directly, standing in for a device's sync.
"""

from __future__ import annotations

import io
import sqlite3
from pathlib import Path

import pytest

pytest.importorskip("textual")

from rich.console import Console, RenderableType
from test_tui import START, GrantexApp, main, move_to, settle, started, sync

from grantex_local import Grantex, Ledger, bundles
from grantex_local.tui.data import TuiData
from grantex_local.tui.widgets.grant_detail import render_grant


def _plain(renderable: RenderableType) -> str:
    console = Console(width=200, record=True, file=io.StringIO())
    console.print(renderable)
    return console.export_text()


def _ledger(path: Path) -> tuple[str, str, str]:
    """A grant with two bundles: one synced (12 entries), one never synced."""
    with Ledger(path, clock=lambda: START) as ledger:
        gx = Grantex(ledger)
        agent = gx.agents.register(name="phone-agent", scopes=["contacts:read"])
        first = bundles.create(ledger, gx.developer_id, agent_id=agent.id, principal_id="user_alice",
                               scopes=["contacts:read"], offline_ttl="12h")
        grant_id = bundles.get(ledger, None, first["bundleId"])["grantId"]
        other = gx.agents.register(name="watch-agent", scopes=["contacts:read"])
        second = bundles.create(ledger, gx.developer_id, agent_id=other.id, principal_id="user_alice",
                                scopes=["contacts:read"], offline_ttl="6h")
        other_grant = bundles.get(ledger, None, second["bundleId"])["grantId"]
    with sqlite3.connect(path) as conn:
        conn.execute("UPDATE consent_bundles SET last_sync_at = ?, synced_entries = 12, "
                     "last_offline_seq = 12 "
                     "WHERE id = ?", ("2026-01-01T13:00:00.000Z", first["bundleId"]))
    conn.close()
    return grant_id, first["bundleId"], other_grant


@sync
async def test_the_grant_detail_shows_its_bundle_and_the_last_sync(tmp_path: Path) -> None:
    path = tmp_path / "grantex.db"
    grant_id, bundle_id, other_grant = _ledger(path)
    data = TuiData(Ledger(path, create=False, clock=lambda: START + 7200))
    app = GrantexApp(data, poll_seconds=0.2)
    try:
        async with started(app) as pilot:
            await move_to(pilot, grant_id)
            await settle(pilot)
            detail = main(app).detail
            assert detail is not None and detail.grant.id == grant_id
            assert [b.id for b in detail.bundles] == [bundle_id]
            shown = detail.bundles[0]
            assert shown.last_sync_at == "2026-01-01T13:00:00.000Z" and shown.synced_entries == 12
            assert bundle_id in app.export_screenshot()  # drawn in the detail pane
            text = _plain(render_grant(detail))
            assert f"Consent bundles, newest first (1)\n{bundle_id}" in text
            assert "last sync 2026-01-01T13:00:00.000Z (1h ago) · 12 entries synced" in text
            await move_to(pilot, other_grant)
            await settle(pilot)
            other = main(app).detail
            assert other is not None and other.bundles[0].last_sync_at is None
            assert "never synced" in _plain(render_grant(other))
    finally:
        data.close()


def test_a_grant_without_bundles_has_none(tmp_path: Path) -> None:
    path = tmp_path / "grantex.db"
    _ledger(path)
    data = TuiData(Ledger(path, create=False))
    try:
        with Ledger(path, create=False) as ledger:
            gx = Grantex(ledger)
            agent = gx.agents.register(name="plain", scopes=["contacts:read"])
            auth = gx.authorize(agent_id=agent.id, user_id="user_bob", scopes=["contacts:read"])
            plain = gx.tokens.exchange(code=auth.code, agent_id=agent.id)
        assert data.grant_detail(plain.grant_id).bundles == ()
    finally:
        data.close()
