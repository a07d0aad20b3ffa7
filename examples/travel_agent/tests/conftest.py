"""The travel agent's service for each test, on a real loopback port, pointed at the plugin's
Grantex server.

Everything Grantex (a fresh ledger, a real server, the official SDK, grant tokens, the clock)
comes from grantex-local's pytest plugin, which pytest loads by itself once ``grantex-local`` is
installed; this file only starts the service under test.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import uvicorn
from travel_agent import create_app


@pytest.fixture
def agent(grantex_server: Any) -> Iterator[httpx.Client]:
    """The service exactly as deployed (only its Grantex URL and API key differ), as an HTTP
    client whose base URL is the service."""
    app = create_app(grantex_server.base_url, grantex_server.api_key)
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", access_log=False))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "the travel agent did not start"
        time.sleep(0.01)
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{sock.getsockname()[1]}", timeout=10) as client:
            yield client
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()
