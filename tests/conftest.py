"""Shared fixtures: a real ledger file in tmp_path, a movable clock, a quick grant helper."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers import MovableClock

from grantex_local import Grantex, Ledger


@pytest.fixture
def clock() -> MovableClock:
    return MovableClock()


@pytest.fixture
def ledger_path(tmp_path: Path) -> Path:
    return tmp_path / "grantex.db"


@pytest.fixture
def gx(ledger_path: Path, clock: MovableClock) -> Iterator[Grantex]:
    client = Grantex(Ledger(ledger_path, clock=clock))
    yield client
    client.close()


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests never pick up a ledger path or passphrase from the shell that runs them."""
    monkeypatch.delenv("GRANTEX_LEDGER", raising=False)
    monkeypatch.delenv("GRANTEX_LOCAL_PASSPHRASE", raising=False)
