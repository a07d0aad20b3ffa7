"""Concurrency acceptance (issue 18): 16 clients exchange codes at one moment, 4 with one code.

Exactly one of the four wins; the other three get the clear refusal (``{message, code,
requestId}``, ``INVALID_CODE``), and their failures do not touch the batch they were in: the 12
other exchanges all succeed, and the ledger holds exactly 13 new grants, each with its token and
its ``grantex.grant.issued`` entry, and not one audit entry more. Several rounds, so the losers
land among winners in whatever batches the ledger gathers. Once over real HTTP against real
``serve`` processes (one worker and two), once through the library with one ``Grantex`` per thread
on one file.
"""

from __future__ import annotations

import http.client
import json
import random
import threading
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from helpers import CLI, server_process

from grantex_local import Grantex, InvalidCode, Ledger, developers

SCOPES = ["calendar:read"]
CLIENTS = 16
SHARING = 4
"""How many of the clients present the same code."""
ROUNDS = 4
BARRIER_SECONDS = 30.0


@dataclass(frozen=True)
class Answer:
    """One client's outcome: 201 with the grant and token, or the refusal's status and body."""

    status: int
    body: dict[str, Any]


@dataclass(frozen=True)
class Snapshot:
    """What the ledger holds, read through the library, for before/after comparisons."""

    grants: dict[str, str | None]
    """grant id -> auth request"""
    tokens: dict[str, str]
    """jti -> grant id"""
    issued: dict[str, list[str]]
    """grant id -> tokenIds of its ``grantex.grant.issued`` entries"""
    requests: dict[str, tuple[str, str | None]]
    """auth request -> (status, grant id)"""
    entries: int
    chain_entries: int


def snapshot(path: Path) -> Snapshot:
    with Grantex(path, create=False) as gx:
        chain = gx.audit.verify()  # raises ChainBroken at the first bad link
        led = gx.ledger
        issued: dict[str, list[str]] = {}
        for row in led.query("SELECT grant_id, json_extract(preimage, '$.metadata.tokenId') "
                             "FROM audit_entries WHERE action = 'grantex.grant.issued'"):
            issued.setdefault(row[0], []).append(row[1])
        total = led.query_one("SELECT count(*) FROM audit_entries")
        return Snapshot(
            grants={r[0]: r[1] for r in led.query("SELECT id, auth_request_id FROM grants")},
            tokens={r[0]: r[1] for r in led.query("SELECT jti, grant_id FROM tokens")},
            issued=issued,
            requests={r[0]: (r[1], r[2])
                      for r in led.query("SELECT id, status, grant_id FROM auth_requests")},
            entries=total[0] if total is not None else -1,
            chain_entries=chain.entries,
        )


def make_codes(path: Path, agent_id: str, round_: int) -> list[tuple[str, str]]:
    """13 fresh (auth request, code) pairs made with the library (sandbox: approved at once)."""
    out = []
    with Grantex(path, create=False) as gx:
        for n in range(CLIENTS - SHARING + 1):
            auth = gx.authorize(agent_id=agent_id, user_id=f"user_r{round_}_{n}", scopes=SCOPES)
            assert auth.code is not None
            out.append((auth.request_id, auth.code))
    return out


def assign(codes: list[tuple[str, str]], rng: random.Random) -> list[tuple[str, str]]:
    """The code each of the 16 clients presents: the first one to four of them, in random seats."""
    seats = [codes[0]] * SHARING + codes[1:]
    rng.shuffle(seats)
    assert len(seats) == CLIENTS
    return seats


def run_together(exchange: Callable[[int, str], Answer], seats: list[tuple[str, str]]) -> list[Answer]:
    """Each client's exchange on its own thread, all released at once by a barrier."""
    barrier = threading.Barrier(CLIENTS, timeout=BARRIER_SECONDS)
    answers: list[Answer | None] = [None] * CLIENTS
    failures: list[BaseException] = []

    def one(i: int) -> None:
        try:
            barrier.wait()
            answers[i] = exchange(i, seats[i][1])
        except BaseException as exc:  # reported by the main thread
            failures.append(exc)

    threads = [threading.Thread(target=one, args=(i,)) for i in range(CLIENTS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert not failures, failures
    assert not any(thread.is_alive() for thread in threads)
    done = [a for a in answers if a is not None]
    assert len(done) == CLIENTS
    return done


def check_round(path: Path, before: Snapshot, seats: list[tuple[str, str]], answers: list[Answer],
                context: str) -> Snapshot:
    """One winner of the shared code, twelve others granted, and the ledger says exactly that."""
    (shared, _), presented = Counter(seats).most_common(1)[0]
    assert presented == SHARING
    on_shared = [a for (request_id, _), a in zip(seats, answers, strict=True) if request_id == shared]
    others = [(request_id, a) for (request_id, _), a in zip(seats, answers, strict=True)
              if request_id != shared]
    winners = [a for a in on_shared if a.status == 201]
    losers = [a for a in on_shared if a.status != 201]
    assert len(winners) == 1, (context, on_shared)
    for loser in losers:
        assert loser.status == 400, (context, loser)
        assert {"message", "code", "requestId"} <= set(loser.body), (context, loser)
        assert loser.body["code"] == "INVALID_CODE", (context, loser)
        assert "already been used" in loser.body["message"], (context, loser)
    assert all(a.status == 201 for _, a in others), (context, [a for _, a in others if a.status != 201])

    after = snapshot(path)
    granted = {request_id: a.body for request_id, a in [(shared, winners[0]), *others]}
    new_grants = set(after.grants) - set(before.grants)
    assert len(new_grants) == CLIENTS - SHARING + 1, (context, len(new_grants))
    assert new_grants == {body["grantId"] for body in granted.values()}, context
    for request_id, body in granted.items():
        grant_id, token_id = body["grantId"], body["tokenId"]
        assert after.grants[grant_id] == request_id, (context, grant_id)
        assert after.requests[request_id] == ("exchanged", grant_id), (context, request_id)
        assert [jti for jti, g in after.tokens.items() if g == grant_id] == [token_id], (context, grant_id)
        assert after.issued.get(grant_id) == [token_id], (context, grant_id)
    # the losers wrote nothing at all: one audit entry per grant, no more
    assert after.entries - before.entries == len(new_grants), (context, after.entries - before.entries)
    assert after.chain_entries == after.entries, context
    return after


# ── over HTTP ───────────────────────────────────────────────────────────────


class Connections:
    """One keep-alive connection per client, opened (and used once) before the rounds."""

    def __init__(self, base_url: str, key: str) -> None:
        parts = urlsplit(base_url)
        assert parts.hostname == "127.0.0.1" and parts.port is not None, base_url  # loopback only
        self.conns = [http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
                      for _ in range(CLIENTS)]
        self.headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
        for conn in self.conns:
            conn.request("GET", "/health")
            conn.getresponse().read()

    def exchanger(self, agent_id: str) -> Callable[[int, str], Answer]:
        def exchange(i: int, code: str) -> Answer:
            conn = self.conns[i]
            body = json.dumps({"code": code, "agentId": agent_id}).encode()
            conn.request("POST", "/v1/token", body=body, headers=self.headers)
            answer = conn.getresponse()
            return Answer(answer.status, json.loads(answer.read()))
        return exchange

    def close(self) -> None:
        for conn in self.conns:
            conn.close()


@pytest.mark.parametrize("workers", [1, 2])
def test_sixteen_clients_over_http_four_with_one_code(tmp_path: Path, workers: int) -> None:
    path = tmp_path / "grantex.db"
    with Grantex(path) as gx:
        agent = gx.agents.register(name="racer", scopes=SCOPES).id
    with Ledger(path) as led:
        key = developers.create_api_key(led, developers.default_developer(led).id).key
    seed = random.randrange(1 << 30)
    rng = random.Random(seed)
    with server_process(path, "--workers", str(workers), "--rate-limit", "1000000",
                        command=CLI) as server:
        connections = Connections(server.base_url, key)
        try:
            state = snapshot(path)
            for round_ in range(ROUNDS):
                seats = assign(make_codes(path, agent, round_), rng)
                before = snapshot(path)
                answers = run_together(connections.exchanger(agent), seats)
                state = check_round(path, before, seats, answers,
                                    f"seed {seed}, {workers} worker(s), round {round_}")
        finally:
            connections.close()
    assert len(state.grants) == ROUNDS * (CLIENTS - SHARING + 1)


# ── through the library ─────────────────────────────────────────────────────


def test_sixteen_threads_with_a_ledger_each_four_with_one_code(tmp_path: Path) -> None:
    path = tmp_path / "grantex.db"
    with Grantex(path) as gx:
        agent = gx.agents.register(name="racer", scopes=SCOPES).id
    seed = random.randrange(1 << 30)
    rng = random.Random(seed)
    clients = [Grantex(path, create=False) for _ in range(CLIENTS)]  # one Ledger per thread

    def exchange(i: int, code: str) -> Answer:
        try:
            issued = clients[i].tokens.exchange(code=code, agent_id=agent)
        except InvalidCode as exc:
            return Answer(exc.status, {"message": exc.message, "code": exc.code, "requestId": ""})
        return Answer(201, issued.to_dict())

    try:
        for round_ in range(ROUNDS):
            seats = assign(make_codes(path, agent, round_), rng)
            before = snapshot(path)
            answers = run_together(exchange, seats)
            check_round(path, before, seats, answers, f"seed {seed}, library, round {round_}")
    finally:
        for client in clients:
            client.close()
