"""Crash acceptance (issue 18): SIGKILL a loaded ``serve``, or one of four writer processes.

The promise under test is the one group commit must keep: a caller is answered only once its own
write is durable, and a caller whose write failed left nothing. So after the kill, every request
answered 2xx is in the file (by id, or by a unique marker in its metadata), the audit chain
verifies, nothing answered with a failure is anywhere in the file, and every multi-row write
(grant + token + ``grantex.grant.issued`` entry; an audit batch) is whole or absent. Requests whose
connection broke (no answer) may have landed or not; they are only counted.

The server is started in a session of its own and killed with ``os.killpg``: with ``--workers``
each forked worker sits in its own process group and would only get a graceful SIGTERM from the
kernel when its parent dies, so the workers are SIGKILLed by their own groups too.
"""

from __future__ import annotations

import http.client
import json
import os
import queue
import random
import select
import signal
import sqlite3
import subprocess
import sys
import textwrap
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from grantex_local import Grantex, Ledger, developers
from grantex_local.server.run import WORKER_HEADER_ENV

SCOPES = ["calendar:read"]
CLIENTS = 16
STEPS_PER_CLIENT = 150
"""Each client's bound in count; the run's bound in time is :data:`LOAD_SECONDS`."""
LOAD_SECONDS = 12.0
KILL_AFTER = (250, 500)
"""The server is killed once this many requests were answered (picked at random per run)."""
SERVE = [sys.executable, "-c", "from grantex_local.cli import main; main()", "serve", "--quiet"]


# ── what the file holds afterwards ──────────────────────────────────────────


@dataclass
class Contents:
    """The ledger after the crash, read through the library (which also recovers the WAL)."""

    entries: int
    chain_entries: int
    grants: dict[str, str | None]
    """grant id -> the auth request it was exchanged from"""
    tokens: dict[str, str]
    """jti -> grant id"""
    issued: list[tuple[str, str]]
    """(grant id, tokenId) of every ``grantex.grant.issued`` entry"""
    requests: dict[str, tuple[str, str | None]]
    """auth request id -> (status, grant id)"""
    markers: Counter[str]
    marker_entries: dict[str, str]
    batches: Counter[str]
    """batch id -> entries of an audit batch (``log_many``) carrying it"""
    batch_entries: Counter[str]
    """grant id -> entries of audit batches under it"""
    principals: dict[str, str]
    """auth request id -> principal"""
    text: str
    """Every row of every table, for "this marker is nowhere" checks."""


def read_contents(path: Path) -> Contents:
    with Grantex(path, create=False) as gx:
        chain = gx.audit.verify()  # raises ChainBroken at the first bad link
        led = gx.ledger
        total = led.query_one("SELECT count(*) FROM audit_entries")
        marked = led.query("SELECT json_extract(preimage, '$.metadata.marker'), id FROM audit_entries "
                           "WHERE json_extract(preimage, '$.metadata.marker') IS NOT NULL")
        batched = led.query("SELECT json_extract(preimage, '$.metadata.batch'), grant_id FROM audit_entries "
                            "WHERE json_extract(preimage, '$.metadata.batch') IS NOT NULL")
        contents = Contents(
            entries=total[0] if total is not None else -1,
            chain_entries=chain.entries,
            grants={r["id"]: r["auth_request_id"]
                    for r in led.query("SELECT id, auth_request_id FROM grants")},
            tokens={r["jti"]: r["grant_id"] for r in led.query("SELECT jti, grant_id FROM tokens")},
            issued=[(r[0], r[1]) for r in led.query(
                "SELECT grant_id, json_extract(preimage, '$.metadata.tokenId') FROM audit_entries "
                "WHERE action = 'grantex.grant.issued'")],
            requests={r["id"]: (r["status"], r["grant_id"])
                      for r in led.query("SELECT id, status, grant_id FROM auth_requests")},
            markers=Counter(r[0] for r in marked),
            marker_entries={r[0]: r[1] for r in marked},
            batches=Counter(r[0] for r in batched),
            batch_entries=Counter(r[1] for r in batched),
            principals={r["id"]: r["principal_id"]
                        for r in led.query("SELECT id, principal_id FROM auth_requests")},
            text="",
        )
    conn = sqlite3.connect(path)
    try:
        contents.text = "\n".join(conn.iterdump())
    finally:
        conn.close()
    return contents


def assert_every_grant_is_whole(found: Contents) -> None:
    """A grant, its token, its ``grantex.grant.issued`` entry and its code's consumption are one
    transaction: after any crash they are all there or none is."""
    tokens_per_grant = Counter(found.tokens.values())
    issued_per_grant = Counter(grant for grant, _ in found.issued)
    for grant_id, request_id in found.grants.items():
        assert tokens_per_grant[grant_id] == 1, (grant_id, "tokens", tokens_per_grant[grant_id])
        assert issued_per_grant[grant_id] == 1, (grant_id, "issued entries", issued_per_grant[grant_id])
        assert request_id is not None and found.requests[request_id] == ("exchanged", grant_id), grant_id
    for grant_id, token_id in found.issued:
        assert found.tokens.get(token_id) == grant_id, f"issued entry of {grant_id} names a missing token"
    assert set(found.tokens.values()) <= set(found.grants)
    per_request = Counter(found.grants.values())
    assert all(n == 1 for n in per_request.values()), "a code produced two grants"
    exchanged = {rid for rid, (status, _) in found.requests.items() if status == "exchanged"}
    assert exchanged == set(per_request), "a code is marked exchanged without its grant, or the reverse"


# ── a server that can be killed with its workers ────────────────────────────


@dataclass
class KillableServer:
    proc: subprocess.Popen[str]
    host: str
    port: int
    output: queue.Queue[str]

    def workers(self) -> set[int]:
        """The forked workers, from /proc (Linux); elsewhere the pids seen in answers serve."""
        found: set[int] = set()
        proc_dir = Path("/proc")
        if not proc_dir.is_dir():
            return found
        for entry in proc_dir.iterdir():
            if not entry.name.isdigit():
                continue
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            fields = stat.rsplit(")", 1)[1].split()
            if int(fields[1]) == self.proc.pid:
                found.add(int(entry.name))
        return found

    def kill_all(self, known: set[int] | None = None) -> set[int]:
        """SIGKILL every worker's process group, then the server's own; the pids killed.

        ``known``: the workers found before (a scan of /proc now would widen the gap between
        deciding to kill and the kill), and the pids seen in answers; None: scan now."""
        pids = self.workers() if known is None else known
        for pid in pids:
            _killpg(pid)
        _killpg(self.proc.pid)
        return pids | {self.proc.pid}


def _killpg(pid: int) -> None:
    try:
        os.killpg(pid, signal.SIGKILL)
    except ProcessLookupError:
        try:  # not a group leader (setpgid can fail): the process alone
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def dead(pid: int) -> bool:
    """Gone, or a zombie waiting for its reaper (it holds no file or lock any more)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return True
    except OSError:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        return False
    return stat.rsplit(")", 1)[1].split()[0] in ("Z", "X")


@contextmanager
def killable_server(ledger: Path, workers: int) -> Iterator[KillableServer]:
    """``grantex-local serve`` in a session of its own (so ``killpg`` reaches it and nothing
    else), answers tagged with the answering worker's pid."""
    env = {**os.environ, WORKER_HEADER_ENV: "1"}
    proc = subprocess.Popen(
        [*SERVE, "--ledger", str(ledger), "--port", "0", "--workers", str(workers),
         "--rate-limit", "1000000"],
        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        env=env, start_new_session=True)
    lines: queue.Queue[str] = queue.Queue()
    assert proc.stdout is not None
    stdout = proc.stdout
    threading.Thread(target=lambda: [lines.put(line.rstrip("\n")) for line in stdout], daemon=True).start()
    server: KillableServer | None = None
    try:
        banner: list[str] = []
        deadline = time.monotonic() + 30
        while not banner or not banner[-1].startswith("Press Ctrl+C"):
            assert time.monotonic() < deadline and proc.poll() is None, banner
            try:
                banner.append(lines.get(timeout=0.5))
            except queue.Empty:
                continue
        base = next(line for line in banner if line.startswith("grantex-local server on")).split(" on ", 1)[1]
        host, port = base.removeprefix("http://").rsplit(":", 1)
        assert host == "127.0.0.1", base  # loopback only
        server = KillableServer(proc, host, int(port), lines)
        for _ in range(200):  # the banner precedes uvicorn's startup by a moment
            try:
                probe = http.client.HTTPConnection(host, int(port), timeout=2)
                probe.request("GET", "/health")
                probe.getresponse().read()
                probe.close()
                break
            except OSError:
                time.sleep(0.05)
        yield server
    finally:
        if server is not None:
            server.kill_all()
        elif proc.poll() is None:
            _killpg(proc.pid)
        proc.wait(10)


# ── the load: 16 keep-alive clients ─────────────────────────────────────────


class Unanswered(Exception):
    """The connection broke before a whole answer arrived."""


@dataclass
class Tally:
    """What the clients were answered, shared between their threads."""

    kill_after: int
    lock: threading.Lock = field(default_factory=threading.Lock)
    enough: threading.Event = field(default_factory=threading.Event)
    answered: int = 0
    authorized: list[str] = field(default_factory=list)
    granted: list[tuple[str, str, str]] = field(default_factory=list)
    """(auth request, grant, token) of each exchange answered 201"""
    logged: dict[str, str] = field(default_factory=dict)
    """marker -> entry id of each audit log answered 201"""
    refused_markers: list[str] = field(default_factory=list)
    refused_reuse: list[str] = field(default_factory=list)
    """auth requests whose second exchange was answered with a refusal"""
    refused_wrong_agent: list[str] = field(default_factory=list)
    unanswered: int = 0
    unexpected: list[str] = field(default_factory=list)
    pids: set[int] = field(default_factory=set)

    def count(self, pid: str | None) -> None:
        with self.lock:
            self.answered += 1
            if pid:
                self.pids.add(int(pid))
            if self.answered >= self.kill_after:
                self.enough.set()


class Client:
    """One keep-alive connection; an answer counts only once its body was read whole."""

    def __init__(self, host: str, port: int, key: str, tally: Tally) -> None:
        self.conn = http.client.HTTPConnection(host, port, timeout=20)
        self.headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
        self.tally = tally

    def post(self, path: str, payload: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        try:
            self.conn.request("POST", path, body=json.dumps(payload).encode(), headers=self.headers)
            answer = self.conn.getresponse()
            data = answer.read()
            body = json.loads(data)
        except (OSError, http.client.HTTPException, ValueError) as exc:
            raise Unanswered(str(exc)) from None
        self.tally.count(answer.getheader("x-grantex-worker"))
        return answer.status, body

    def refused(self, status: int, body: dict[str, Any], wanted: int, what: str) -> bool:
        """Whether the answer is the clear refusal expected (else it is recorded as unexpected)."""
        if status == wanted and {"message", "code", "requestId"} <= set(body):
            return True
        with self.tally.lock:
            self.tally.unexpected.append(f"{what}: {status} {body}")
        return False

    def close(self) -> None:
        self.conn.close()


BadLog = Callable[[str, str, str, str], tuple[dict[str, Any], int]]
"""(agent, other agent, grant, marker) -> (body, the status it must get)"""

BAD_LOGS: list[BadLog] = [
    lambda agent, other, grant, marker: (  # a grant that does not exist
        {"agentId": agent, "grantId": "grnt_01J0000000000000000000000Z", "action": "crash.step",
         "metadata": {"marker": marker}}, 404),
    lambda agent, other, grant, marker: (  # an action reserved for the ledger
        {"agentId": agent, "grantId": grant, "action": "grantex.grant.issued",
         "metadata": {"marker": marker}}, 400),
    lambda agent, other, grant, marker: (  # an invalid body: no action
        {"agentId": agent, "grantId": grant, "metadata": {"marker": marker}}, 400),
    lambda agent, other, grant, marker: (  # another agent's grant
        {"agentId": other, "grantId": grant, "action": "crash.step", "metadata": {"marker": marker}}, 400),
    lambda agent, other, grant, marker: (  # a status that is not one
        {"agentId": agent, "grantId": grant, "action": "crash.step", "status": "maybe",
         "metadata": {"marker": marker}}, 400),
]


def run_client(client: Client, index: int, agent: str, other: str, seed: int, until: float) -> None:
    """Authorize, exchange, log; now and then a request that must fail. Until the connection
    breaks (the kill), the step bound or the time bound."""
    tally, rng = client.tally, random.Random(seed)
    try:
        for step in range(STEPS_PER_CLIENT):
            if time.monotonic() > until:
                return
            status, auth = client.post("/v1/authorize", {"agentId": agent, "scopes": SCOPES,
                                                          "principalId": f"user_{index}_{step}"})
            if status != 201:
                client.refused(status, auth, 201, "authorize")  # recorded; the load goes on
                continue
            with tally.lock:
                tally.authorized.append(auth["authRequestId"])
            if rng.random() < 0.15:  # a code presented by the wrong agent: refused inside the write
                status, body = client.post("/v1/token", {"code": auth["code"], "agentId": other})
                if client.refused(status, body, 400, "wrong agent"):
                    with tally.lock:
                        tally.refused_wrong_agent.append(auth["authRequestId"])
                continue
            status, issued = client.post("/v1/token", {"code": auth["code"], "agentId": agent})
            if status != 201:
                client.refused(status, issued, 201, "exchange")
                continue
            with tally.lock:
                tally.granted.append((auth["authRequestId"], issued["grantId"], issued["tokenId"]))
            if rng.random() < 0.25:  # the same code again
                status, body = client.post("/v1/token", {"code": auth["code"], "agentId": agent})
                if client.refused(status, body, 400, "reuse") and body["code"] == "INVALID_CODE":
                    with tally.lock:
                        tally.refused_reuse.append(auth["authRequestId"])
            marker = uuid.uuid4().hex
            status, entry = client.post("/v1/audit/log", {
                "agentId": agent, "grantId": issued["grantId"], "action": "crash.step",
                "metadata": {"marker": marker}})
            if status != 201:
                client.refused(status, entry, 201, "audit log")
                continue
            with tally.lock:
                tally.logged[marker] = entry["id"]
            if rng.random() < 0.35:
                bad_marker = uuid.uuid4().hex
                body, wanted = rng.choice(BAD_LOGS)(agent, other, issued["grantId"], bad_marker)
                status, answer = client.post("/v1/audit/log", body)
                if client.refused(status, answer, wanted, f"bad log {body}"):
                    with tally.lock:
                        tally.refused_markers.append(bad_marker)
    except Unanswered:
        with tally.lock:
            tally.unanswered += 1
    finally:
        client.close()


def prepared_ledger(path: Path) -> tuple[str, str, str]:
    """(API key of the sandbox developer, an agent, another agent)."""
    with Grantex(path) as gx:
        agent = gx.agents.register(name="crash-agent", scopes=SCOPES)
        other = gx.agents.register(name="bystander-agent", scopes=SCOPES)
    with Ledger(path) as led:
        key = developers.create_api_key(led, developers.default_developer(led).id).key
    return key, agent.id, other.id


@pytest.mark.parametrize("workers", [1, 2])
def test_a_sigkilled_server_kept_every_answered_write_and_no_refused_one(tmp_path: Path,
                                                                        workers: int) -> None:
    path = tmp_path / "grantex.db"
    key, agent, other = prepared_ledger(path)
    seed = random.randrange(1 << 30)
    rng = random.Random(seed)
    tally = Tally(kill_after=rng.randint(*KILL_AFTER))
    with killable_server(path, workers) as server:
        forked = server.workers() if workers > 1 else set()
        if workers > 1:
            assert len(forked) == workers, forked
        until = time.monotonic() + LOAD_SECONDS
        threads = [threading.Thread(target=run_client, args=(
            Client(server.host, server.port, key, tally), i, agent, other, rng.randrange(1 << 30), until))
            for i in range(CLIENTS)]
        for thread in threads:
            thread.start()
        tally.enough.wait(LOAD_SECONDS)
        with tally.lock:
            at_kill, seen = tally.answered, set(tally.pids)
        killed = server.kill_all(forked | seen)
        assert seen <= forked, (seen, forked)  # every answering worker was one of those killed
        for thread in threads:
            thread.join(30)
        assert not any(thread.is_alive() for thread in threads)
        assert server.proc.wait(10) == -signal.SIGKILL
        deadline = time.monotonic() + 20
        while not all(dead(pid) for pid in killed) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert all(dead(pid) for pid in killed), "a server process outlived the kill"
        context = (f"seed {seed}, {workers} worker(s), killed after {at_kill} answers "
                   f"({tally.answered} in all, {tally.unanswered} unanswered)")

        found = read_contents(path)
        assert not tally.unexpected, (context, tally.unexpected[:5])
        assert found.chain_entries == found.entries, context
        assert_every_grant_is_whole(found)
        # every request answered 2xx is there
        for request_id in tally.authorized:
            assert request_id in found.requests, (context, request_id)
        for request_id, grant_id, token_id in tally.granted:
            assert found.grants.get(grant_id) == request_id, (context, grant_id)
            assert found.tokens.get(token_id) == grant_id, (context, token_id)
        for marker, entry_id in tally.logged.items():
            assert found.markers[marker] == 1 and found.marker_entries[marker] == entry_id, (context, marker)
        # and no request answered with a failure left anything
        for marker in tally.refused_markers:
            assert marker not in found.text, (context, marker)
        answered_grants = {request_id: grant_id for request_id, grant_id, _ in tally.granted}
        requests_of_grants = Counter(found.grants.values())
        for request_id in tally.refused_reuse:
            assert requests_of_grants[request_id] == 1, (context, request_id)
            assert found.requests[request_id] == ("exchanged", answered_grants[request_id]), context
        for request_id in tally.refused_wrong_agent:
            assert requests_of_grants[request_id] == 0, (context, request_id)
            assert found.requests[request_id] == ("approved", None), (context, request_id)
        # the load was real: every kind of answer happened before the kill
        assert tally.granted and tally.logged and tally.refused_markers, context
        assert tally.refused_reuse and tally.refused_wrong_agent, context
    print(f"\n{context}: {len(tally.granted)} grants, {len(tally.logged)} logs and "
          f"{len(tally.refused_markers) + len(tally.refused_reuse) + len(tally.refused_wrong_agent)} "
          f"refusals answered; {len(found.grants)} grants and {found.entries} entries in the file")


# ── four writer processes, one of them killed ───────────────────────────────

WRITERS = 4
WRITES = 45
"""Steps per writer at least (the others go on until the victim is killed, at most ten times as
many): authorize, exchange, a 3-entry audit batch, then a reuse of the code (refused)."""

WRITER = textwrap.dedent("""
    import json, os, sys, time, uuid
    from grantex_local import Grantex, InvalidCode
    path, agent_id, ready_dir, me, steps, writers = sys.argv[1:7]
    me, steps, writers = int(me), int(steps), int(writers)
    gx = Grantex(path, create=False)
    open(os.path.join(ready_dir, str(me)), "w").close()
    deadline = time.monotonic() + 60
    while len(os.listdir(ready_dir)) < writers and time.monotonic() < deadline:   # start together
        time.sleep(0.001)

    def done(**line):
        sys.stdout.write(json.dumps(line) + "\\n")
        sys.stdout.flush()

    stop = ready_dir.rstrip(os.sep) + "-stop"  # the test makes it once the victim is killed
    i = 0
    while i < steps or (not os.path.exists(stop) and i < 10 * steps):
        auth = gx.authorize(agent_id=agent_id, user_id=f"user_w{me}_{i}", scopes=["calendar:read"])
        done(write="authorize", request=auth.request_id)
        token = gx.tokens.exchange(code=auth.code, agent_id=agent_id)
        done(write="exchange", request=auth.request_id, grant=token.grant_id, token=token.token_id)
        batch = uuid.uuid4().hex
        entries = gx.audit.log_many([
            {"agent_id": agent_id, "grant_id": token.grant_id, "action": "writer.step",
             "metadata": {"batch": batch, "part": part, "writer": me, "step": i}} for part in range(3)])
        done(write="batch", batch=batch, entries=[e.entry_id for e in entries])
        try:
            gx.tokens.exchange(code=auth.code, agent_id=agent_id)
            done(write="reuse-accepted", request=auth.request_id)
        except InvalidCode:
            done(write="reuse-refused", request=auth.request_id)
        i += 1
""")


def _read_lines(stream: Any, wanted: int, deadline: float) -> bytes:
    """Read a pipe until ``wanted`` complete lines, the end or the deadline."""
    fd = stream.fileno()
    data = b""
    while data.count(b"\n") < wanted and time.monotonic() < deadline:
        ready, _, _ = select.select([fd], [], [], max(0.0, deadline - time.monotonic()))
        if not ready:
            break
        chunk = os.read(fd, 65536)
        if not chunk:
            break
        data += chunk
    return data


def _lines(text: str) -> list[dict[str, Any]]:
    """The complete lines a writer printed (a line cut by the kill is dropped)."""
    return [json.loads(line) for line in text.split("\n")[:-1] if line]


def test_one_of_four_writers_sigkilled_leaves_no_partial_write(tmp_path: Path) -> None:
    path = tmp_path / "grantex.db"
    with Grantex(path) as gx:
        agent = gx.agents.register(name="writer-agent", scopes=SCOPES).id
    seed = random.randrange(1 << 30)
    rng = random.Random(seed)
    victim = rng.randrange(WRITERS)
    kill_after = rng.randint(6, 30)  # lines: at most a sixth of the victim's run
    ready = tmp_path / "ready"
    ready.mkdir()
    procs: list[subprocess.Popen[bytes]] = []
    outputs = [tmp_path / f"writer-{w}.out" for w in range(WRITERS)]
    errors_ = [tmp_path / f"writer-{w}.err" for w in range(WRITERS)]
    try:
        for w in range(WRITERS):
            with errors_[w].open("wb") as err, outputs[w].open("wb") as out:
                procs.append(subprocess.Popen(
                    [sys.executable, "-c", WRITER, str(path), agent, str(ready), str(w), str(WRITES),
                     str(WRITERS)], stdout=subprocess.PIPE if w == victim else out, stderr=err))
        stdout = procs[victim].stdout
        assert stdout is not None
        printed = _read_lines(stdout, kill_after, time.monotonic() + 60)
        assert procs[victim].poll() is None, f"the victim ended on its own: {errors_[victim].read_text()}"
        others_running = sum(p.poll() is None for w, p in enumerate(procs) if w != victim)
        procs[victim].kill()
        (tmp_path / "ready-stop").touch()  # the others write on until the kill (a starved victim
        # would otherwise be killed after they all ended: no concurrency left to test)
        printed += stdout.read()
        stdout.close()
        assert procs[victim].wait(30) == -signal.SIGKILL
        for w, proc in enumerate(procs):
            if w != victim:
                assert proc.wait(120) == 0, errors_[w].read_text()
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait(10)
    context = (f"seed {seed}: writer {victim} killed after {kill_after}+ lines, "
               f"{others_running} others running")
    assert others_running >= 1, context  # the kill happened while the others were writing

    found = read_contents(path)
    assert found.chain_entries == found.entries, context
    assert_every_grant_is_whole(found)
    lines = {w: _lines(outputs[w].read_text()) for w in range(WRITERS) if w != victim}
    lines[victim] = _lines(printed.decode())
    requests_of_grants = Counter(found.grants.values())
    for w, written in lines.items():
        by_kind = Counter(line["write"] for line in written)
        assert by_kind["reuse-accepted"] == 0, (context, w)
        if w != victim:  # the others finished every step they began, WRITES at least
            steps = by_kind["authorize"]
            assert steps >= WRITES and by_kind == {"authorize": steps, "exchange": steps, "batch": steps,
                                                   "reuse-refused": steps}, (context, w, by_kind)
        for line in written:  # every write a writer printed as done is in the ledger
            if line["write"] == "authorize":
                assert line["request"] in found.requests, (context, line)
            elif line["write"] == "exchange":
                assert found.grants.get(line["grant"]) == line["request"], (context, line)
                assert found.tokens.get(line["token"]) == line["grant"], (context, line)
            elif line["write"] == "batch":
                assert found.batches[line["batch"]] == 3, (context, line)
                assert all(entry_id in found.text for entry_id in line["entries"]), (context, line)
            else:
                assert requests_of_grants[line["request"]] == 1, (context, line)
    # the killed writer left no partial write: each step's writes are whole or absent, and at most
    # the one write it was in when killed is in the file without having been printed
    assert all(n == 3 for n in found.batches.values()), context
    for w, written in lines.items():
        mine = [rid for rid, principal in found.principals.items() if principal.startswith(f"user_w{w}_")]
        grants = [grant for rid in mine if (grant := found.requests[rid][1]) is not None]
        batches = sum(1 for grant in grants if found.batch_entries[grant])
        kinds = Counter(line["write"] for line in written)
        if w == victim:
            assert kinds["authorize"] <= len(mine) <= kinds["authorize"] + 1, (context, kinds, len(mine))
            assert kinds["exchange"] <= len(grants) <= kinds["exchange"] + 1, (context, kinds, len(grants))
            assert kinds["batch"] <= batches <= kinds["batch"] + 1, (context, kinds, batches)
        else:
            assert len(mine) == len(grants) == batches == kinds["authorize"] >= WRITES, (context, w)
    print(f"\n{context}: the victim printed {dict(Counter(line['write'] for line in lines[victim]))}; "
          f"{len(found.grants)} grants and {found.entries} entries in the file")
