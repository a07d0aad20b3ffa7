"""Shared fixtures: a real ledger file in tmp_path, a movable clock, a quick grant helper, and one
Spark session for the whole run (a ``local[2]`` session takes about 12 s to start)."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from helpers import MovableClock

from grantex_local import Grantex, Ledger

if TYPE_CHECKING:
    from grantex_local.analysis.engines import Engine


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


@pytest.fixture(scope="session")
def spark_engine() -> Iterator[Engine]:
    """Spark in local mode, shared by every test that names it. Skipped on a machine without a
    Java runtime (the test extra installs pyspark, not a JVM), except in CI (``.ci/run`` installs
    one and sets ``GRANTEX_REQUIRE_SPARK``), where a missing JVM is an error to see."""
    if shutil.which("java") is None and not os.environ.get("GRANTEX_REQUIRE_SPARK"):
        pytest.skip("Spark needs a Java runtime (17 or later) on the PATH")
    from grantex_local.analysis.engines import SparkEngine

    engine = SparkEngine()
    yield engine
    engine.spark.stop()
