"""The revocation feed (issue 11 item 5): the library's snapshot and delta on a real ledger, the
HTTP routes on loopback, and the official SDK's ``revocation_check="feed"`` end to end, with the
revocations made by another process (the CLI)."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grantex
import httpx
import pytest
from grantex import Permission, RevocationSubReason, ToolManifest
from grantex._verify import clear_jwks_cache
from helpers import MovableClock, grant_for

from grantex_local import Grantex, Ledger, developers, errors, events
from grantex_local import revocation_feed as feed
from grantex_local.server.testing import RunningServer, running_server

SCOPES = ["calendar:read", "tool:calendar:read"]
CLI = [sys.executable, "-c", "from grantex_local.cli import main; main()"]


def keyed(entries: list[feed.Entry]) -> dict[str, str]:
    """What the SDK's set would index: grants by id, tokens by jti, with the action."""
    out: dict[str, str] = {}
    for e in entries:
        out[e.jti if e.action == "token_revoked" and e.jti else e.grant_id] = e.action
    return out


@pytest.fixture
def gx(tmp_path: Path) -> Iterator[Grantex]:
    with Grantex(tmp_path / "grantex.db") as client:
        yield client


# ── library: snapshot ──────────────────────────────────────────────────────


def test_snapshot_of_an_untouched_ledger_is_empty(gx: Grantex) -> None:
    grant_for(gx, SCOPES)
    page = feed.snapshot(gx.ledger, gx.developer_id)
    assert page.entries == [] and page.next_page_token is None
    assert page.cursor == events.last_seq(gx.ledger, gx.developer_id) > 0
    assert page.to_dict() == {"entries": [], "cursor": page.cursor, "nextPageToken": None}


def test_snapshot_is_what_is_revoked_or_suspended_now(gx: Grantex) -> None:
    root = grant_for(gx, SCOPES, agent_name="root")
    sub = gx.agents.register(name="sub", scopes=SCOPES)
    child = gx.grants.delegate(parent_grant_token=root.grant_token, sub_agent_id=sub.id, scopes=SCOPES)
    lone = grant_for(gx, SCOPES, agent_name="lone")
    sleepy = grant_for(gx, SCOPES, agent_name="sleepy")
    untouched = grant_for(gx, SCOPES, agent_name="fine")

    gx.grants.revoke(root.grant_id)  # cascades to the child
    gx.tokens.revoke(lone.token_id)  # the token alone: its grant stays active
    gx.agents.suspend(gx.grants.get(sleepy.grant_id).agent_id)

    page = feed.snapshot(gx.ledger, gx.developer_id)
    assert keyed(page.entries) == {root.grant_id: "revoked", child.grant_id: "revoked",
                                   lone.token_id: "token_revoked", sleepy.grant_id: "suspended"}
    assert untouched.grant_id not in {e.grant_id for e in page.entries}
    token_entry = next(e for e in page.entries if e.action == "token_revoked")
    assert token_entry.grant_id == lone.grant_id and token_entry.to_dict()["jti"] == lone.token_id
    for e in page.entries:
        wire = e.to_dict()
        assert set(wire) >= {"seq", "action", "grantId", "expiresAt", "at"}
        assert wire["expiresAt"].endswith("Z") and wire["at"].endswith("Z")

    # reactivated: the suspension is gone from the snapshot (a resumed grant must not appear)
    gx.agents.reactivate(gx.grants.get(sleepy.grant_id).agent_id)
    assert sleepy.grant_id not in keyed(feed.snapshot(gx.ledger, gx.developer_id).entries)


def test_snapshot_leaves_out_what_has_expired(tmp_path: Path) -> None:
    clock = MovableClock()
    with Grantex(tmp_path / "grantex.db", clock=clock) as gx:
        short = grant_for(gx, SCOPES, agent_name="short", expires_in="1h")
        long = grant_for(gx, SCOPES, agent_name="long", expires_in="3h")
        gx.grants.revoke(short.grant_id)
        gx.grants.revoke(long.grant_id)
        both = {short.grant_id, long.grant_id}
        assert set(keyed(feed.snapshot(gx.ledger, gx.developer_id).entries)) == both
        clock.advance(2 * 3600)
        assert set(keyed(feed.snapshot(gx.ledger, gx.developer_id).entries)) == {long.grant_id}


def test_snapshot_is_per_developer(gx: Grantex) -> None:
    token = grant_for(gx, SCOPES)
    gx.grants.revoke(token.grant_id)
    other = developers.create_developer(gx.ledger, "Other", sandbox=True)
    assert feed.snapshot(gx.ledger, other.id).entries == []


def test_snapshot_pages_join_into_the_whole_and_keep_the_first_cursor(gx: Grantex) -> None:
    revoked = [grant_for(gx, SCOPES, agent_name=f"a{i}") for i in range(5)]
    for t in revoked:
        gx.grants.revoke(t.grant_id)
    tokens = [grant_for(gx, SCOPES, agent_name=f"t{i}") for i in range(3)]
    for t in tokens:
        gx.tokens.revoke(t.token_id)
    whole = feed.snapshot(gx.ledger, gx.developer_id)
    assert whole.next_page_token is None and len(whole.entries) == 8

    for size in (1, 2, 5, 7):
        pages = [feed.snapshot(gx.ledger, gx.developer_id, page_size=size)]
        while pages[-1].next_page_token:
            if len(pages) == 2:  # a change between pages does not move the snapshot's cursor
                gx.agents.register(name=f"between-{size}", scopes=SCOPES)
            pages.append(feed.snapshot(gx.ledger, gx.developer_id, page_token=pages[-1].next_page_token,
                                       page_size=size))
        assert all(len(p.entries) <= size for p in pages)
        assert {p.cursor for p in pages} == {pages[0].cursor}
        joined = [e for p in pages for e in p.entries]
        assert keyed(joined) == keyed(whole.entries) and len(joined) == 8
        assembled = feed.snapshot_all(gx.ledger, gx.developer_id, page_size=size)
        assert keyed(assembled.entries) == keyed(whole.entries)


@pytest.mark.parametrize("token", ["nonsense", "e30", "W10", "WzEsIngiLCIiXQ", "WyJhIiwiZyIsIiJd",
                                   "WzEsImciXQ", "x" * 600, "%%%"])
def test_snapshot_refuses_a_page_token_it_did_not_make(gx: Grantex, token: str) -> None:
    with pytest.raises(errors.InvalidInput):
        feed.snapshot(gx.ledger, gx.developer_id, page_token=token)


@pytest.mark.parametrize("size", [0, -1, feed.MAX_PAGE_SIZE + 1])
def test_snapshot_refuses_a_page_size_out_of_bounds(gx: Grantex, size: int) -> None:
    with pytest.raises(errors.InvalidInput):
        feed.snapshot(gx.ledger, gx.developer_id, page_size=size)


# ── library: delta ─────────────────────────────────────────────────────────


def test_delta_turns_each_event_into_entries(gx: Grantex) -> None:
    root = grant_for(gx, SCOPES, agent_name="root")
    sub = gx.agents.register(name="sub", scopes=SCOPES)
    child = gx.grants.delegate(parent_grant_token=root.grant_token, sub_agent_id=sub.id, scopes=SCOPES)
    lone = grant_for(gx, SCOPES, agent_name="lone")
    sleepy = grant_for(gx, SCOPES, agent_name="sleepy")
    sleepy_agent = gx.grants.get(sleepy.grant_id).agent_id
    start = feed.snapshot(gx.ledger, gx.developer_id).cursor
    assert feed.delta(gx.ledger, gx.developer_id, start) == feed.Delta([], start)

    gx.grants.revoke(root.grant_id)
    first = feed.delta(gx.ledger, gx.developer_id, start)
    assert [(e.action, e.grant_id) for e in first.entries] == [("revoked", root.grant_id),
                                                               ("revoked", child.grant_id)]
    assert first.cursor > start and all(e.seq == first.cursor for e in first.entries)

    gx.tokens.revoke(lone.token_id)
    gx.agents.suspend(sleepy_agent)
    second = feed.delta(gx.ledger, gx.developer_id, first.cursor)
    assert [(e.action, e.jti or e.grant_id) for e in second.entries] == [
        ("token_revoked", lone.token_id), ("suspended", sleepy.grant_id)]
    assert second.entries[0].seq < second.entries[1].seq == second.cursor

    gx.agents.reactivate(sleepy_agent)
    third = feed.delta(gx.ledger, gx.developer_id, second.cursor)
    assert [(e.action, e.grant_id) for e in third.entries] == [("resumed", sleepy.grant_id)]

    # the whole history replayed from the start gives what the snapshot says now
    replayed: dict[str, str] = {}
    for e in feed.delta(gx.ledger, gx.developer_id, start).entries:
        key = e.jti if e.action == "token_revoked" and e.jti else e.grant_id
        if e.action == "resumed":
            replayed.pop(key, None)
        else:
            replayed[key] = e.action
    assert replayed == keyed(feed.snapshot(gx.ledger, gx.developer_id).entries)


def test_delta_never_resumes_a_grant_revoked_since(gx: Grantex) -> None:
    token = grant_for(gx, SCOPES)
    agent = gx.grants.get(token.grant_id).agent_id
    start = feed.snapshot(gx.ledger, gx.developer_id).cursor
    gx.agents.suspend(agent)
    gx.agents.reactivate(agent)  # lists the grant: it was live
    gx.grants.revoke(token.grant_id)
    actions = [e.action for e in feed.delta(gx.ledger, gx.developer_id, start).entries]
    assert actions == ["revoked", "revoked", "revoked"]  # suspended, resumed, revoked: all as revoked now


def test_delta_cursor_passes_events_of_other_types(gx: Grantex) -> None:
    start = feed.snapshot(gx.ledger, gx.developer_id).cursor
    gx.agents.register(name="noise", scopes=SCOPES)
    found = feed.delta(gx.ledger, gx.developer_id, start)
    assert found.entries == [] and found.cursor == events.last_seq(gx.ledger, gx.developer_id) > start


def test_delta_of_a_deleted_agent_revokes_its_live_grants(gx: Grantex) -> None:
    token = grant_for(gx, SCOPES)
    agent = gx.grants.get(token.grant_id).agent_id
    start = feed.snapshot(gx.ledger, gx.developer_id).cursor
    gx.agents.delete(agent)
    assert [(e.action, e.grant_id) for e in feed.delta(gx.ledger, gx.developer_id, start).entries] == [
        ("revoked", token.grant_id)]
    assert keyed(feed.snapshot(gx.ledger, gx.developer_id).entries) == {token.grant_id: "revoked"}


@pytest.mark.parametrize("since", [-1, "-1", "abc", "1.5", "", True, "١٢"])
def test_delta_refuses_a_bad_cursor(gx: Grantex, since: Any) -> None:
    with pytest.raises(errors.InvalidInput):
        feed.delta(gx.ledger, gx.developer_id, since)


# ── HTTP ───────────────────────────────────────────────────────────────────


class Served:
    def __init__(self, server: RunningServer, path: Path, key: str) -> None:
        self.server, self.path, self.key = server, path, key
        self.http = httpx.Client(base_url=server.base_url, timeout=15,
                                 headers={"Authorization": f"Bearer {key}", "Accept": "application/json"})

    def sdk(self, **options: Any) -> grantex.Grantex:
        client = grantex.Grantex(api_key=self.key, base_url=self.server.base_url, max_retries=0,
                                 revocation_check="feed", **options)
        client.load_manifest(ToolManifest("calendar", {"list_events": Permission.READ}))
        return client


@pytest.fixture
def served(tmp_path: Path) -> Iterator[Served]:
    path = tmp_path / "grantex.db"
    with Ledger(path) as ledger:
        key = developers.create_api_key(ledger, developers.default_developer(ledger).id, "feed").key
    clear_jwks_cache()
    with running_server(path) as server:
        s = Served(server, path, key)
        try:
            yield s
        finally:
            s.http.close()


def test_http_snapshot_pages_and_status_route_still_answers(served: Served) -> None:
    with Grantex(served.path) as gx:
        tokens = [grant_for(gx, SCOPES, agent_name=f"a{i}") for i in range(3)]
        for t in tokens:
            gx.grants.revoke(t.grant_id)
    first = served.http.get("/v1/revocations", params={"pageSize": 2})
    assert first.status_code == 200, first.text
    body = first.json()
    assert len(body["entries"]) == 2 and body["nextPageToken"] and body["cursor"] > 0
    rest = served.http.get("/v1/revocations",
                           params={"pageToken": body["nextPageToken"], "pageSize": 2}).json()
    assert rest["nextPageToken"] is None and rest["cursor"] == body["cursor"]
    assert {e["grantId"] for e in body["entries"] + rest["entries"]} == {t.grant_id for t in tokens}

    status = served.http.get("/v1/revocations/status", params={"grantId": tokens[0].grant_id})
    assert status.status_code == 200 and status.json()["status"] == "revoked"
    assert served.http.get("/v1/revocations", headers={"Authorization": "Bearer nope"}).status_code == 401


@pytest.mark.parametrize("params", [
    {"since": "-1"}, {"since": "x"}, {"since": "1", "wait": "soon"}, {"since": "1", "wait": "-2"},
    {"since": "1", "wait": "nan"}, {"wait": "2"}, {"pageToken": "garbage"}, {"pageSize": "0"},
    {"since": "1", "pageToken": "abc"},
])
def test_http_bad_parameters_are_400(served: Served, params: dict[str, str]) -> None:
    answer = served.http.get("/v1/revocations", params=params)
    assert answer.status_code == 400, answer.text
    assert answer.json()["code"] == "BAD_REQUEST" and answer.json()["requestId"]


def test_http_stream_refuses_a_bad_cursor(served: Served) -> None:
    answer = served.http.get("/v1/revocations/stream", params={"since": "soon"})
    assert answer.status_code == 400 and answer.json()["code"] == "BAD_REQUEST"


def test_http_long_poll_holds_then_answers_a_revocation_or_nothing(served: Served) -> None:
    with Grantex(served.path) as gx:
        token = grant_for(gx, SCOPES)
    cursor = served.http.get("/v1/revocations").json()["cursor"]

    empty = served.http.get("/v1/revocations", params={"since": cursor, "wait": "1"})
    assert empty.json() == {"entries": [], "cursor": cursor}

    def revoke_soon() -> None:
        time.sleep(0.5)
        with Grantex(served.path) as other:
            other.grants.revoke(token.grant_id)

    threading.Thread(target=revoke_soon).start()
    started = time.monotonic()
    held = served.http.get("/v1/revocations", params={"since": cursor, "wait": "10"}).json()
    assert time.monotonic() - started < 8  # answered on the change, not at the end of the wait
    assert [(e["action"], e["grantId"]) for e in held["entries"]] == [("revoked", token.grant_id)]
    assert held["cursor"] > cursor


def test_http_stream_sends_ready_heartbeats_and_revocations_and_ends_at_shutdown(tmp_path: Path) -> None:
    path = tmp_path / "grantex.db"
    with Ledger(path) as ledger:
        key = developers.create_api_key(ledger, developers.default_developer(ledger).id, "feed").key
    with Grantex(path) as gx:
        token = grant_for(gx, SCOPES)
    seen: list[tuple[str, str]] = []
    ended = threading.Event()
    failure: list[BaseException] = []

    with running_server(path) as server:
        def listen() -> None:
            try:
                with httpx.stream("GET", server.base_url + "/v1/revocations/stream", params={"since": 0},
                                  headers={"Authorization": f"Bearer {key}", "Accept": "application/json"},
                                  timeout=httpx.Timeout(10.0)) as response:
                    assert response.status_code == 200
                    assert response.headers["content-type"].startswith("text/event-stream")
                    event, data = "message", ""
                    for line in response.iter_lines():
                        if line == "":
                            seen.append((event, data))
                            event, data = "message", ""
                        elif line.startswith("event:"):
                            event = line[6:].strip()
                        elif line.startswith("data:"):
                            data += line[5:].strip()
            except BaseException as exc:  # reported to the test below
                failure.append(exc)
            finally:
                ended.set()

        threading.Thread(target=listen, daemon=True).start()
        deadline = time.monotonic() + 5
        while sum(1 for e, _ in seen if e == "heartbeat") < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        with Grantex(path) as other:
            other.grants.revoke(token.grant_id)
        deadline = time.monotonic() + 5
        while not any(e == "revocation" for e, _ in seen) and time.monotonic() < deadline:
            time.sleep(0.05)
        stopping = time.monotonic()
    assert ended.wait(5)
    assert time.monotonic() - stopping < 4.5  # ended with the server, not cancelled at its 5 s timeout
    assert not failure, failure
    names = [e for e, _ in seen]
    assert names[0] == "ready" and names.count("heartbeat") >= 2
    revocations = [d for e, d in seen if e == "revocation"]
    assert len(revocations) == 1 and f'"grantId":"{token.grant_id}"' in revocations[0]
    assert '"action":"revoked"' in revocations[0]


# ── the official SDK, end to end ───────────────────────────────────────────


def wait_for(check: Any, seconds: float) -> float:
    """Seconds until ``check()`` holds; fails after ``seconds``."""
    started = time.monotonic()
    while not check():
        assert time.monotonic() - started < seconds, "not within the bound"
        time.sleep(0.02)
    return time.monotonic() - started


@pytest.mark.parametrize("transport", ["stream", "poll"])
def test_sdk_feed_denies_within_2s_of_a_revocation_by_another_process(served: Served, transport: str) -> None:
    with Grantex(served.path) as gx:
        token = grant_for(gx, SCOPES)
        other = grant_for(gx, SCOPES, agent_name="other")
    client = served.sdk(revocation_feed_transport=transport)
    try:
        allowed = client.enforce(token.grant_token, "calendar", "list_events")
        assert allowed.allowed, allowed.reason
        subprocess.run([*CLI, "--ledger", str(served.path), "grants", "revoke", token.grant_id, "--yes"],
                       check=True, capture_output=True, timeout=30)
        revoked_at = time.monotonic()
        wait_for(lambda: not client.enforce(token.grant_token, "calendar", "list_events").allowed, 2.0)
        assert time.monotonic() - revoked_at < 2.0
        denied = client.enforce(token.grant_token, "calendar", "list_events")
        assert denied.reason_code == "grant_revoked" and denied.sub_reason == RevocationSubReason.REVOKED
        assert client.enforce(other.grant_token, "calendar", "list_events").allowed
        time.sleep(1.2)  # longer than a heartbeat period: the feed stays fresh
        assert client.enforce(other.grant_token, "calendar", "list_events").allowed
        state = client.revocation_feed_state()
        assert state is not None and state.synced and state.unavailable is None and state.cursor > 0
    finally:
        client.stop_revocation_feed()


@pytest.mark.parametrize("transport", ["stream", "poll"])
def test_sdk_feed_denies_a_suspended_agent_and_allows_it_again(served: Served, transport: str) -> None:
    with Grantex(served.path) as gx:
        token = grant_for(gx, SCOPES)
        agent = gx.grants.get(token.grant_id).agent_id
    client = served.sdk(revocation_feed_transport=transport)
    try:
        assert client.enforce(token.grant_token, "calendar", "list_events").allowed
        subprocess.run([*CLI, "--ledger", str(served.path), "agents", "suspend", agent],
                       check=True, capture_output=True, timeout=30, input="y\n", text=True)
        wait_for(lambda: not client.enforce(token.grant_token, "calendar", "list_events").allowed, 2.0)
        denied = client.enforce(token.grant_token, "calendar", "list_events")
        assert denied.reason_code == "grant_revoked" and denied.sub_reason == RevocationSubReason.SUSPENDED
        subprocess.run([*CLI, "--ledger", str(served.path), "agents", "reactivate", agent],
                       check=True, capture_output=True, timeout=30, input="y\n", text=True)
        wait_for(lambda: client.enforce(token.grant_token, "calendar", "list_events").allowed, 2.0)
    finally:
        client.stop_revocation_feed()


def test_sdk_feed_snapshot_knows_what_was_revoked_before_it_started(served: Served) -> None:
    with Grantex(served.path) as gx:
        token = grant_for(gx, SCOPES)
        gx.grants.revoke(token.grant_id)
    client = served.sdk()
    try:
        denied = client.enforce(token.grant_token, "calendar", "list_events")
        assert not denied.allowed and denied.sub_reason == RevocationSubReason.REVOKED
    finally:
        client.stop_revocation_feed()
