"""Webhooks (issue 11 item 4): registration through the official SDK, signed delivery to a real
receiver on loopback, retries with backoff, no loss or repeat across a restart, and the secret
kept out of every list, log and export."""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import grantex
import httpx
import pytest
from cli_helpers import fails, ok
from grantex import AuthorizeParams, ExchangeTokenParams, GrantexApiError
from grantex._verify import clear_jwks_cache
from helpers import dump, grant_for, server_process

from grantex_local import Grantex, Ledger, developers, errors, webhooks
from grantex_local.export import export_bundle
from grantex_local.server.testing import running_server

# ── a receiver on loopback ──────────────────────────────────────────────────


@dataclass
class Seen:
    body: str
    headers: dict[str, str]
    status: int


@dataclass
class Receiver:
    url: str
    statuses: list[int]  # answers in order; 200 once they run out
    seen: list[Seen] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def wait_for(self, predicate: Callable[[list[Seen]], bool], timeout: float = 15) -> list[Seen]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.lock:
                if predicate(self.seen):
                    return list(self.seen)
            time.sleep(0.02)
        raise AssertionError(f"receiver saw {len(self.seen)} request(s): {self.seen}")

    def acknowledged(self) -> list[str]:
        with self.lock:
            return [json.loads(s.body)["id"] for s in self.seen if 200 <= s.status < 300]


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    state: dict[str, Receiver] = {}

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            rec = state["r"]
            body = self.rfile.read(int(self.headers.get("Content-Length", "0"))).decode()
            with rec.lock:
                status = rec.statuses.pop(0) if rec.statuses else 200
                rec.seen.append(Seen(body, dict(self.headers.items()), status))
            self.send_response(status)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *_args: Any) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    state["r"] = Receiver(f"http://127.0.0.1:{httpd.server_address[1]}/hook", [])
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield state["r"]
    finally:
        httpd.shutdown()
        httpd.server_close()


@dataclass(frozen=True)
class Keys:
    path: Path
    sandbox: str
    other: str


@pytest.fixture
def keys(tmp_path: Path) -> Keys:
    path = tmp_path / "grantex.db"
    with Ledger(path) as ledger:
        sandbox = developers.create_api_key(ledger, developers.default_developer(ledger).id, "sdk").key
        other = developers.create_developer(ledger, "Other", sandbox=True)
        other_key = developers.create_api_key(ledger, other.id, "sdk").key
    clear_jwks_cache()
    return Keys(path, sandbox, other_key)


def _sdk(base_url: str, key: str) -> grantex.Grantex:
    return grantex.Grantex(api_key=key, base_url=base_url, max_retries=0)


def _grant_through_api(gx: grantex.Grantex, name: str = "agent") -> str:
    agent = gx.agents.register(name=name, scopes=["files:read"])
    auth = gx.authorize(AuthorizeParams(agent_id=agent.id, user_id="user_alice", scopes=["files:read"]))
    assert auth.code
    return gx.tokens.exchange(ExchangeTokenParams(code=auth.code, agent_id=agent.id)).grant_id


def _deliveries(base_url: str, key: str, webhook_id: str) -> dict[str, Any]:
    response = httpx.get(f"{base_url}/v1/webhooks/{webhook_id}/deliveries",
                         headers={"Authorization": f"Bearer {key}"})
    assert response.status_code == 200, response.text
    data: dict[str, Any] = response.json()
    return data


# ── end to end with the official SDK ─────────────────────────────────────────


def test_a_grant_created_through_the_api_arrives_signed(keys: Keys, receiver: Receiver) -> None:
    with running_server(keys.path) as server:
        gx = _sdk(server.base_url, keys.sandbox)
        hook = gx.webhooks.create(url=receiver.url, events=["grant.created"])
        assert hook.id.startswith("wh_") and len(hook.secret) == 48
        assert hook.secret == hook.secret.lower() and int(hook.secret, 16) >= 0
        grant_id = _grant_through_api(gx)
        seen = receiver.wait_for(lambda s: len(s) >= 1)[0]
        envelope = json.loads(seen.body)
        assert envelope["type"] == "grant.created" and envelope["data"]["grantId"] == grant_id
        assert list(envelope) == ["id", "type", "createdAt", "data"]
        assert seen.headers["Content-Type"] == "application/json"
        assert seen.headers["User-Agent"] == "Grantex-Webhooks/0.1"
        assert grantex.verify_webhook(seen.body, seen.headers["X-Grantex-Signature-V2"],
                                      seen.headers["X-Grantex-Timestamp"], hook.secret)
        assert not grantex.verify_webhook(seen.body, seen.headers["X-Grantex-Signature-V2"],
                                          seen.headers["X-Grantex-Timestamp"], "0" * 48)
        assert grantex.verify_webhook_signature(seen.body, seen.headers["X-Grantex-Signature"],
                                                hook.secret)
        log = receiver.wait_for(lambda _s: _deliveries(server.base_url, keys.sandbox,
                                                        hook.id)["deliveries"][0]["status"]
                                == "delivered")
        assert len(log) == 1  # token.issued was not subscribed to
        data = _deliveries(server.base_url, keys.sandbox, hook.id)
        assert data["total"] == 1 and data["deliveries"][0]["attempts"] == 1
        assert data["deliveries"][0]["eventId"] == envelope["id"]


def test_a_receiver_answering_500_twice_gets_it_on_the_third_attempt(
        keys: Keys, receiver: Receiver) -> None:
    receiver.statuses[:] = [500, 500]
    with running_server(keys.path, webhook_retry_base=0.2) as server:
        gx = _sdk(server.base_url, keys.sandbox)
        hook = gx.webhooks.create(url=receiver.url, events=["grant.created"])
        _grant_through_api(gx)
        seen = receiver.wait_for(lambda s: len(s) >= 3)
        assert [s.status for s in seen] == [500, 500, 200]
        assert len({s.body for s in seen}) == 1  # the exact stored body every time
        for attempt in seen:
            assert grantex.verify_webhook(attempt.body, attempt.headers["X-Grantex-Signature-V2"],
                                          attempt.headers["X-Grantex-Timestamp"], hook.secret)
        deadline = time.monotonic() + 10
        while (row := _deliveries(server.base_url, keys.sandbox, hook.id)["deliveries"][0])[
                "status"] != "delivered":
            assert time.monotonic() < deadline, row
            time.sleep(0.05)
        assert row["attempts"] == 3 and row["lastStatus"] == 200
        time.sleep(0.5)
        assert len(receiver.seen) == 3
    out = ok("webhooks", "deliveries", hook.id, "--ledger", keys.path, "--status", "delivered").output
    assert "delivered" in out and "3/5" in out


def test_a_restart_neither_loses_nor_repeats(keys: Keys, receiver: Receiver) -> None:
    with running_server(keys.path, webhook_retry_base=0.2) as server:
        gx = _sdk(server.base_url, keys.sandbox)
        gx.webhooks.create(url=receiver.url, events=["grant.created", "grant.revoked"])
        first = _grant_through_api(gx, "first")
        receiver.wait_for(lambda s: len(s) >= 1)
    # while no server runs, another process (here: the library) changes the ledger
    with Ledger(keys.path) as ledger:
        gx_local = Grantex(ledger, developer_id=developers.default_developer(ledger).id)
        gx_local.grants.revoke(first)
    with running_server(keys.path, webhook_retry_base=0.2) as server:
        gx = _sdk(server.base_url, keys.sandbox)
        _grant_through_api(gx, "second")
        receiver.wait_for(lambda s: len(s) >= 3)
        time.sleep(1.0)  # several worker ticks: a repeat would show up by now
    types = [json.loads(s.body)["type"] for s in receiver.seen]
    assert sorted(types) == ["grant.created", "grant.created", "grant.revoked"]
    acknowledged = receiver.acknowledged()
    assert len(acknowledged) == len(set(acknowledged)) == 3


# ── bad input and ownership ─────────────────────────────────────────────────


@pytest.mark.parametrize(("url", "events", "needle"), [
    ("ftp://example.com/hook", ["grant.created"], "http"),
    ("file:///etc/passwd", ["grant.created"], "http"),
    ("javascript:alert(1)", ["grant.created"], "http"),
    ("http://", ["grant.created"], "host"),
    ("https:///path-only", ["grant.created"], "host"),
    ("http://exa mple.com/", ["grant.created"], "space"),
    ("http://example.com:99999/", ["grant.created"], "valid URL"),
    ("example.com/hook", ["grant.created"], "http"),
    ("https://user:secret@example.com/hook", ["grant.created"], "password"),
    ("", ["grant.created"], "required"),
    ("https://example.com/hook", ["grant.created", "budget.exhausted"], "Valid: grant.created"),
    ("https://example.com/hook", ["agent.registered"], "Invalid event types"),
    ("https://example.com/hook", [], "required"),
])
def test_bad_input_is_400_and_writes_nothing(keys: Keys, url: str, events: list[str],
                                             needle: str) -> None:
    with running_server(keys.path, webhook_delivery=False) as server:
        gx = _sdk(server.base_url, keys.sandbox)
        before = dump(keys.path)
        with pytest.raises(GrantexApiError) as caught:
            gx.webhooks.create(url=url, events=events)
        assert caught.value.status_code == 400 and needle in str(caught.value)
        assert dump(keys.path) == before


def test_events_of_the_wrong_type_are_400(keys: Keys) -> None:
    with running_server(keys.path, webhook_delivery=False) as server:
        for body in ({"url": "https://example.com/h", "events": "grant.created"},
                     {"url": "https://example.com/h", "events": [1]},
                     {"url": 5, "events": ["grant.created"]}, {}):
            response = httpx.post(f"{server.base_url}/v1/webhooks", json=body,
                                  headers={"Authorization": f"Bearer {keys.sandbox}"})
            assert response.status_code == 400, (body, response.text)
            assert set(response.json()) >= {"message", "code", "requestId"}


def test_delete_is_204_once_and_404_for_another_developer(keys: Keys) -> None:
    with running_server(keys.path, webhook_delivery=False) as server:
        mine = _sdk(server.base_url, keys.sandbox)
        theirs = _sdk(server.base_url, keys.other)
        hook = mine.webhooks.create(url="https://example.com/webhook",
                                    events=["grant.created", "grant.revoked"])
        assert [h.id for h in theirs.webhooks.list().webhooks] == []
        with pytest.raises(GrantexApiError) as caught:
            theirs.webhooks.delete(hook.id)
        assert caught.value.status_code == 404
        newer = mine.webhooks.create(url="https://example.com/2", events=["token.issued"])
        assert [h.id for h in mine.webhooks.list().webhooks] == [newer.id, hook.id]
        assert mine.webhooks.delete(hook.id) is None
        with pytest.raises(GrantexApiError) as caught:
            mine.webhooks.delete(hook.id)
        assert caught.value.status_code == 404
        assert [h.id for h in mine.webhooks.list().webhooks] == [newer.id]
        response = httpx.get(f"{server.base_url}/v1/webhooks/{hook.id}/deliveries",
                             headers={"Authorization": f"Bearer {keys.other}"})
        assert response.status_code == 404


# ── the secret stays secret ──────────────────────────────────────────────────


def test_the_secret_appears_only_at_creation(keys: Keys, receiver: Receiver, tmp_path: Path,
                                             caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    receiver.statuses[:] = [500]  # a failure is logged: the log must not carry the secret
    with running_server(keys.path, webhook_retry_base=0.2) as server:
        gx = _sdk(server.base_url, keys.sandbox)
        hook = gx.webhooks.create(url=receiver.url, events=["grant.created"])
        secret = hook.secret
        listed = httpx.get(f"{server.base_url}/v1/webhooks",
                           headers={"Authorization": f"Bearer {keys.sandbox}"}).text
        assert hook.id in listed and secret not in listed and "secret" not in listed
        _grant_through_api(gx)
        receiver.wait_for(lambda s: len(s) >= 2)
        assert secret not in json.dumps(_deliveries(server.base_url, keys.sandbox, hook.id))
    assert "attempt 1 failed" in caplog.text
    assert secret not in caplog.text
    for args in (("webhooks", "list"), ("webhooks", "list", "--json"), ("webhooks", "deliveries"),
                 ("audit", "list", "--json"), ("info",)):
        out = ok(*args, "--ledger", keys.path).output
        assert secret not in out, args
    with Ledger(keys.path) as ledger:
        audit_rows = ledger.query("SELECT * FROM audit_entries WHERE action LIKE 'grantex.webhook.%'")
        assert [r["action"] for r in audit_rows] == ["grantex.webhook.created"]
        assert all(secret not in str(tuple(r)) for r in audit_rows)
        bundle = Path(export_bundle(ledger, tmp_path / "bundle")["path"])
    files = [p for p in bundle.rglob("*") if p.is_file()]
    assert files and all(secret.encode() not in p.read_bytes() for p in files)


def test_the_secret_stays_out_of_a_real_serve_process(keys: Keys, receiver: Receiver) -> None:
    receiver.statuses[:] = [500] * 5
    with Ledger(keys.path) as ledger:
        dev = developers.default_developer(ledger).id
        secret = webhooks.create(ledger, dev, receiver.url, ["grant.created"]).secret
        assert secret
    with server_process(keys.path, "--log-level", "info") as proc:
        with Ledger(keys.path) as ledger:  # another process makes the change
            grant_for(Grantex(ledger, developer_id=dev), ["files:read"])
        receiver.wait_for(lambda s: len(s) >= 1)
        proc.proc.terminate()
        output = proc.text + "\n".join(proc.rest(10))
    assert secret not in output


# ── the library: CLI, leases, deletion ───────────────────────────────────────


def test_cli_add_list_remove(keys: Keys) -> None:
    added = ok("webhooks", "add", "https://example.com/h", "--event", "grant.created",
               "--event", "token.issued", "--ledger", keys.path, "--json").output
    data = json.loads(added)
    assert data["events"] == ["grant.created", "token.issued"] and len(data["secret"]) == 48
    listed = ok("webhooks", "list", "--ledger", keys.path).output
    assert data["id"] in listed and data["secret"] not in listed
    assert "error: Invalid event types" in fails(2, "webhooks", "add", "https://example.com/h",
                                                  "--event", "nope", "--ledger", keys.path).output
    assert "error:" in fails(2, "webhooks", "add", "gopher://example.com", "--event",
                             "grant.created", "--ledger", keys.path).output
    ok("webhooks", "remove", data["id"], "--ledger", keys.path)
    assert "no webhooks" in ok("webhooks", "list", "--ledger", keys.path).output
    assert "not found" in fails(2, "webhooks", "remove", data["id"], "--ledger", keys.path).output


def test_a_leased_attempt_is_never_sent_twice(keys: Keys) -> None:
    with Ledger(keys.path) as one, Ledger(keys.path) as two:
        dev = developers.default_developer(one).id
        webhooks.create(one, dev, "http://127.0.0.1:9/h", ["grant.created"])
        grant_for(Grantex(one, developer_id=dev), ["files:read"])
        assert webhooks.enqueue_new(one) == 1
        assert webhooks.enqueue_new(two) == 0  # the cursor moved; UNIQUE would stop it anyway
        inner: list[int] = []

        def post(url: str, body: bytes, headers: Any, timeout: float) -> int:
            inner.append(webhooks.deliver_due(two, http_post=lambda *_a: 200))
            return 200

        assert webhooks.deliver_due(one, http_post=post) == 1
        assert inner == [0]  # while one held the lease, two found nothing to send
        assert webhooks.deliver_due(two, http_post=lambda *_a: 200) == 0  # and it was delivered
        found, total = webhooks.list_deliveries(one, dev, status="delivered")
        assert total == 1 and found[0].attempts == 1


def test_backoff_then_failed_and_delete_stops_pending(keys: Keys) -> None:
    with Ledger(keys.path) as ledger:
        dev = developers.default_developer(ledger).id
        hook = webhooks.create(ledger, dev, "http://127.0.0.1:9/h", ["grant.created"])
        other = webhooks.create(ledger, dev, "http://127.0.0.1:9/other", ["grant.created"])
        grant_for(Grantex(ledger, developer_id=dev), ["files:read"])
        assert webhooks.enqueue_new(ledger) == 2
        webhooks.delete(ledger, dev, other.id)
        rows, _ = webhooks.list_deliveries(ledger, dev, other.id)
        assert rows[0].status == "failed" and rows[0].last_error == "webhook deleted"
        now = time.time()

        def refuse(*_args: Any) -> int:
            raise ConnectionRefusedError("refused")

        for attempt in range(5):
            assert webhooks.deliver_due(ledger, now, refuse, base_delay=1.0) == 1
            rows, _ = webhooks.list_deliveries(ledger, dev, hook.id)
            assert rows[0].attempts == attempt + 1
            if attempt < 4:
                assert rows[0].status == "pending"
                assert webhooks.deliver_due(ledger, now + 2 ** attempt - 0.05, refuse) == 0
            now += 2 ** attempt + 0.01
        rows, _ = webhooks.list_deliveries(ledger, dev, hook.id)
        assert rows[0].status == "failed" and "ConnectionRefusedError" in (rows[0].last_error or "")
        assert webhooks.deliver_due(ledger, now + 1e6, lambda *_a: 200) == 0
        assert webhooks.failed_count(ledger, dev) == 2


def test_a_webhook_hears_only_what_happens_after_it(keys: Keys) -> None:
    with Ledger(keys.path) as ledger:
        dev = developers.default_developer(ledger).id
        grant_for(Grantex(ledger, developer_id=dev), ["files:read"])
        webhooks.create(ledger, dev, "http://127.0.0.1:9/h", ["grant.created", "token.issued"])
        assert webhooks.enqueue_new(ledger) == 0
        with pytest.raises(errors.InvalidInput):
            webhooks.list_deliveries(ledger, dev, status="lost")


def test_the_delivery_pass_takes_no_write_lock_with_nothing_to_do(tmp_path: Path) -> None:
    """Every server worker runs a delivery pass a few times a second: with no webhook (or nothing
    due) it must not queue for the write lock, which would hold up the writes clients wait for.
    Another connection holds the lock; the pass returns at once. Once a webhook exists and an
    event is owed to it, the same pass does need the lock (and is refused here)."""
    import sqlite3

    path = tmp_path / "idle.db"
    gx = Grantex(path)
    grant_for(gx, ["calendar:read"])  # events in the outbox, no webhook
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    try:
        with Ledger(path, create=False) as ledger:
            ledger.conn.execute("PRAGMA busy_timeout = 200")
            assert webhooks.enqueue_new(ledger) == 0
            assert webhooks.deliver_due(ledger, http_post=lambda *a, **k: 200) == 0
    finally:
        holder.execute("ROLLBACK")
    webhooks.create(gx.ledger, gx.developer_id, "http://127.0.0.1:9/hook", ["grant.created"])
    grant_for(gx, ["calendar:read"])  # owed to the webhook now
    holder.execute("BEGIN IMMEDIATE")
    try:
        with Ledger(path, create=False) as ledger:
            ledger.conn.execute("PRAGMA busy_timeout = 200")
            with pytest.raises(errors.LedgerBusy):
                webhooks.enqueue_new(ledger)
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    with Ledger(path, create=False) as ledger:
        assert webhooks.enqueue_new(ledger) == 1  # only the event after the webhook's start
    gx.close()
