"""``serve``: run the app on uvicorn, on loopback by default, and stop gracefully.

The socket is bound here, before the app is built, so that ``port=0`` (any free
port) still yields the right issuer: the issuer is the URL clients use, and
the SDK checks tokens' ``iss`` against it. On SIGINT or SIGTERM uvicorn stops
accepting connections, lets requests in flight finish (up to
``graceful_timeout`` seconds), then the ledgers are closed; the process then
returns normally instead of dying by the signal.
"""

from __future__ import annotations

import ipaddress
import os
import signal
import socket
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import uvicorn

from .app import DEFAULT_MAX_BODY, DEFAULT_RATE_LIMIT, create_app

WILDCARDS = {"", "0.0.0.0", "::"}


def bind(host: str, port: int) -> socket.socket:
    """A listening-ready TCP socket on ``host:port`` (``port=0``: the system picks one)."""
    family, kind, proto, _, address = socket.getaddrinfo(
        host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)[0]
    sock = socket.socket(family, kind, proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(address)
    except OSError:
        sock.close()
        raise
    sock.set_inheritable(True)
    return sock


def url_host(host: str) -> str:
    """How ``host`` is written in a URL (IPv6 in brackets; a wildcard as loopback)."""
    if host in WILDCARDS:
        return "127.0.0.1"
    try:
        if ipaddress.ip_address(host).version == 6:
            return f"[{host}]"
    except ValueError:
        pass
    return host


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def banner(*, base: str, issuer: str, ledger_path: str, host: str, previous: str | None = None) -> list[str]:
    lines = [
        f"grantex-local server on {base}",
        f"  ledger   {Path(ledger_path).resolve()}",
        f"  issuer   {issuer}   (every token's iss; JWKS at {issuer}/.well-known/jwks.json)",
        f"  docs     {base}/docs   (OpenAPI at {base}/openapi.json)",
        f"  API key  grantex-local developers create-key --ledger {ledger_path}",
        "           (the default developer is a sandbox one: authorize answers with a code at once;",
        "           other developers' requests wait for a person at the consentUrl, PROTOCOL §5)",
    ]
    if previous is not None:
        lines.append(f"  note     the issuer was {previous}: tokens issued under it no longer verify")
    if issuer != base:
        lines.append(f"  note     clients must use {issuer} as their base URL for tokens to verify offline")
    if not is_loopback(host):
        lines.append(f"  WARNING  listening on {host or 'all interfaces'}, beyond loopback, without TLS")
    lines.append("Press Ctrl+C to stop (requests in flight are finished first).")
    return lines


def serve(
    ledger_path: str | os.PathLike[str],
    host: str = "127.0.0.1",
    port: int = 8421,
    issuer: str | None = None,
    *,
    rate_limit: int = DEFAULT_RATE_LIMIT,
    max_body: int = DEFAULT_MAX_BODY,
    log_level: str = "info",
    access_log: bool = True,
    graceful_timeout: int = 30,
    echo: Callable[[str], Any] | None = None,
) -> None:
    """Serve until SIGINT/SIGTERM. Library errors (no ledger, bad issuer) propagate before binding
    anything long-lived, so the CLI can print them as one line."""
    echo = echo or (lambda text: print(text, flush=True))
    sock = bind(host, port)
    try:
        actual_port = sock.getsockname()[1]
        base = f"http://{url_host(host)}:{actual_port}"
        app = create_app(ledger_path, issuer=issuer or base, rate_limit=rate_limit, max_body=max_body)
        state = app.state.grantex
        for line in banner(base=base, issuer=state.issuer, ledger_path=str(ledger_path), host=host,
                           previous=state.issuer_changed_from):
            echo(line)
        config = uvicorn.Config(app, log_level=log_level, access_log=access_log, lifespan="on",
                                timeout_graceful_shutdown=graceful_timeout, server_header=False,
                                proxy_headers=False)
        server = uvicorn.Server(config)
        in_main = threading.current_thread() is threading.main_thread()
        previous = signal.signal(signal.SIGTERM, signal.default_int_handler) if in_main else None
        try:
            # uvicorn catches the signal, drains, then re-raises it: KeyboardInterrupt here.
            server.run(sockets=[sock])
        except KeyboardInterrupt:
            pass
        finally:
            if previous is not None:
                signal.signal(signal.SIGTERM, previous)
        echo("grantex-local server stopped")
    finally:
        sock.close()


def main(argv: list[str] | None = None) -> None:
    """``python -m grantex_local.server``: the same as ``grantex-local serve``."""
    import argparse

    from .. import errors
    from ..ledger import default_path

    parser = argparse.ArgumentParser(prog="python -m grantex_local.server", description=__doc__)
    parser.add_argument("--ledger", default=None,
                        help="ledger file (default: $GRANTEX_LEDGER, else ./grantex.db)")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8421, help="0 picks a free port")
    parser.add_argument("--issuer", default=None, help="default http://HOST:PORT")
    parser.add_argument("--rate-limit", type=int, default=DEFAULT_RATE_LIMIT,
                        help="requests per key per minute")
    parser.add_argument("--max-body", type=int, default=DEFAULT_MAX_BODY, help="bytes")
    parser.add_argument("--log-level", default="info")
    parser.add_argument("--no-access-log", action="store_true")
    args = parser.parse_args(argv)
    try:
        serve(args.ledger or default_path(), args.host, args.port, args.issuer, rate_limit=args.rate_limit,
              max_body=args.max_body, log_level=args.log_level, access_log=not args.no_access_log)
    except (errors.GrantexLocalError, OSError, ValueError) as exc:
        print(f"error: {getattr(exc, 'message', None) or exc}", file=sys.stderr)
        sys.exit(2)
