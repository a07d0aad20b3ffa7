"""Test helpers shared by several test modules (import as ``from helpers import ...``)."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

from grantex_local import ExchangeTokenParams, ExchangeTokenResponse, Grantex


class MovableClock:
    """A clock tests can move forward; starts at the real time."""

    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def grant_for(gx: Grantex, scopes: list[str], *, principal: str = "user_alice",
              agent_name: str = "root-agent", expires_in: str | None = None) -> ExchangeTokenResponse:
    """Register an agent and take a root grant for it through the sandbox flow."""
    agent = gx.agents.register(name=agent_name, scopes=scopes)
    auth = gx.authorize(agent_id=agent.id, user_id=principal, scopes=scopes, expires_in=expires_in)
    assert auth.code is not None
    return gx.tokens.exchange(ExchangeTokenParams(code=auth.code, agent_id=agent.id))


def dump(path: Path) -> list[str]:
    """Every row of every table, for 'nothing was written' checks."""
    conn = sqlite3.connect(path)
    try:
        return list(conn.iterdump())
    finally:
        conn.close()
