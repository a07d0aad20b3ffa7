"""What one server process keeps: a ledger per worker thread, the rate limiter, secrets.

Why a ledger per thread: FastAPI runs the (synchronous) route functions in a
thread pool, and a ``Ledger`` wraps one sqlite3 connection that must not be
used by two threads at once. Each thread opens its own on first use and keeps
it (parsed keys are cached per ``Ledger``, so reopening per request would cost
tens of milliseconds). Consistency across threads, processes, the CLI and
the TUI is SQLite's: WAL mode and ``BEGIN IMMEDIATE`` in the library.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import math
import secrets
import sqlite3
import threading
import time
import weakref
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from ..clock import iso, parse_iso
from ..founding import Ledger

CSRF_KEY_NAME = "csrf_key"
"""The ``local_secrets`` row the consent and decision forms' CSRF tokens are keyed with."""


def ledger_secret(ledger: Ledger, name: str) -> bytes:
    """A per-ledger random secret named ``name``, made on first use.

    Why in the ledger and not in the process: with ``serve --workers N`` a form rendered by one
    worker is posted to whichever accepts the connection, and a restart must not void the forms
    open in browsers. ``INSERT OR IGNORE`` in one write transaction: two workers starting at once
    both read the row the first one made.
    """
    query = "SELECT secret FROM local_secrets WHERE name = ?"
    row = ledger.query_one(query, (name,))
    if row is None:
        with ledger.write() as conn:
            conn.execute("INSERT OR IGNORE INTO local_secrets (name, secret, created_at) VALUES (?, ?, ?)",
                         (name, secrets.token_bytes(32), iso(ledger.now())))
        row = ledger.query_one(query, (name,))
    assert row is not None
    return bytes(row["secret"])


class LedgerPool:
    """One open :class:`Ledger` per thread, all on the same file; closed together at shutdown.

    Only the thread holds its ledger: the pool keeps weak references. The thread pool retires
    idle workers (anyio: after 10 s), and a retired thread's ledger must then be freed (which
    closes its connection) rather than pile up for the life of the server.
    """

    def __init__(self, path: str, *, passphrase: str | None = None,
                 clock: Callable[[], float] | None = None) -> None:
        self.path = path
        self.passphrase = passphrase
        self.clock = clock  # a test's movable clock: every thread's ledger must share it
        self._local = threading.local()
        self._lock = threading.Lock()
        self._open: weakref.WeakSet[Ledger] = weakref.WeakSet()
        self._closed = False

    def open_count(self) -> int:
        return len(self._open)

    def get(self) -> Ledger:
        ledger: Ledger | None = getattr(self._local, "ledger", None)
        if ledger is None:
            ledger = Ledger(self.path, create=False, passphrase=self.passphrase, clock=self.clock)
            with self._lock:
                if self._closed:
                    ledger.close()
                    raise RuntimeError("the server is shutting down")
                self._open.add(ledger)
            self._local.ledger = ledger
        return ledger

    def close_all(self) -> None:
        with self._lock:
            self._closed = True
            opened = list(self._open)
            self._open = weakref.WeakSet()
        for ledger in opened:
            ledger.close()


@dataclass(frozen=True)
class RateDecision:
    """One request's place in its key's window: what the ``x-ratelimit-*`` headers say."""

    allowed: bool
    limit: int
    remaining: int
    reset: int  # whole seconds until the window ends (0..window)

    def headers(self) -> dict[str, str]:
        out = {"x-ratelimit-limit": str(self.limit), "x-ratelimit-remaining": str(self.remaining),
               "x-ratelimit-reset": str(self.reset)}
        if not self.allowed:
            out["Retry-After"] = str(max(1, self.reset))
        return out


class RateLimiter:
    """Fixed windows per API key, in this process's memory.

    A fixed window is what the three headers describe (a limit, what is left,
    when it resets). Several server processes on one ledger each count on
    their own: the limit protects a process, not a developer account.
    """

    def __init__(self, limit: int, window: int = 60, clock: Callable[[], float] = time.monotonic) -> None:
        if limit < 1 or not 1 <= window <= 3600:
            raise ValueError("rate limit must be >= 1 and the window 1..3600 seconds")
        self.limit = limit
        self.window = window
        self._clock = clock
        self._lock = threading.Lock()
        self._windows: dict[str, list[float]] = {}  # key -> [window start, count]

    def clear(self) -> None:
        with self._lock:
            self._windows = {}

    def hit(self, key: str) -> RateDecision:
        now = self._clock()
        with self._lock:
            if len(self._windows) > 10_000:  # forget finished windows; bounded memory
                self._windows = {k: w for k, w in self._windows.items() if now - w[0] < self.window}
            entry = self._windows.get(key)
            if entry is None or now - entry[0] >= self.window:
                entry = [now, 0]
                self._windows[key] = entry
            reset = max(0, math.ceil(entry[0] + self.window - now))
            if entry[1] >= self.limit:
                return RateDecision(False, self.limit, 0, reset)
            entry[1] += 1
            return RateDecision(True, self.limit, self.limit - int(entry[1]), reset)


@dataclass
class ServerState:
    """Everything the routes share, kept on ``app.state.grantex``."""

    ledgers: LedgerPool
    limiter: RateLimiter
    issuer: str
    max_body: int
    issuer_changed_from: str | None = None
    csrf_secret: bytes = field(default_factory=lambda: secrets.token_bytes(32))
    """The app sets the ledger's (:func:`ledger_secret`), shared by every worker and restart;
    the random default serves only a state made without a ledger."""
    idempotency: IdempotencyCache = field(default_factory=lambda: IdempotencyCache())
    """Made over ``ledgers`` (in the ledger) unless given: see :class:`IdempotencyCache`."""
    open_consent: bool = False
    """Demo mode: the consent page decides without an approval code or principal session."""
    console: Callable[[str], Any] | None = None
    """Where ``serve`` shows a person what only they may see (a waiting request's approval
    code): its own console, never the access log or the logging module."""
    stopping: threading.Event = field(default_factory=threading.Event)
    """Set when the server begins to stop. Long-lived responses (the event stream, the
    revocation stream, long-polls) never end on their own, and uvicorn's graceful shutdown
    waits for open responses before the lifespan ends: they poll this (and the server's
    ``should_exit``, see :meth:`is_stopping`) and finish, so stopping takes one poll, not the
    graceful timeout."""
    server: Any = None
    """The uvicorn server running the app, when the runner tells (``should_exit`` is the first
    sign of a shutdown the app can see)."""
    streams: StreamSlots = field(default_factory=lambda: StreamSlots())
    baseline: sqlite3.Connection | None = None
    """Test mode only (``create_app(test_mode=True)``): an in-memory copy of the ledger as the
    app found it, which :meth:`reset` writes back; None otherwise, and then nothing can reset."""
    _reset_lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self) -> None:
        if self.idempotency.ledgers is None:
            self.idempotency.ledgers = self.ledgers

    def is_stopping(self) -> bool:
        return self.stopping.is_set() or bool(getattr(self.server, "should_exit", False))

    def reset(self) -> None:
        """Put the ledger back as it was when the app was made, with the connections open.

        SQLite's backup API writes into the live file under a write lock, so the server's
        per-thread connections see the new content on their next transaction (their cached keys
        and settings are checked against ``PRAGMA data_version``). What the process keeps in
        memory about past requests (rate windows, idempotent replays) goes too: a reset test
        must not inherit another's throttling or replays.
        """
        if self.baseline is None:
            raise RuntimeError("reset needs an app created with test_mode=True")
        with self._reset_lock:
            target = sqlite3.connect(self.ledgers.path, timeout=30, check_same_thread=False)
            try:
                self.baseline.backup(target)
            finally:
                target.close()
            self.limiter.clear()
            self.idempotency.clear()


class StreamSlots:
    """Open event streams per developer, bounded: each holds a poller, so one developer's
    runaway client must not take the whole server's."""

    LIMIT = 16

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._open: dict[str, int] = {}

    def acquire(self, developer_id: str) -> bool:
        with self._lock:
            count = self._open.get(developer_id, 0)
            if count >= self.LIMIT:
                return False
            self._open[developer_id] = count + 1
            return True

    def release(self, developer_id: str) -> None:
        with self._lock:
            count = self._open.get(developer_id, 0) - 1
            if count > 0:
                self._open[developer_id] = count
            else:
                self._open.pop(developer_id, None)

    def count(self, developer_id: str) -> int:
        with self._lock:
            return self._open.get(developer_id, 0)


class IdempotencyCache:
    """Replays of ``POST /v1/token/refresh`` carrying the same ``Idempotency-Key``.

    The SDK retries a refresh (same key) after a timeout or a 5xx; if the
    first attempt had committed, a second real refresh would present a spent
    refresh token and revoke the whole token family. So the first success is
    remembered for a few minutes and handed back to an identical retry.

    Remembered in the ledger (a ``local_secrets`` row per replay, no migration), because with
    ``serve --workers N`` the retry may reach another worker, and after a restart a retry must
    still not look like a stolen token. Each replay holds a live token pair, so it is sealed
    (AES-GCM) under a key derived from the Idempotency-Key, which the ledger never stores; the
    row's name is another digest of it. Expired rows are deleted with the next one written.
    ``lock`` serialises keyed refreshes within a process; across workers the refresh's own
    write transaction decides (two identical retries at the same instant on two workers: one
    refreshes, the other is answered as reuse, as with two clients racing).
    """

    TTL = 300.0
    PREFIX = "refresh-replay:"

    def __init__(self, ledgers: LedgerPool | None = None) -> None:
        self.lock = threading.Lock()  # also serialises refreshes that carry a key
        self.ledgers = ledgers
        """None (a state made by hand, without a ledger): replays live in this process only."""
        self._entries: dict[tuple[str, str, str], tuple[float, Any]] = {}

    def _sealing(self, key: tuple[str, str, str]) -> tuple[str, bytes]:
        """(row name, AES key) for ``(developer id, Idempotency-Key, refresh token hash)``."""
        developer_id, idempotency_key, refresh_hash = key
        context = f"{developer_id}\x1f{refresh_hash}".encode()
        label = b"grantex-local refresh replay name\x1f"
        name = self.PREFIX + hashlib.sha256(label + idempotency_key.encode() + b"\x1f" + context).hexdigest()
        sealing = hmac.new(idempotency_key.encode(), b"grantex-local refresh replay key\x1f" + context,
                           hashlib.sha256).digest()
        return name, sealing

    def get(self, key: tuple[str, str, str]) -> Any:
        if self.ledgers is None:
            now = time.monotonic()
            self._entries = {k: v for k, v in self._entries.items() if v[0] > now}
            hit = self._entries.get(key)
            return hit[1] if hit is not None else None
        ledger = self.ledgers.get()
        name, sealing = self._sealing(key)
        row = ledger.query_one("SELECT secret, created_at FROM local_secrets WHERE name = ?", (name,))
        if row is None or parse_iso(row["created_at"]) + self.TTL <= ledger.now():
            return None
        blob = bytes(row["secret"])
        try:
            plain = AESGCM(sealing).decrypt(blob[:12], blob[12:], name.encode())
        except InvalidTag:
            return None  # not sealed for this key: no replay
        return json.loads(plain)

    def clear(self) -> None:
        """Forget this process's replays (a ledger's go with a reset, which rewrites the file)."""
        with self.lock:
            self._entries = {}

    def put(self, key: tuple[str, str, str], value: Any) -> None:
        if self.ledgers is None:
            self._entries[key] = (time.monotonic() + self.TTL, value)
            return
        ledger = self.ledgers.get()
        name, sealing = self._sealing(key)
        nonce = secrets.token_bytes(12)
        sealed = nonce + AESGCM(sealing).encrypt(nonce, json.dumps(value).encode(), name.encode())
        now = ledger.now()
        with ledger.write() as conn:
            conn.execute("DELETE FROM local_secrets WHERE name >= ? AND name < ? AND created_at < ?",
                         (self.PREFIX, self.PREFIX[:-1] + ";", iso(now - self.TTL)))
            conn.execute("INSERT OR REPLACE INTO local_secrets (name, secret, created_at) VALUES (?, ?, ?)",
                         (name, sealed, iso(now)))
