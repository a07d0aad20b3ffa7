"""Webhooks (SDK-SURFACE §2): registrations, the delivery log, and delivery itself.

Why delivery is built on the event outbox (:mod:`.events`) and a table of delivery rows: the
outbox is written in the same transaction as each change, by whichever process made it (the
server, the CLI, the TUI). :func:`enqueue_new` turns outbox events into one delivery row per
matching webhook, moving a cursor in the same transaction (UNIQUE(webhook_id, event_seq) keeps
a second server process or a restart from queueing twice). :func:`deliver_due` leases one due
row at a time in a write transaction, so two processes never send the same attempt, POSTs the
exact stored envelope, and records the outcome only if its lease still holds.

The secret signs every delivery, so it is stored as is (it cannot be hashed). It is returned
once, by :func:`create`; nothing else here returns, logs or audits it, and exports never read
these tables.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import secrets
import sqlite3
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from . import errors
from .audit.trail import record
from .clock import iso
from .events import WEBHOOK_EVENT_TYPES, last_seq, read_events
from .ids import looks_like, new_id
from .paging import window
from .text import check_text

if TYPE_CHECKING:
    from .founding import Ledger

log = logging.getLogger("grantex_local.webhooks")

MAX_URL_LENGTH = 2048
DELIVERY_STATUSES = ("pending", "delivered", "failed")
DEFAULT_MAX_ATTEMPTS = 5
DEFAULT_BASE_DELAY = 2.0
"""Seconds before the first retry, doubling after each failure (2, 4, 8, 16 s, then failed).
The reference waits 30·2^(n-1) s; locally, a developer fixing a receiver wants it sooner."""
TIMEOUT = 10.0
LEASE_SECONDS = 60.0
"""Longer than a POST can take (``TIMEOUT``), so a lease never lapses mid-attempt."""
USER_AGENT = "Grantex-Webhooks/0.1"

HttpPost = Callable[[str, bytes, Mapping[str, str], float], int]
"""``(url, body, headers, timeout) -> HTTP status``; raises on a network error or timeout."""


@dataclass(frozen=True)
class Webhook:
    """A registration. ``secret`` is set only on the object :func:`create` returns."""

    id: str
    developer_id: str
    url: str
    events: tuple[str, ...]
    created_at: str
    secret: str | None = None

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"id": self.id, "url": self.url, "events": list(self.events),
                               "createdAt": self.created_at}
        if self.secret is not None:
            out["secret"] = self.secret
        return out


@dataclass(frozen=True)
class Delivery:
    """One event on its way to one webhook, with how the attempts went."""

    id: str
    webhook_id: str
    url: str
    event_seq: int
    event_id: str
    event_type: str
    status: str
    attempts: int
    max_attempts: int
    next_attempt_at: str | None
    last_error: str | None
    last_status: int | None
    created_at: str
    delivered_at: str | None

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "webhookId": self.webhook_id, "eventId": self.event_id,
                "eventType": self.event_type, "status": self.status, "attempts": self.attempts,
                "maxAttempts": self.max_attempts, "url": self.url, "lastError": self.last_error,
                "lastStatus": self.last_status, "nextAttemptAt": self.next_attempt_at,
                "createdAt": self.created_at, "deliveredAt": self.delivered_at}


# ── registrations ────────────────────────────────────────────────────────────

def check_url(value: object) -> str:
    """An absolute http(s) URL with a host. Nothing is fetched: registering must not probe."""
    if not isinstance(value, str) or not value.strip():
        raise errors.InvalidInput("url and events are required")
    url = value.strip()
    if len(url) > MAX_URL_LENGTH:
        raise errors.InvalidInput(f"url must be at most {MAX_URL_LENGTH} characters")
    if not url.isascii() or any(c.isspace() or ord(c) < 32 or ord(c) == 127 for c in url):
        raise errors.InvalidInput("url must be an ASCII URL without spaces or control characters "
                                  "(percent-encode anything else)")
    try:
        parts = urlsplit(url)
        _ = parts.port  # a port that is not a number in 0..65535 raises here
    except ValueError:
        raise errors.InvalidInput("url is not a valid URL") from None
    if parts.scheme.lower() not in ("http", "https"):
        raise errors.InvalidInput("url must start with http:// or https://")
    if not parts.hostname:
        raise errors.InvalidInput("url must name a host, e.g. https://example.com/webhook")
    if parts.username is not None or parts.password is not None:
        # The URL is listed, audited and logged; a password in it would be a secret in all three.
        raise errors.InvalidInput("url must not carry a user name or password (user:pass@host); "
                                  "authenticate the receiver by the webhook signature instead")
    return url


def check_events(value: object) -> tuple[str, ...]:
    """A non-empty subset of :data:`WEBHOOK_EVENT_TYPES`, duplicates dropped, order kept."""
    valid = ", ".join(WEBHOOK_EVENT_TYPES)
    if isinstance(value, str) or not isinstance(value, Iterable):
        raise errors.InvalidInput("url and events are required")
    names = list(value)
    if not names:
        raise errors.InvalidInput("url and events are required")
    bad = [n for n in names if not isinstance(n, str) or n not in WEBHOOK_EVENT_TYPES]
    if bad:
        shown = ", ".join(repr(n)[:60] for n in bad[:5])
        raise errors.InvalidInput(f"Invalid event types: {shown}. Valid: {valid}")
    return tuple(dict.fromkeys(names))


def _webhook(row: sqlite3.Row) -> Webhook:
    return Webhook(id=row["id"], developer_id=row["developer_id"], url=row["url"],
                   events=tuple(json.loads(row["events"])), created_at=row["created_at"])


def create(ledger: Ledger, developer_id: str, url: object, events: object) -> Webhook:
    """Register ``url`` for ``events``; the returned object is the only one carrying the secret."""
    url = check_url(url)
    names = check_events(events)
    webhook_id = new_id("webhook")
    secret = secrets.token_bytes(24).hex()
    now = iso(ledger.now())
    with ledger.write() as conn:
        conn.execute(
            "INSERT INTO webhooks (id, developer_id, url, events, secret, start_seq, created_at) "
            "VALUES (?, ?, ?, ?, ?, ?, ?)",
            (webhook_id, developer_id, url, json.dumps(list(names)), secret, last_seq(ledger), now))
        record(ledger, conn, developer_id, "grantex.webhook.created",
               metadata={"webhookId": webhook_id, "url": url, "events": list(names)})
    return Webhook(webhook_id, developer_id, url, names, now, secret)


def list_webhooks(ledger: Ledger, developer_id: str) -> list[Webhook]:
    """Live webhooks, newest first (ids are ULIDs: they sort by creation)."""
    rows = ledger.query("SELECT id, developer_id, url, events, created_at FROM webhooks "
                        "WHERE developer_id = ? AND deleted_at IS NULL ORDER BY id DESC",
                        (developer_id,))
    return [_webhook(r) for r in rows]


def _owned(ledger: Ledger, developer_id: str, webhook_id: object, *, live: bool) -> sqlite3.Row:
    if not isinstance(webhook_id, str) or not looks_like("webhook", webhook_id):
        raise errors.NotFound(f"webhook {str(webhook_id)[:60]!r} not found")
    check_text(webhook_id, "webhook id")
    row = ledger.query_one(
        "SELECT id, developer_id, url, events, created_at, deleted_at FROM webhooks "
        "WHERE id = ? AND developer_id = ?", (webhook_id, developer_id))
    if row is None or (live and row["deleted_at"] is not None):
        raise errors.NotFound(f"webhook {webhook_id} not found")
    return row


def delete(ledger: Ledger, developer_id: str, webhook_id: str) -> None:
    """Delete a webhook of ``developer_id`` (another's is 404); its pending deliveries stop."""
    _owned(ledger, developer_id, webhook_id, live=True)
    now = iso(ledger.now())
    with ledger.write() as conn:
        changed = conn.execute("UPDATE webhooks SET deleted_at = ? WHERE id = ? AND developer_id = ? "
                               "AND deleted_at IS NULL", (now, webhook_id, developer_id)).rowcount
        if not changed:  # deleted by another process since the check
            raise errors.NotFound(f"webhook {webhook_id} not found")
        conn.execute("UPDATE webhook_deliveries SET status = 'failed', lease_until = NULL, "
                     "next_attempt_at = NULL, last_error = 'webhook deleted' "
                     "WHERE webhook_id = ? AND status = 'pending'", (webhook_id,))
        record(ledger, conn, developer_id, "grantex.webhook.deleted",
               metadata={"webhookId": webhook_id})


def _delivery(row: sqlite3.Row) -> Delivery:
    return Delivery(
        id=row["id"], webhook_id=row["webhook_id"], url=row["url"], event_seq=row["event_seq"],
        event_id=row["event_id"], event_type=row["event_type"], status=row["status"],
        attempts=row["attempts"], max_attempts=row["max_attempts"],
        next_attempt_at=(iso(row["next_attempt_at"]) if row["status"] == "pending"
                         and row["next_attempt_at"] is not None else None),
        last_error=row["last_error"], last_status=row["last_status"],
        created_at=row["created_at"], delivered_at=row["delivered_at"])


def list_deliveries(ledger: Ledger, developer_id: str, webhook_id: str | None = None, *,
                    status: str | None = None, page: int = 1,
                    page_size: int = 50) -> tuple[list[Delivery], int]:
    """The delivery log, newest first, with the total matching; of one webhook (deleted ones
    included: their log still explains what happened) or all of the developer's."""
    if status is not None and status not in DELIVERY_STATUSES:
        raise errors.InvalidInput(f"status must be one of {', '.join(DELIVERY_STATUSES)}")
    if isinstance(page_size, int) and not isinstance(page_size, bool) and page_size > 100:
        raise errors.InvalidInput("pageSize must be a whole number from 1 to 100")
    limit, offset = window(page, page_size)
    where = "w.developer_id = ?"
    params: list[Any] = [developer_id]
    if webhook_id is not None:
        _owned(ledger, developer_id, webhook_id, live=False)
        where += " AND d.webhook_id = ?"
        params.append(webhook_id)
    if status is not None:
        where += " AND d.status = ?"
        params.append(status)
    base = f"FROM webhook_deliveries d JOIN webhooks w ON w.id = d.webhook_id WHERE {where}"
    with ledger.read():
        total_row = ledger.query_one(f"SELECT COUNT(*) {base}", params)
        rows = ledger.query(f"SELECT d.*, w.url {base} ORDER BY d.id DESC LIMIT ? OFFSET ?",
                            [*params, limit, offset])
    return [_delivery(r) for r in rows], int(total_row[0]) if total_row else 0


def failed_count(ledger: Ledger, developer_id: str | None = None) -> int:
    """Deliveries that gave up (all developers when ``None``): what the overview shows."""
    sql = ("SELECT COUNT(*) FROM webhook_deliveries d JOIN webhooks w ON w.id = d.webhook_id "
           "WHERE d.status = 'failed'")
    row = ledger.query_one(sql + (" AND w.developer_id = ?" if developer_id else ""),
                           (developer_id,) if developer_id else ())
    return int(row[0]) if row else 0


# ── delivery ─────────────────────────────────────────────────────────────────

def sign(secret: str, body: str) -> str:
    """The legacy signature: HMAC-SHA256 keyed with the hex secret's UTF-8 bytes, over the body."""
    return "sha256=" + hmac.new(secret.encode(), body.encode(), hashlib.sha256).hexdigest()


def headers_for(secret: str, body: str, timestamp: int) -> dict[str, str]:
    """The request headers of one attempt (V2 signs ``<ts>.<body>``, fresh per attempt)."""
    return {"Content-Type": "application/json", "User-Agent": USER_AGENT,
            "X-Grantex-Signature": sign(secret, body),
            "X-Grantex-Timestamp": str(timestamp),
            "X-Grantex-Signature-V2": sign(secret, f"{timestamp}.{body}")}


def enqueue_new(ledger: Ledger, *, max_attempts: int = DEFAULT_MAX_ATTEMPTS,
                limit: int = 1000) -> int:
    """Queue outbox events past the cursor for every matching live webhook; the number queued.

    Cheap when idle and when no webhook is registered: the cursor is compared with the newest
    seq, and the live webhooks looked up, before the write lock is taken. Every server worker
    runs this a few times a second; taking the lock for nothing would make each of them queue
    behind (and hold up) the writes clients wait for.
    """
    cursor_row = ledger.query_one("SELECT seq FROM webhook_cursor WHERE id = 1")
    if cursor_row is not None and cursor_row[0] >= last_seq(ledger):
        return 0
    if _first_live_start(ledger.conn) is None:
        return 0  # each webhook starts after its own start_seq: nothing before it is owed
    queued = 0
    with ledger.write() as conn:
        row = conn.execute("SELECT seq FROM webhook_cursor WHERE id = 1").fetchone()
        start = _first_live_start(conn)
        if start is None:
            return 0
        # no live webhook wants what came before the earliest one's start: skip it at once
        cursor = max(int(row[0]) if row is not None else 0, start)
        newest = last_seq(ledger)  # under the write lock: no event can commit meanwhile
        found = read_events(ledger, None, after=cursor, types=WEBHOOK_EVENT_TYPES, limit=limit)
        hooks: dict[str, list[sqlite3.Row]] = {}
        now = iso(ledger.now())
        wall = time.time()
        for event in found:
            if event.developer_id not in hooks:
                hooks[event.developer_id] = conn.execute(
                    "SELECT id, events, start_seq FROM webhooks WHERE developer_id = ? "
                    "AND deleted_at IS NULL", (event.developer_id,)).fetchall()
            for hook in hooks[event.developer_id]:
                if event.seq <= hook["start_seq"] or event.type not in json.loads(hook["events"]):
                    continue
                queued += conn.execute(
                    "INSERT OR IGNORE INTO webhook_deliveries (id, webhook_id, event_seq, event_id, "
                    "event_type, status, attempts, max_attempts, next_attempt_at, created_at) "
                    "VALUES (?, ?, ?, ?, ?, 'pending', 0, ?, ?, ?)",
                    (new_id("webhook_delivery"), hook["id"], event.seq, event.id, event.type,
                     max_attempts, wall, now)).rowcount
        advanced = found[-1].seq if len(found) == limit else max(newest, cursor)
        conn.execute("INSERT INTO webhook_cursor (id, seq) VALUES (1, ?) "
                     "ON CONFLICT (id) DO UPDATE SET seq = excluded.seq", (advanced,))
    return queued


def _first_live_start(conn: sqlite3.Connection) -> int | None:
    row = conn.execute("SELECT min(start_seq) FROM webhooks WHERE deleted_at IS NULL").fetchone()
    return int(row[0]) if row is not None and row[0] is not None else None


_DUE = ("SELECT d.id, d.webhook_id, d.event_seq, d.attempts, d.max_attempts, w.url, w.secret, "
        "w.developer_id FROM webhook_deliveries d JOIN webhooks w ON w.id = d.webhook_id "
        "WHERE d.status = 'pending' AND d.next_attempt_at <= ? AND w.deleted_at IS NULL "
        "AND (d.lease_until IS NULL OR d.lease_until <= ?) "
        "ORDER BY d.next_attempt_at, d.id LIMIT 1")


def _lease_one(ledger: Ledger, now: float, lease_seconds: float) -> tuple[sqlite3.Row, float] | None:
    if ledger.query_one(_DUE, (now, now)) is None:
        return None  # looked up without the write lock: nothing due is the usual answer
    with ledger.write() as conn:
        row = conn.execute(_DUE, (now, now)).fetchone()  # again under the lock: another may have leased it
        if row is None:
            return None
        lease = now + lease_seconds
        conn.execute("UPDATE webhook_deliveries SET lease_until = ? WHERE id = ?", (lease, row["id"]))
    return row, lease


def _short(exc: BaseException) -> str:
    text = f"{type(exc).__name__}: {exc}"
    return text if len(text) <= 300 else text[:297] + "..."


def deliver_due(ledger: Ledger, now: float | None = None, http_post: HttpPost | None = None, *,
                base_delay: float = DEFAULT_BASE_DELAY, batch: int = 20,
                lease_seconds: float = LEASE_SECONDS,
                should_stop: Callable[[], bool] = lambda: False) -> int:
    """Attempt up to ``batch`` due deliveries, one lease at a time; the number attempted.

    ``now`` is real (wall-clock) time, never the ledger's movable clock: the receiver checks
    ``X-Grantex-Timestamp`` against its own clock. A 2xx marks the row delivered; anything else
    (a status, a network error, a timeout) schedules the next attempt ``base_delay·2^(n-1)``
    seconds later, until ``max_attempts`` failures mark it failed.
    """
    post = http_post or urllib_post
    attempted = 0
    while attempted < batch and not should_stop():
        at = time.time() if now is None else now
        leased = _lease_one(ledger, at, lease_seconds)
        if leased is None:
            break
        row, lease = leased
        attempted += 1
        events = read_events(ledger, row["developer_id"], after=row["event_seq"] - 1, limit=1)
        status: int | None = None
        error: str | None = None
        if not events or events[0].seq != row["event_seq"]:
            error = "event no longer in the ledger"
        else:
            body = events[0].body
            stamp = int(time.time() if now is None else now)
            try:
                status = post(row["url"], body.encode(), headers_for(row["secret"], body, stamp),
                              TIMEOUT)
            except Exception as exc:  # a receiver's failure is recorded, never raised
                error = _short(exc)
            else:
                if not 200 <= status < 300:
                    error = f"HTTP {status}"
        _finish(ledger, row, lease, status, error, time.time() if now is None else now, base_delay)
    return attempted


def _finish(ledger: Ledger, row: sqlite3.Row, lease: float, status: int | None, error: str | None,
            at: float, base_delay: float) -> None:
    attempts = row["attempts"] + 1
    with ledger.write() as conn:
        if error is None:
            conn.execute("UPDATE webhook_deliveries SET status = 'delivered', attempts = ?, "
                         "last_status = ?, last_error = NULL, lease_until = NULL, "
                         "next_attempt_at = NULL, delivered_at = ? WHERE id = ? AND lease_until = ?",
                         (attempts, status, iso(at), row["id"], lease))
            return
        done = attempts >= row["max_attempts"]
        conn.execute("UPDATE webhook_deliveries SET status = ?, attempts = ?, last_status = ?, "
                     "last_error = ?, lease_until = NULL, next_attempt_at = ? "
                     "WHERE id = ? AND lease_until = ?",
                     ("failed" if done else "pending", attempts, status, error,
                      None if done else at + base_delay * 2 ** (attempts - 1), row["id"], lease))
    log.info("webhook %s delivery %s attempt %d failed: %s", row["webhook_id"], row["id"],
             attempts, error)


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """A redirect is the receiver's answer (non-2xx: retried), never followed with the body."""

    def redirect_request(self, *_args: Any, **_kwargs: Any) -> None:
        return None


_opener = urllib.request.build_opener(_NoRedirect)


def urllib_post(url: str, body: bytes, headers: Mapping[str, str], timeout: float) -> int:
    """POST with the standard library (the library has no HTTP client dependency)."""
    request = urllib.request.Request(url, data=body, headers=dict(headers), method="POST")
    try:
        with _opener.open(request, timeout=timeout) as response:
            response.read(65536)
            return int(response.status)
    except urllib.error.HTTPError as exc:
        exc.close()
        return int(exc.code)


class DeliveryWorker:
    """Queues and delivers in a background thread with its own ledger connection, so a slow
    receiver never holds up request handling. ``stop()`` lets the attempt in flight finish and
    record its outcome, so a restart neither repeats nor loses it."""

    def __init__(self, path: str, *, passphrase: str | None = None,
                 base_delay: float = DEFAULT_BASE_DELAY, interval: float = 0.25,
                 http_post: HttpPost | None = None) -> None:
        self.path = path
        self.passphrase = passphrase
        self.base_delay = base_delay
        self.interval = interval
        self.http_post = http_post
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="grantex-webhooks", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float = TIMEOUT + 5) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout)

    def _run(self) -> None:
        from .founding import Ledger

        try:
            ledger = Ledger(self.path, create=False, passphrase=self.passphrase)
        except errors.GrantexLocalError as exc:
            log.error("webhook delivery not started: %s", exc.message)
            return
        try:
            while not self._stop.is_set():
                try:
                    enqueue_new(ledger)
                    deliver_due(ledger, http_post=self.http_post, base_delay=self.base_delay,
                                should_stop=self._stop.is_set)
                except errors.LedgerBusy:
                    pass  # another writer held the lock; try again on the next tick
                except Exception:  # keep delivering; the next tick may succeed
                    log.exception("webhook delivery pass failed")
                self._stop.wait(self.interval)
        finally:
            ledger.close()
