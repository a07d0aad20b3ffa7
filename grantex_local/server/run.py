"""``serve``: run the app on uvicorn, on loopback by default, and stop gracefully.

The issuer is the ledger's and stays put: it is in every token issued, and the
SDK checks tokens' ``iss`` against the base URL its client uses, so moving it
because the server listens elsewhere would break every client and every token
at once. Instead the server listens where the issuer says (when it is an
``http://`` loopback URL) unless given a host or port; elsewhere the banner says
that clients must still use the issuer as their base URL. Changing the issuer
is asked for explicitly (``issuer=`` with ``change_issuer=True``), and tokens
issued under the old one keep verifying until they expire. The socket is bound
before the app is built, so a busy port fails before the ledger is touched.

On SIGINT or SIGTERM uvicorn stops accepting connections, lets requests in
flight finish (up to ``graceful_timeout`` seconds), then the ledgers are closed;
the process then returns normally instead of dying by the signal.

``serve --ephemeral`` (:func:`serve_ephemeral`) serves a ledger made for this run in a
temporary directory (mode 0700) and deletes the directory when the server stops, by Ctrl+C,
SIGTERM or an error alike. The ledger is founded once the socket is bound, with the URL it
answers at as its issuer (so ``--port 0`` works with the SDK), and seeded from a file if given.

``serve --workers N`` (N > 1, :func:`_run_workers`) forks N processes after the socket is bound
and the app is built; each runs uvicorn on a listening socket of its own on the one port
(``SO_REUSEPORT``: the kernel spreads new connections evenly over the workers; where the system
lacks it they share one socket) and opens its own ledger connections. Nothing a request needs lives
in one process only: the consent and decision forms' CSRF key is a ``local_secrets`` row,
refresh-token reuse is decided in the refresh's write transaction, webhook deliveries are leased
in the ledger (so each is sent once whichever worker's delivery thread takes it) and the streams
read the outbox. Rate limits are counted per worker, each allowing ``ceil(limit / N)`` per key
per window, so one key gets about ``limit`` across them. Workers sit in their own process group:
Ctrl+C reaches the parent alone, which sends each worker one SIGTERM (a graceful stop) and waits;
a worker whose parent dies is sent SIGTERM by the kernel (Linux), so none is left behind.
"""

from __future__ import annotations

import ipaddress
import math
import os
import shutil
import signal
import socket
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import uvicorn

from .. import errors
from ..founding import Ledger
from ..ledger import validate_issuer
from .app import DEFAULT_MAX_BODY, DEFAULT_RATE_LIMIT, create_app
from .middleware import allowed_host_names, is_loopback_host, normalise_host

WILDCARDS = {"", "0.0.0.0", "::"}
DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8421


def bind(host: str, port: int, *, reuse_port: bool = False) -> socket.socket:
    """A listening-ready TCP socket on ``host:port`` (``port=0``: the system picks one).

    ``reuse_port``: ``SO_REUSEPORT``, so that each worker of ``serve --workers`` listens on a
    socket of its own on the one port and the kernel spreads new connections evenly over them.
    With one shared socket every idle worker wakes for each connection and whichever accepts
    first keeps it: sixteen keep-alive clients ended up 12/4 on two workers in bench.load."""
    family, kind, proto, _, address = socket.getaddrinfo(
        host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)[0]
    sock = socket.socket(family, kind, proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if reuse_port:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
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


def issuer_address(issuer: str) -> tuple[str, int] | None:
    """Where to listen so that the issuer URL reaches this server: (host, port) for an
    ``http://`` URL on a loopback host with no path; None otherwise (https, a public name or a
    path: a proxy in front, so the listening address is the operator's choice)."""
    parts = urlsplit(issuer)
    try:
        port = parts.port or 80
    except ValueError:
        return None
    host = parts.hostname or ""
    if parts.scheme != "http" or parts.path or not is_loopback(host):
        return None
    return listen_host(host), port


def listen_host(host: str) -> str:
    """``localhost`` as the address it nearly always is; the name could resolve to ::1 first,
    and a client trying 127.0.0.1 would then find nothing."""
    return DEFAULT_HOST if host == "localhost" else host


def serves_issuer(issuer: str, host: str, port: int) -> bool:
    """Whether a server listening on ``host:port`` answers at the issuer URL."""
    wanted = issuer_address(issuer)
    if wanted is None or wanted[1] != port:
        return False
    return host in WILDCARDS or normalise_host(listen_host(host)) == normalise_host(wanted[0])


def current_issuer(ledger_path: str | os.PathLike[str]) -> str:
    """The ledger's issuer (the ledger must exist: a typo'd path is refused, not created)."""
    with Ledger(ledger_path, create=False) as ledger:
        return ledger.issuer


def issuer_change(ledger_path: str | os.PathLike[str], issuer: str | None) -> tuple[str, str] | None:
    """(current, new) when serving with ``issuer`` would change the ledger's issuer, which a
    person must confirm first; None when it would not. A malformed URL is refused here."""
    if issuer is None:
        return None
    new = validate_issuer(issuer)
    current = current_issuer(ledger_path)
    return (current, new) if new != current else None


def is_loopback(host: str) -> bool:
    """``host`` as typed on the command line or in a URL (any case) names this machine."""
    return is_loopback_host(host.lower())


def banner(*, base: str, issuer: str, ledger_path: str, host: str, previous: str | None = None,
           open_consent: bool = False, allowed_hosts: Iterable[str] = (),
           ephemeral: bool = False, workers: int = 1, rate_limit: int | None = None) -> list[str]:
    """What the operator needs at start: where, which issuer (and whether clients must use
    another URL than this one), how to get a key, and what is exposed beyond loopback."""
    lines = [
        f"grantex-local server on {base}",
        f"  ledger   {Path(ledger_path).resolve()}",
        f"  issuer   {issuer}   (every token's iss; JWKS at {issuer}/.well-known/jwks.json)",
        f"  docs     {base}/docs   (OpenAPI at {base}/openapi.json)",
        f"  API key  grantex-local developers create-key --ledger {ledger_path}",
        "           (the default developer is a sandbox one: authorize answers with a code at once;",
        "           other developers' requests wait for a person at the consentUrl)",
    ]
    if workers > 1:
        each = math.ceil(rate_limit / workers) if rate_limit else None
        share = f"; rate limit {each} per key per window in each" if each else ""
        lines.append(f"  workers  {workers} processes on this socket, one ledger{share}")
    if ephemeral:
        lines.append("  note     ephemeral: this ledger and its directory are deleted when the server stops")
    if previous is not None:
        lines.append(f"  note     the issuer changed from {previous}; tokens issued under it keep verifying")
        lines.append("           until they expire (grantex-local info lists past issuers)")
    if issuer != base:
        lines += [
            f"  note     the issuer stays {issuer} (the ledger's; serving elsewhere does not change it).",
            f"           Clients must use {issuer} as their base URL: tokens carry it, consentUrls",
            "           start with it, and the SDK checks tokens offline against the URL it is given.",
            f"           To make {base} the issuer: serve --issuer {base}",
            "           (tokens issued before keep verifying until they expire).",
        ]
    extra = sorted(set(allowed_hosts))
    if not is_loopback(host):
        lines.append(f"  WARNING  listening on {host or 'all interfaces'}, beyond loopback, without TLS")
    if extra or not is_loopback(host):
        names = ", ".join(["loopback names", "the issuer's host", *extra])
        lines.append(f"  hosts    answers requests for {names} only;")
        lines.append("           other Host names get 421 (--allowed-host NAME adds one)")
    if open_consent:
        lines.append("  WARNING  --open-consent: anyone who can open a consentUrl (the agent that")
        lines.append("           asked, too) can decide it without an approval code; for demos only")
    else:
        lines.append("  consent  a request waiting for a person is shown here with its approval code;")
        lines.append("           only that code (or the principal's own session) decides on the consent page")
    lines.append("Press Ctrl+C to stop (requests in flight are finished first).")
    return lines


def serve(
    ledger_path: str | os.PathLike[str],
    host: str | None = None,
    port: int | None = None,
    issuer: str | None = None,
    *,
    change_issuer: bool = False,
    allowed_hosts: Iterable[str] = (),
    rate_limit: int = DEFAULT_RATE_LIMIT,
    max_body: int = DEFAULT_MAX_BODY,
    log_level: str = "info",
    access_log: bool = True,
    graceful_timeout: int = 30,
    echo: Callable[[str], Any] | None = None,
    open_consent: bool = False,
    found: Callable[[str], Any] | None = None,
    vault_insecure_store: bool = False,
    workers: int = 1,
) -> None:
    """Serve until SIGINT/SIGTERM. Library errors (no ledger, bad issuer) propagate before binding
    anything long-lived, so the CLI can print them as one line.

    ``host``/``port`` left out: where the issuer says (see :func:`issuer_address`), else
    127.0.0.1:8421; either given: the issuer is still the ledger's. ``issuer``: a new issuer for
    the ledger, which needs ``change_issuer=True`` (the CLI asks first). ``allowed_hosts``: names
    besides loopback and the issuer's host that requests may carry in ``Host``; a non-loopback
    ``host`` to listen on is one of them. ``found``: there is no ledger yet; it is called with
    the URL the bound socket answers at, and must make the ledger (``serve --ephemeral``).
    ``vault_insecure_store``: the vault may store secrets in a ledger with no passphrase.
    ``workers``: processes serving the socket (1 to twice the cores; see the module's docstring).
    """
    echo = echo or (lambda text: print(text, flush=True))
    check_workers(workers)
    if workers > 1 and threading.current_thread() is not threading.main_thread():
        raise errors.InvalidInput("serving with several workers forks processes: call serve() "
                                  "from the main thread")
    current = current_issuer(ledger_path) if found is None else None
    target = validate_issuer(issuer) if issuer is not None else current
    if found is None and target != current and not change_issuer:
        raise errors.InvalidInput(
            f"the ledger's issuer is {current}; changing it to {target} must be confirmed "
            "(--yes), since clients must then use the new URL")
    wanted = issuer_address(target) if target is not None else None
    from_issuer = wanted is not None and (host is None or port is None)
    if host is None:
        host = wanted[0] if wanted is not None else DEFAULT_HOST
    if port is None:
        port = wanted[1] if wanted is not None else DEFAULT_PORT
    hosts = set(allowed_host_names(allowed_hosts))
    if host not in WILDCARDS and not is_loopback(host):
        hosts |= allowed_host_names([host])  # the address it listens on is for this server
    spread = workers > 1 and reuse_port_works()
    try:
        sock = bind(listen_host(host), port, reuse_port=spread)
    except OSError as exc:
        hint = (f" (where the issuer {target} says the server is; --port and --host listen "
                "elsewhere, and the issuer stays)") if from_issuer else ""
        raise OSError(exc.errno, f"cannot listen on {url_host(host)}:{port}: "
                                 f"{exc.strerror or exc}{hint}") from None
    try:
        actual_port = sock.getsockname()[1]
        if found is not None:
            found(f"http://{url_host(host)}:{actual_port}")
        app = create_app(ledger_path, issuer=issuer, change_issuer=change_issuer,
                         allowed_hosts=hosts, rate_limit=math.ceil(rate_limit / workers),
                         max_body=max_body,
                         open_consent=open_consent, vault_insecure_store=vault_insecure_store)
        state = app.state.grantex
        base = f"http://{url_host(host)}:{actual_port}"
        if serves_issuer(state.issuer, host, actual_port):
            base = state.issuer  # the same server, spelled as clients must spell it
        state.console = echo  # approval codes go to this console, never to the access log
        for line in banner(base=base, issuer=state.issuer, ledger_path=str(ledger_path), host=host,
                           previous=state.issuer_changed_from, open_consent=open_consent,
                           allowed_hosts=hosts, ephemeral=found is not None, workers=workers,
                           rate_limit=rate_limit):
            echo(line)
        if vault_insecure_store:
            echo("warning: --insecure-store: vault secrets stored without a passphrase are NOT "
                 "protected: anyone who can read the ledger file can read them")
        config = uvicorn.Config(app, log_level=log_level, access_log=access_log, lifespan="on",
                                timeout_graceful_shutdown=graceful_timeout, server_header=False,
                                proxy_headers=False)
        if workers > 1:
            sockets = [sock]
            try:
                if spread:  # one listening socket a worker, on the port the first one got
                    sockets += [bind(listen_host(host), actual_port, reuse_port=True)
                                for _ in range(workers - 1)]
                _run_workers(sockets, app, config, workers, graceful_timeout, echo)
            finally:
                for extra in sockets[1:]:
                    extra.close()
            echo("grantex-local server stopped")
            return
        server = uvicorn.Server(config)
        state.server = server  # long-lived streams end as soon as it starts stopping
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


WORKER_HEADER_ENV = "GRANTEX_LOCAL_WORKER_HEADER"
"""Set to ``1`` (tests, debugging), each worker's answers carry ``x-grantex-worker: <pid>``."""


def reuse_port_works() -> bool:
    """Whether this system lets several sockets listen on one port (Linux, the BSDs, macOS)."""
    if not hasattr(socket, "SO_REUSEPORT"):
        return False
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    except OSError:
        return False
    return True


def max_workers() -> int:
    return 2 * (os.cpu_count() or 1)


def check_workers(workers: int) -> None:
    """1 to twice the cores: more processes than that only queue on the single-writer file."""
    if isinstance(workers, bool) or not isinstance(workers, int) or not 1 <= workers <= max_workers():
        raise errors.InvalidInput(f"--workers must be 1..{max_workers()} (twice this machine's "
                                  f"{os.cpu_count() or 1} cores), not {workers}")
    if workers > 1 and not hasattr(os, "fork"):
        raise errors.InvalidInput("--workers above 1 forks processes, which this system cannot")


class _WorkerHeader:
    """ASGI wrapper naming the worker process that answered (only with :data:`WORKER_HEADER_ENV`),
    so a test can make one worker render a form and another accept it."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.value = str(os.getpid()).encode()

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def tagged(message: Any) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", []),
                                                  (b"x-grantex-worker", self.value)]}
            await send(message)

        await self.app(scope, receive, tagged)


def _die_with_parent() -> None:
    """Linux: SIGTERM this process when its parent dies (a SIGKILLed ``serve`` leaves no worker)."""
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass  # not Linux: the parent still stops its workers on Ctrl+C and SIGTERM


def _worker_main(sock: socket.socket, app: Any, config: uvicorn.Config, parent: int) -> int:
    """One forked worker: uvicorn on the shared socket until SIGTERM; the exit status."""
    try:
        os.setpgid(0, 0)  # Ctrl+C in a terminal reaches the parent only
    except OSError:
        pass
    _die_with_parent()
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    if os.getppid() != parent:
        return 0  # the parent died before the death signal was armed
    served = _WorkerHeader(app) if os.environ.get(WORKER_HEADER_ENV) == "1" else app
    worker_config = uvicorn.Config(served, log_level=config.log_level, access_log=config.access_log,
                                   lifespan="on", server_header=False, proxy_headers=False,
                                   timeout_graceful_shutdown=config.timeout_graceful_shutdown)
    server = uvicorn.Server(worker_config)
    app.state.grantex.server = server
    try:
        server.run(sockets=[sock])
    except KeyboardInterrupt:
        pass
    return 0


def _run_workers(sockets: list[socket.socket], app: Any, config: uvicorn.Config, workers: int,
                 graceful_timeout: int, echo: Callable[[str], Any]) -> None:
    """Fork ``workers`` processes and wait; on SIGINT/SIGTERM (or one worker dying) send each
    live worker one SIGTERM and wait for all, SIGKILL after the grace time. ``sockets``: one a
    worker (``SO_REUSEPORT``), or a single one they all serve."""
    parent = os.getpid()
    children: set[int] = set()
    in_main = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, signal.default_int_handler) if in_main else None
    try:
        for number in range(workers):
            sys.stdout.flush()
            sys.stderr.flush()
            pid = os.fork()
            if pid == 0:  # the worker: never returns into the caller's stack
                status = 1
                try:
                    mine = sockets[number % len(sockets)]
                    for other in sockets:
                        if other is not mine:
                            other.close()  # a socket no one accepts on would strand its share
                    status = _worker_main(mine, app, config, parent)
                except BaseException as exc:  # one line, then the exit status says it
                    print(f"error: worker {os.getpid()}: {exc}", file=sys.stderr, flush=True)
                finally:
                    os._exit(status)
            children.add(pid)
            try:
                os.setpgid(pid, pid)  # as the child does: whichever runs first
            except OSError:
                pass
        while children:
            pid, status = os.waitpid(-1, 0)
            children.discard(pid)
            echo(f"worker {pid} exited unexpectedly ({_describe(status)}); stopping the others")
            break
    except KeyboardInterrupt:
        pass
    finally:
        _stop_workers(children, graceful_timeout)
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


def _describe(status: int) -> str:
    if os.WIFSIGNALED(status):
        return f"signal {os.WTERMSIG(status)}"
    return f"status {os.WEXITSTATUS(status)}"


def _stop_workers(children: set[int], graceful_timeout: int) -> None:
    """SIGTERM each worker once and reap them all; SIGKILL what is left after the grace time
    (a second Ctrl+C meanwhile sends SIGTERM again, which uvicorn takes as "stop now")."""
    for pid in children:
        _signal(pid, signal.SIGTERM)
    deadline = time.monotonic() + graceful_timeout + 20  # + the webhook attempt in flight
    while children:
        try:
            for pid in list(children):
                try:
                    done, _ = os.waitpid(pid, os.WNOHANG)
                except ChildProcessError:
                    done = pid  # reaped already
                if done:
                    children.discard(pid)
            if children and time.monotonic() > deadline:
                for pid in children:
                    _signal(pid, signal.SIGKILL)
                deadline = math.inf
            time.sleep(0.05)
        except KeyboardInterrupt:
            for pid in children:
                _signal(pid, signal.SIGTERM)


def _signal(pid: int, sig: int) -> None:
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass


def serve_ephemeral(seed: str | os.PathLike[str] | None = None, host: str | None = None,
                    port: int | None = None, **options: Any) -> None:
    """:func:`serve` over a new ledger in a temporary directory that is deleted at exit.

    The seed file is read before anything is bound, so a malformed one fails at once; the
    ledger is then founded with the bound URL as its issuer and seeded in one transaction.
    SIGTERM raises KeyboardInterrupt for the whole run (not only while uvicorn serves), so a
    stop during founding or seeding still removes the directory.
    """
    from ..seed import apply_seed, load

    issuer = options.pop("issuer", None)
    document = load(seed) if seed is not None else None
    directory = Path(tempfile.mkdtemp(prefix="grantex-local-ephemeral-"))  # 0700 by mkdtemp
    in_main = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, signal.default_int_handler) if in_main else None
    try:
        directory.chmod(0o700)
        path = directory / "grantex.db"

        def found(base: str) -> None:
            with Ledger(path, create=True, issuer=issuer or base) as ledger:
                if document is not None:
                    apply_seed(ledger, document)

        try:
            serve(path, host, port, issuer, found=found, **options)
        except KeyboardInterrupt:
            pass
    finally:
        shutil.rmtree(directory, ignore_errors=True)
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


def main(argv: list[str] | None = None) -> None:
    """``python -m grantex_local.server``: the same as ``grantex-local serve``."""
    import argparse

    from ..ledger import default_path

    parser = argparse.ArgumentParser(prog="python -m grantex_local.server", description=__doc__)
    parser.add_argument("--ledger", default=None,
                        help="ledger file (default: $GRANTEX_LEDGER, else ./grantex.db)")
    parser.add_argument("--host", default=None,
                        help="default: the issuer's host when it is http://loopback, else 127.0.0.1")
    parser.add_argument("--port", type=int, default=None,
                        help="0 picks a free port; default: the issuer's port when it is "
                             "http://loopback, else 8421")
    parser.add_argument("--issuer", default=None,
                        help="change the ledger's issuer to this URL (asks first; --yes to skip)")
    parser.add_argument("--yes", "-y", action="store_true", help="change the issuer without asking")
    parser.add_argument("--allowed-host", action="append", default=[], metavar="NAME",
                        help="a Host name to answer besides loopback and the issuer's (repeatable)")
    parser.add_argument("--rate-limit", type=int, default=DEFAULT_RATE_LIMIT,
                        help="requests per key per minute")
    parser.add_argument("--max-body", type=int, default=DEFAULT_MAX_BODY, help="bytes")
    parser.add_argument("--log-level", default="info")
    parser.add_argument("--no-access-log", action="store_true")
    parser.add_argument("--workers", type=int, default=1,
                        help="processes serving the socket (1..twice the cores)")
    parser.add_argument("--open-consent", action="store_true",
                        help="demo mode: the consent page decides without an approval code")
    args = parser.parse_args(argv)
    path = args.ledger or default_path()
    try:
        change = issuer_change(path, args.issuer)
        if change is not None and not args.yes:
            question = f"Change the ledger's issuer from {change[0]} to {change[1]}?"
            if not sys.stdin.isatty():
                raise errors.InvalidInput(f"will not change the issuer from {change[0]} to {change[1]} "
                                          "without confirmation (stdin is not a terminal); pass --yes")
            try:
                answer = input(question + " [y/N] ")
            except EOFError:
                answer = ""
            if answer.strip().lower() not in ("y", "yes"):
                raise errors.InvalidInput("cancelled; the issuer was not changed")
        serve(path, args.host, args.port, args.issuer, change_issuer=change is not None,
              allowed_hosts=args.allowed_host, rate_limit=args.rate_limit, max_body=args.max_body,
              log_level=args.log_level, access_log=not args.no_access_log,
              open_consent=args.open_consent, workers=args.workers)
    except (errors.GrantexLocalError, OSError, ValueError) as exc:
        text = getattr(exc, "message", None) or getattr(exc, "strerror", None) or exc
        print(f"error: {text}", file=sys.stderr)
        sys.exit(2)
