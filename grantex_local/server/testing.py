"""``running_server``: a real server on a free loopback port, in a background thread.

For tests, notebooks and examples that want the HTTP API without a second
process. The socket is bound first, so that the server's exact URL is known
before the app is built: by default it becomes the ledger's issuer, because
the official SDK expects a token's ``iss`` to be the base URL it was given.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import uvicorn
from fastapi import FastAPI

from .app import create_app
from .run import bind


@dataclass(frozen=True)
class RunningServer:
    base_url: str
    app: FastAPI
    server: uvicorn.Server

    @property
    def jwks_url(self) -> str:
        return self.base_url + "/.well-known/jwks.json"


@contextmanager
def running_server(ledger_path: str | os.PathLike[str], *, adopt_issuer: bool = True,
                   **app_options: Any) -> Iterator[RunningServer]:
    """Serve ``ledger_path`` on 127.0.0.1:<free port> until the block ends (``create_app``
    options pass through).

    ``adopt_issuer`` (the default, unless ``issuer`` is passed): the server's URL becomes the
    ledger's issuer, as ``serve --issuer URL --yes`` would make it; tokens issued before keep
    verifying until they expire. ``adopt_issuer=False`` keeps the ledger's issuer.
    ``clock=`` (a movable test clock) and ``test_mode=True`` (the reset route) are
    ``create_app`` options like the rest.
    """
    sock = bind("127.0.0.1", 0)
    base = f"http://127.0.0.1:{sock.getsockname()[1]}"
    if adopt_issuer and "issuer" not in app_options:
        app_options.update(issuer=base, change_issuer=True)
    try:
        app = create_app(ledger_path, **app_options)
        config = uvicorn.Config(app, log_level="warning", access_log=False, lifespan="on",
                                timeout_graceful_shutdown=5)
        server = uvicorn.Server(config)
        app.state.grantex.server = server  # long-lived streams end as soon as it starts stopping
        thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True,
                                  name="grantex-local-server")
        thread.start()
        deadline = time.monotonic() + 10
        while not server.started:
            if not thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the server did not start")
            time.sleep(0.01)
        try:
            yield RunningServer(base, app, server)
        finally:
            server.should_exit = True
            thread.join(10)
    finally:
        sock.close()
