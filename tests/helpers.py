"""Test helpers shared by several test modules (import as ``from helpers import ...``)."""

from __future__ import annotations

import queue
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

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


# ── a real server process ──────────────────────────────────────────────────


@dataclass
class ServerProcess:
    proc: subprocess.Popen[str]
    base_url: str
    banner: list[str]
    output: queue.Queue[str]

    @property
    def text(self) -> str:
        return "\n".join(self.banner)

    def rest(self, timeout: float = 10) -> list[str]:
        lines, deadline = [], time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                line = self.output.get(timeout=0.2)
            except queue.Empty:
                if self.proc.poll() is not None and self.output.empty():
                    break
                continue
            lines.append(line)
        return lines


MODULE = [sys.executable, "-m", "grantex_local.server", "--log-level", "warning", "--no-access-log"]
CLI = [sys.executable, "-c", "from grantex_local.cli import main; main()", "serve", "--quiet"]


@contextmanager
def server_process(ledger: Path, *args: str, command: list[str] = MODULE,
                   any_port: bool = True) -> Iterator[ServerProcess]:
    """A real server process on ``ledger`` until the block ends, its URL read from its banner
    (``any_port``: ``--port 0``, so there is no race for a free port; else where it chooses)."""
    port = ["--port", "0"] if any_port else []
    proc = subprocess.Popen([*command, "--ledger", str(ledger), *port, *args], stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines: queue.Queue[str] = queue.Queue()
    assert proc.stdout is not None
    stdout = proc.stdout
    threading.Thread(target=lambda: [lines.put(line.rstrip("\n")) for line in stdout], daemon=True).start()
    banner: list[str] = []
    try:
        deadline = time.monotonic() + 30
        while not banner or not banner[-1].startswith("Press Ctrl+C"):
            assert time.monotonic() < deadline and proc.poll() is None, banner
            try:
                banner.append(lines.get(timeout=0.5))
            except queue.Empty:
                continue
        start = next(i for i, line in enumerate(banner) if line.startswith("grantex-local server on"))
        banner = banner[start:]
        base = banner[0].split(" on ", 1)[1]
        for _ in range(200):  # the banner precedes uvicorn's startup by a moment
            try:
                httpx.get(base + "/health", timeout=1)
                break
            except httpx.TransportError:
                time.sleep(0.05)
        yield ServerProcess(proc, base, banner, lines)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(10)
