"""``python -m bench.load``: many concurrent keep-alive clients against ``serve --workers 1|2`` (issue 18).

What it measures, for each ``--workers`` value, operation and client count C: C keep-alive
HTTP/1.1 connections on loopback, each sending its next request as soon as its previous answer
is read (a closed loop: C requests in flight at any moment), for ``--seconds`` or ``--requests``
requests, whichever ends first. The operations are what a team's agents do all day:

- ``verify``: ``POST /v1/tokens/verify`` of a valid token (one token per connection, so the
  server's signature cache sees as many tokens as there are clients, as it would);
- ``exchange``: ``POST /v1/token`` with a fresh code per request. Codes come from
  ``POST /v1/authorize`` (the default developer is a sandbox one, so it answers a code at once)
  and are all made before the timed phase, which therefore measures the exchange alone;
- ``audit log``: ``POST /v1/audit/log`` (a hashed, committed append).

Why the client is built the way it is: Python threads in one client process would share one
GIL on a 2-core machine also running the server, and the figure would be the client's. So the
connections are split over up to ``--client-procs`` processes, each driving its share with one
``selectors`` loop over raw sockets (requests serialised in advance, responses framed by
``content-length``): a request costs the client tens of microseconds, against the server's
milliseconds. What bounds each figure is measured beside it: the cores the client processes
used (``time.process_time`` in each), the cores the server's processes used and its CPU time
per answered request with the kernel's share (``/proc/<pid>/stat``), and the cores every other
process on the machine used meanwhile (``/proc/stat``). A server using about one core per
worker is CPU-bound; one using less while clients wait is waiting (the write lock, an fsync);
client + server + others near the core count means the machine bounded the figure.

Both servers run at once, each on a ledger of its own and idle unless measured, and the cells
are interleaved, so a slow moment on a shared machine hits ``--workers 1`` and ``--workers 2``
alike. The servers are started with ``GRANTEX_LOCAL_WORKER_HEADER=1``: with several workers
each answer names the process that gave it, which is how the table shows how the kernel spread
the connections over the workers (they share one listening socket, so the spread is the
kernel's, and a skewed one bounds ``--workers 2``). With one worker the header is not added;
with two it costs one small ASGI wrapper per answer: a slight handicap, never a gift.

The floors for the issue's targets are measured in the same run, in this process family:

- raw RSA-2048 signing of a real token's signing input (same claims size) on 2 threads, both as a
  bare ``private_key.sign`` (PKCS#1 v1.5 / SHA-256: the floor, since it is the least any RS256
  issuer must do) and through ``jwt.encode`` (reported beside it), for "exchange with 16 clients
  >= 0.60 of raw RSA signing on 2 threads";
- the single-client audit log rate and p99, for "audit log with 16 clients >= 5x the
  single-client rate, p99 <= 3x the single-client p99";
- verify with 16 clients and ``--workers 1``, for "verify with ``--workers 2`` >= 1.6x".

Every loop is bounded in count and in time, and everything stays on 127.0.0.1.
"""

from __future__ import annotations

import argparse
import array
import http.client
import json
import math
import multiprocessing
import multiprocessing.synchronize
import os
import platform
import queue
import selectors
import signal
import socket
import sqlite3
import statistics
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from .common import Row, print_table

HOST = "127.0.0.1"
OPS = ("verify", "exchange", "audit log")
SCOPES = ["calendar:read", "email:read", "payments:initiate:max_500"]
WARMUP_PER_CONNECTION = 2  # /health round trips on each connection before the timed phase
STALL_SECONDS = 30.0  # no answer on any connection for this long: the cell is abandoned
START_SECONDS = 60.0  # server start-up, connecting and warming up, each at most this
TARGET_CLIENTS = 16


# ── the client: one selectors loop over raw keep-alive sockets ─────────────────


def http_request(port: int, key: str, path: str, body: dict[str, Any] | None = None) -> bytes:
    """One serialised HTTP/1.1 request, made before the timed phase so it costs the loop nothing."""
    payload = json.dumps(body, separators=(",", ":")).encode() if body is not None else b""
    method = "POST" if body is not None else "GET"
    head = (f"{method} {path} HTTP/1.1\r\nHost: {HOST}:{port}\r\nAuthorization: Bearer {key}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(payload)}\r\n\r\n")
    return head.encode() + payload


@dataclass
class _Connection:
    sock: socket.socket
    plan: Sequence[bytes]
    sent: int = 0
    sent_at: float = 0.0
    buffer: bytearray = field(default_factory=bytearray)
    body_at: int = -1  # where the body of the answer being read starts, once its head is read
    ends_at: int = -1
    status: int = 0
    closing: bool = False
    worker: str = ""


@dataclass
class Pass:
    """What one selectors loop over some connections saw."""

    latencies_ms: array.array[float] = field(default_factory=lambda: array.array("d"))
    ok: int = 0
    errors: int = 0
    statuses: Counter[int] = field(default_factory=Counter)
    error_sample: str = ""
    sent: list[int] = field(default_factory=list)
    workers: list[str] = field(default_factory=list)
    bodies: list[bytes] = field(default_factory=list)
    started: float = 0.0
    ended: float = 0.0
    client_cpu: float = 0.0


def _send(conn: _Connection) -> None:
    conn.sent_at = time.monotonic()
    conn.sock.sendall(conn.plan[conn.sent])
    conn.sent += 1


def _read_head(conn: _Connection) -> bool:
    """Frame the answer being read; False when its head is not all here yet."""
    end = conn.buffer.find(b"\r\n\r\n")
    if end < 0:
        return False
    head = bytes(conn.buffer[:end]).lower()
    conn.status = int(head[9:12])
    at = head.find(b"\r\ncontent-length:")
    if at < 0:
        raise ValueError(f"an answer without content-length: {head[:200]!r}")
    stop = head.find(b"\r\n", at + 2)
    conn.body_at = end + 4
    conn.ends_at = conn.body_at + int(head[at + 17:stop if stop >= 0 else len(head)])
    conn.closing = b"\r\nconnection: close" in head
    at = head.find(b"\r\nx-grantex-worker:")
    if at >= 0:
        stop = head.find(b"\r\n", at + 2)
        conn.worker = head[at + 19:stop if stop >= 0 else len(head)].strip().decode()
    return True


def drive(connections: Sequence[socket.socket], plans: Sequence[Sequence[bytes]], seconds: float,
          keep_bodies: bool = False) -> Pass:
    """Send each connection's plan one request at a time, the next as soon as the answer is read,
    until every plan is spent or ``seconds`` have passed (requests in flight are then finished).

    Bounded in count (the plans), in time (``seconds``) and against a hung server (no answer on
    any connection for :data:`STALL_SECONDS`: what is in flight counts as errors).
    """
    result = Pass()
    conns = [_Connection(sock, plan) for sock, plan in zip(connections, plans, strict=True)]
    selector = selectors.DefaultSelector()
    result.started = time.monotonic()
    deadline = result.started + seconds
    live = 0
    for conn in conns:
        if conn.plan:
            selector.register(conn.sock, selectors.EVENT_READ, conn)
            _send(conn)
            live += 1
    result.ended = result.started

    def finish(conn: _Connection, reason: str = "") -> None:
        nonlocal live
        selector.unregister(conn.sock)
        live -= 1
        if reason:
            result.errors += 1
            result.error_sample = result.error_sample or reason

    while live:
        events = selector.select(timeout=STALL_SECONDS)
        if not events:
            for key in list(selector.get_map().values()):
                finish(key.data, f"no answer in {STALL_SECONDS:.0f} s")
            break
        for key, _ in events:
            conn = key.data
            try:
                chunk = conn.sock.recv(262144)
            except OSError as exc:
                finish(conn, f"receive failed: {exc}")
                continue
            if not chunk:
                finish(conn, "the server closed the connection")
                continue
            conn.buffer += chunk
            if conn.body_at < 0 and not _read_head(conn):
                continue
            if len(conn.buffer) < conn.ends_at:
                continue
            now = time.monotonic()
            result.ended = now
            if 200 <= conn.status < 300:
                result.ok += 1
                result.latencies_ms.append((now - conn.sent_at) * 1000)
                if keep_bodies:
                    result.bodies.append(bytes(conn.buffer[conn.body_at:conn.ends_at]))
            else:
                result.errors += 1
                result.error_sample = result.error_sample or (
                    f"{conn.status}: {bytes(conn.buffer[conn.body_at:conn.ends_at])[:300]!r}")
            result.statuses[conn.status] += 1
            del conn.buffer[:conn.ends_at]
            conn.body_at = conn.ends_at = -1
            if conn.closing:
                finish(conn, "" if conn.sent == len(conn.plan) else "the server closed the connection")
            elif conn.sent < len(conn.plan) and now < deadline:
                try:
                    _send(conn)
                except OSError as exc:
                    finish(conn, f"send failed: {exc}")
            else:
                finish(conn)
    selector.close()
    result.sent = [conn.sent for conn in conns]
    result.workers = [conn.worker for conn in conns]
    return result


def connect(port: int, count: int) -> list[socket.socket]:
    connections = []
    for _ in range(count):
        sock = socket.create_connection((HOST, port), timeout=START_SECONDS)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.settimeout(STALL_SECONDS)  # bounds a send to a server that stopped reading
        connections.append(sock)
    return connections


def _client_process(port: int, health: bytes, plans: list[list[bytes]], seconds: float,
                    go: multiprocessing.synchronize.Event, results: Any, index: int) -> None:
    """One client process: connect and warm up its connections, say it is ready, wait for the
    parent's go, drive its plans, send back what it saw (with its CPU time over the timed phase)."""
    connections: list[socket.socket] = []
    try:
        connections = connect(port, len(plans))
        warm = drive(connections, [[health] * WARMUP_PER_CONNECTION] * len(plans), START_SECONDS)
        if warm.errors:
            raise RuntimeError(f"warm-up failed: {warm.error_sample}")
        results.put(("ready", index, None, ""))
        if not go.wait(START_SECONDS):
            raise RuntimeError("no go from the parent")
        cpu = time.process_time()  # user + system of this process, finer than os.times' ticks
        outcome = drive(connections, plans, seconds)
        outcome.client_cpu = time.process_time() - cpu
        outcome.workers = warm.workers
        results.put(("done", index, outcome, ""))
    except BaseException as exc:  # the parent must hear of it, whatever it was
        results.put(("failed", index, None, f"{type(exc).__name__}: {exc}"))
    finally:
        for sock in connections:
            sock.close()


def gather(results: Any, children: Sequence[Any], kind: str, seconds: float) -> dict[int, Any]:
    """Each child's ``kind`` message (index -> payload), failing at once when a child reports a
    failure or exits without a word, and after ``seconds`` at the latest."""
    got: dict[int, Any] = {}
    deadline = time.monotonic() + seconds
    while len(got) < len(children):
        try:
            what, index, payload, failure = results.get(timeout=0.2)
        except queue.Empty:
            silent = [i for i, child in enumerate(children) if i not in got and child.exitcode is not None]
            if silent:  # one more look: a child's last message may still be on its way
                try:
                    what, index, payload, failure = results.get(timeout=1.0)
                except queue.Empty:
                    raise RuntimeError(f"client process {silent[0]} exited "
                                       f"({children[silent[0]].exitcode}) without a word") from None
            elif time.monotonic() > deadline:
                raise RuntimeError(f"client processes silent for {seconds:.0f} s") from None
            else:
                continue
        if what == "failed":
            raise RuntimeError(f"client process {index}: {failure}")
        if what == kind:
            got[index] = payload
    return got


def _stop_children(children: Sequence[Any]) -> None:
    for child in children:
        child.join(10)
        if child.is_alive():
            child.kill()
            child.join(5)


def _context() -> Any:
    """Forkserver where there is one: a client process then starts in milliseconds (this module
    imports nothing heavy at the top), without forking this process, whose threads drain the
    servers' output (a plain fork of a threaded process may copy a held lock)."""
    methods = multiprocessing.get_all_start_methods()
    return multiprocessing.get_context("forkserver" if "forkserver" in methods else "spawn")


@dataclass
class Cell:
    """One (workers, operation, clients) measurement."""

    workers: int
    op: str
    clients: int
    client_procs: int
    requests: int  # answered 2xx
    errors: int  # everything else: non-2xx answers, closed or hung connections
    seconds: float
    rate: float  # successful requests per second over the whole timed phase
    p50_ms: float
    p99_ms: float
    bound: str  # "time" (ran until --seconds) or "count" (every planned request was sent)
    client_cpu_s: float
    server_cpu_s: float | None
    server_system_s: float | None  # of which in the kernel
    busy_cpu_s: float | None  # the whole machine's non-idle CPU time over the cell
    connections_per_worker: list[int]
    error_sample: str = ""

    @property
    def client_cores(self) -> float:
        return self.client_cpu_s / self.seconds if self.seconds else math.nan

    @property
    def server_cores(self) -> float:
        return self.server_cpu_s / self.seconds if self.seconds and self.server_cpu_s is not None \
            else math.nan

    @property
    def server_ms_per_request(self) -> float:
        """Server CPU per answered request: with the cores it used, what says whether the server
        was busy computing (CPU-bound) or waiting (locks, fsync) for the rate it reached."""
        if not self.requests or self.server_cpu_s is None:
            return math.nan
        return self.server_cpu_s * 1000 / self.requests

    @property
    def other_cores(self) -> float:
        """Cores used meanwhile by processes that are neither this client nor the server (other
        work on a shared machine): what the figure competed with."""
        if not self.seconds or self.busy_cpu_s is None or self.server_cpu_s is None:
            return math.nan
        return max(0.0, self.busy_cpu_s - self.server_cpu_s - self.client_cpu_s) / self.seconds


def machine_busy_seconds() -> float | None:
    """Non-idle CPU time of the whole machine so far, all cores (Linux /proc/stat), else None."""
    try:
        with open("/proc/stat") as stat:
            fields = [int(x) for x in stat.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
    busy = sum(fields[:8]) - idle  # user nice system idle iowait irq softirq steal
    return busy / (os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100)


def percentile(ordered: Sequence[float], p: float) -> float:
    """Nearest-rank percentile of sorted values (the value p % of requests did not exceed)."""
    if not ordered:
        return math.nan
    return ordered[min(len(ordered) - 1, max(0, math.ceil(p / 100 * len(ordered)) - 1))]


def split(items: Sequence[Any], parts: int) -> list[list[Any]]:
    """``items`` dealt into ``parts`` lists whose sizes differ by at most one."""
    return [list(items[i::parts]) for i in range(parts)]


# ── the server ────────────────────────────────────────────────────────────────


class Server:
    """``python -m grantex_local.server --workers W`` on a ledger of its own, port 0, loopback.

    Each server has its own file, as a user would run it: servers sharing one would also share
    the write lock with each other's background writers (each worker's webhook thread writes a
    few times a second), which no single deployment has."""

    def __init__(self, workdir: Path, workers: int) -> None:
        from grantex_local import Ledger, developers

        self.workers = workers
        self.path = Path(workdir) / f"load-workers-{workers}.db"
        with Ledger(self.path) as ledger:
            self.key = developers.create_api_key(ledger, developers.default_developer(ledger).id,
                                                 "load").key
        env = dict(os.environ, GRANTEX_LOCAL_WORKER_HEADER="1")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "grantex_local.server", "--ledger", str(self.path), "--port", "0",
             "--workers", str(workers), "--rate-limit", "100000000", "--log-level", "warning",
             "--no-access-log"],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
        self.port = 0
        self.client: http.client.HTTPConnection | None = None  # for set-up requests, once ready
        self.output: list[str] = []
        self._lines: queue.Queue[str] = queue.Queue()
        stdout = self.proc.stdout
        assert stdout is not None
        threading.Thread(target=self._drain, args=(stdout,), daemon=True).start()

    def _drain(self, stdout: Iterable[str]) -> None:
        for line in stdout:  # also after start-up, so the pipe never fills
            self._lines.put(line)

    def wait_ready(self) -> None:
        """Until the banner's first line names the port and every worker answers /health."""
        if self.client is not None:
            return
        deadline = time.monotonic() + START_SECONDS
        while time.monotonic() < deadline and self.proc.poll() is None:
            try:
                line = self._lines.get(timeout=0.2)
            except queue.Empty:
                continue
            self.output.append(line)
            if line.startswith("grantex-local server on "):
                self.port = int(line.split(" on ", 1)[1].strip().rsplit(":", 1)[1])
            if line.startswith("Press Ctrl+C"):
                break
        if not self.port:
            self.stop()
            raise RuntimeError(f"the --workers {self.workers} server did not start: {''.join(self.output)}")
        # Workers start on their own: wait until as many distinct ones have answered, so that
        # no connection is accepted before every worker can take its share.
        seen: set[str] = set()
        while time.monotonic() < deadline and len(seen) < self.workers:
            try:
                status, _, worker = self.call("GET", "/health", new_connection=True)
                if status == 200:
                    seen.add(worker or "only")
            except OSError:
                time.sleep(0.05)
        if len(seen) < self.workers:
            self.stop()
            raise RuntimeError(f"only {len(seen)} of {self.workers} workers answered")
        self.client = http.client.HTTPConnection(HOST, self.port, timeout=START_SECONDS)

    def call(self, method: str, path: str, body: Any = None,
             new_connection: bool = False) -> tuple[int, Any, str]:
        """A set-up request (never timed): status, parsed body, the worker that answered."""
        conn = http.client.HTTPConnection(HOST, self.port, timeout=5) if new_connection else self.client
        if conn is None:
            raise RuntimeError("the server is not ready")
        try:
            payload = json.dumps(body).encode() if body is not None else None
            conn.request(method, path, body=payload,
                         headers={"Authorization": f"Bearer {self.key}", "Content-Type": "application/json"})
            response = conn.getresponse()
            data = response.read()
            return response.status, json.loads(data) if data else None, response.getheader(
                "x-grantex-worker", "")
        finally:
            if new_connection:
                conn.close()

    def pids(self) -> list[int]:
        """The server process and its workers (Linux /proc; just the server elsewhere)."""
        found = [self.proc.pid]
        try:
            for entry in os.listdir("/proc"):
                if entry.isdigit():
                    try:
                        with open(f"/proc/{entry}/stat") as stat:
                            fields = stat.read().rsplit(")", 1)[1].split()
                    except OSError:
                        continue
                    if int(fields[1]) == self.proc.pid:
                        found.append(int(entry))
        except OSError:
            pass
        return found

    def cpu_seconds(self, pids: Sequence[int]) -> tuple[float, float] | None:
        """(user, system) CPU time of these processes so far; None where /proc cannot say.
        System time is the kernel working for the server: sockets, and the commits' writes and
        fsyncs where the file system does them on the caller's CPU."""
        user = system = 0.0
        tick = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
        for pid in pids:
            try:
                with open(f"/proc/{pid}/stat") as stat:
                    fields = stat.read().rsplit(")", 1)[1].split()
            except OSError:
                return None
            user += int(fields[11]) / tick
            system += int(fields[12]) / tick
        return user, system

    def terminate(self) -> None:
        if self.client is not None:
            self.client.close()
            self.client = None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)

    def stop(self) -> None:
        """SIGTERM (a graceful stop) and wait; SIGKILL if it outlives its grace time."""
        self.terminate()
        if self.proc.poll() is None:
            try:
                self.proc.wait(40)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)


@dataclass
class Workload:
    """A ready server and what its requests need: an agent, tokens, codes, the audit body."""

    server: Server
    agent_id: str
    tokens: list[str]
    audit_body: dict[str, Any]
    codes: list[str] = field(default_factory=list)
    code_rate: float = 0.0

    def exchange_one(self) -> dict[str, Any]:
        status, auth, _ = self.server.call("POST", "/v1/authorize", {
            "agentId": self.agent_id, "principalId": "user_load", "scopes": SCOPES})
        if status != 201 or not auth.get("code"):
            raise RuntimeError(f"authorize answered {status}: {auth}")
        status, token, _ = self.server.call("POST", "/v1/token",
                                            {"code": auth["code"], "agentId": self.agent_id})
        if status != 201:
            raise RuntimeError(f"exchange answered {status}: {token}")
        return dict(token)

    def request(self, op: str, connection: int) -> bytes:
        port, key = self.server.port, self.server.key
        if op == "verify":
            token = self.tokens[connection % len(self.tokens)]
            return http_request(port, key, "/v1/tokens/verify", {"token": token})
        if op == "audit log":
            return http_request(port, key, "/v1/audit/log", self.audit_body)
        raise ValueError(op)

    def make_codes(self, wanted: int, seconds: float) -> None:
        """Top the pool up towards ``wanted`` codes for up to ``seconds`` (untimed for the figure),
        over 16 keep-alive connections in this process: authorize is a committed write too, so
        this gives about as many codes as the exchanges can spend in as long."""
        port, key = self.server.port, self.server.key
        need = wanted - len(self.codes)
        if need <= 0:
            return
        body = http_request(port, key, "/v1/authorize",
                            {"agentId": self.agent_id, "principalId": "user_load", "scopes": SCOPES})
        count = min(16, need)
        connections = connect(port, count)
        try:
            made = drive(connections, split([body] * need, count), seconds, keep_bodies=True)
        finally:
            for sock in connections:
                sock.close()
        if made.errors:
            raise RuntimeError(f"authorize failed while making codes: {made.error_sample}")
        self.codes.extend(json.loads(answer)["code"] for answer in made.bodies)
        if made.ended > made.started:
            self.code_rate = made.ok / (made.ended - made.started)


def prepare(server: Server, max_clients: int) -> Workload:
    """An agent, one valid token per connection (for verify), and a warmed server."""
    server.wait_ready()
    status, agent, _ = server.call("POST", "/v1/agents", {"name": "load", "scopes": SCOPES})
    if status != 201:
        raise RuntimeError(f"registering the agent answered {status}: {agent}")
    work = Workload(server, agent["id"], [], {})
    tokens = [work.exchange_one() for _ in range(max_clients)]
    work.tokens = [t["grantToken"] for t in tokens]
    work.audit_body = {"agentId": agent["id"], "grantId": tokens[0]["grantId"], "action": "calendar.read",
                       "metadata": {"calendar": "work", "query": "meetings this week"}}
    status, verified, _ = server.call("POST", "/v1/tokens/verify", {"token": work.tokens[0]})
    if status != 200 or verified.get("valid") is not True:
        raise RuntimeError(f"a fresh token did not verify: {verified}")
    # Untimed warm-up of every route on every worker (lazy imports, caches, prepared statements).
    count = 2 * max(1, server.workers)
    connections = connect(server.port, count)
    try:
        for op in ("verify", "audit log"):
            warm = drive(connections, [[work.request(op, i)] * 10 for i in range(count)], START_SECONDS)
            if warm.errors:
                raise RuntimeError(f"warm-up of {op} failed: {warm.error_sample}")
    finally:
        for sock in connections:
            sock.close()
    return work


def measure(work: Workload, op: str, clients: int, seconds: float, requests: int,
            client_procs: int) -> Cell:
    """One cell: ``clients`` connections over ``min(clients, client_procs)`` processes."""
    server = work.server
    quota = max(1, requests // clients)  # per connection: the count bound
    if op == "exchange":
        work.make_codes(quota * clients, seconds * 1.2)
        quota = min(quota, len(work.codes) // clients)
        if quota < 1:
            raise RuntimeError(f"only {len(work.codes)} codes were made for {clients} clients")
        codes = work.codes[:quota * clients]
        del work.codes[:quota * clients]
        code_plans = [codes[i * quota:(i + 1) * quota] for i in range(clients)]
        plans = [[http_request(server.port, server.key, "/v1/token", {"code": code, "agentId": work.agent_id})
                  for code in plan] for plan in code_plans]
    else:
        code_plans = []
        plans = [[work.request(op, i)] * quota for i in range(clients)]
    procs = max(1, min(clients, client_procs))
    shares = split(plans, procs)
    health = http_request(server.port, server.key, "/health")
    ctx = _context()
    go, results = ctx.Event(), ctx.Queue()
    children = [ctx.Process(target=_client_process, args=(server.port, health, share, seconds, go,
                                                          results, i), daemon=True)
                for i, share in enumerate(shares)]
    for child in children:
        child.start()
    pids = server.pids()
    try:
        gather(results, children, "ready", START_SECONDS)
        server_cpu, busy = server.cpu_seconds(pids), machine_busy_seconds()
        go.set()
        done = gather(results, children, "done", seconds + STALL_SECONDS + START_SECONDS)
        server_after, busy_after = server.cpu_seconds(pids), machine_busy_seconds()
    except RuntimeError as exc:
        raise RuntimeError(f"{op}, {clients} clients, --workers {server.workers}: {exc}") from None
    finally:
        go.set()  # a child still waiting goes on, and ends by its own bounds
        _stop_children(children)
    outcomes: list[Pass] = [done[i] for i in range(len(children))]
    if op == "exchange":  # codes never sent are still good: back to the pool
        for outcome, code_share in zip(outcomes, split(code_plans, procs), strict=True):
            for plan, sent in zip(code_share, outcome.sent, strict=True):
                work.codes.extend(plan[sent:])
    started = min(o.started for o in outcomes)
    ended = max(o.ended for o in outcomes)
    span = max(ended - started, 1e-9)
    latencies = sorted(x for o in outcomes for x in o.latencies_ms)
    ok = sum(o.ok for o in outcomes)
    errors = sum(o.errors for o in outcomes)
    sent = sum(sum(o.sent) for o in outcomes)
    per_worker = Counter(w for o in outcomes for w in o.workers)
    return Cell(
        workers=server.workers, op=op, clients=clients, client_procs=procs, requests=ok, errors=errors,
        seconds=span, rate=ok / span, p50_ms=statistics.median(latencies) if latencies else math.nan,
        p99_ms=percentile(latencies, 99), bound="count" if sent == quota * clients else "time",
        client_cpu_s=sum(o.client_cpu for o in outcomes),
        server_cpu_s=None if server_cpu is None or server_after is None
        else sum(server_after) - sum(server_cpu),
        server_system_s=None if server_cpu is None or server_after is None
        else server_after[1] - server_cpu[1],
        busy_cpu_s=None if busy is None or busy_after is None else busy_after - busy,
        connections_per_worker=sorted(per_worker.values(), reverse=True),
        error_sample=next((o.error_sample for o in outcomes if o.error_sample), ""))


# ── the floors ────────────────────────────────────────────────────────────────


def _sign_loop(sign: Callable[[], object], count: int, deadline: float, done: list[int]) -> None:
    n = 0
    while n < count and time.monotonic() < deadline:
        sign()
        n += 1
    done.append(n)


def _threaded_rate(sign: Callable[[], object], threads: int, count: int, seconds: float) -> float:
    """Signatures per second of ``threads`` threads each signing up to ``count`` for ``seconds``."""
    done: list[int] = []
    started = time.monotonic()
    workers = [threading.Thread(target=_sign_loop, args=(sign, count, started + seconds, done))
               for _ in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    return sum(done) / (time.monotonic() - started)


def _process_sign(pem: bytes, data: bytes, count: int, seconds: float, go: Any, results: Any,
                  index: int) -> None:
    try:
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import padding, rsa

        key = serialization.load_pem_private_key(pem, None)
        assert isinstance(key, rsa.RSAPrivateKey)
        pkcs1, sha256 = padding.PKCS1v15(), hashes.SHA256()
        done: list[int] = []
        results.put(("ready", index, None, ""))
        if not go.wait(START_SECONDS):
            raise RuntimeError("no go from the parent")
        started = time.monotonic()
        _sign_loop(lambda: key.sign(data, pkcs1, sha256), count, started + seconds, done)
        results.put(("done", index, (done[0], started, time.monotonic()), ""))
    except BaseException as exc:
        results.put(("failed", index, None, f"{type(exc).__name__}: {exc}"))


def sign_floors(ledger_path: Path, token: str, seconds: float, count: int) -> dict[str, float]:
    """RSA-2048 signatures per second with the server's own signing key over a real token's
    signing input: bare ``private_key.sign`` and ``jwt.encode`` of the same claims, on 1 and 2
    threads, and bare signing in 2 processes (what both cores give when nothing holds a GIL)."""
    import jwt
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import padding

    from grantex_local import Ledger

    with Ledger(ledger_path, create=False) as ledger:
        key = ledger.signing_key()[1]
    header = jwt.get_unverified_header(token)
    claims = jwt.decode(token, options={"verify_signature": False})
    data = token.rsplit(".", 1)[0].encode()
    pkcs1, sha256 = padding.PKCS1v15(), hashes.SHA256()

    def bare() -> object:
        return key.sign(data, pkcs1, sha256)

    def encoded() -> object:
        return jwt.encode(claims, key, algorithm="RS256", headers={"kid": header.get("kid")})

    figures = {
        "sign, 1 thread": _threaded_rate(bare, 1, count, seconds),
        "sign, 2 threads": _threaded_rate(bare, 2, count, seconds),
        "jwt.encode, 1 thread": _threaded_rate(encoded, 1, count, seconds),
        "jwt.encode, 2 threads": _threaded_rate(encoded, 2, count, seconds),
    }
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption())
    ctx = _context()
    go, results = ctx.Event(), ctx.Queue()
    procs = [ctx.Process(target=_process_sign, args=(pem, data, count, seconds, go, results, i),
                         daemon=True) for i in range(2)]
    for proc in procs:
        proc.start()
    try:
        gather(results, procs, "ready", START_SECONDS)
        go.set()
        spans = list(gather(results, procs, "done", seconds + START_SECONDS).values())
        span = max(s[2] for s in spans) - min(s[1] for s in spans)
        figures["sign, 2 processes"] = sum(s[0] for s in spans) / span
    finally:
        go.set()
        _stop_children(procs)
    return figures


# ── the run ───────────────────────────────────────────────────────────────────


@dataclass
class Report:
    cells: list[Cell]
    floors: dict[str, float]
    settings: dict[str, Any]

    def cell(self, workers: int, op: str, clients: int) -> Cell | None:
        return next((c for c in self.cells if (c.workers, c.op, c.clients) == (workers, op, clients)), None)


def run(workdir: Path, clients: Sequence[int] = (1, 4, 16, 64), workers: Sequence[int] = (1, 2),
        seconds: float = 3.0, requests: int = 20_000, client_procs: int = 4,
        ops: Sequence[str] = OPS, echo: Callable[[str], Any] | None = None) -> Report:
    """Every (workers, op, clients) cell, the workers values interleaved on servers running side
    by side, and the RSA signing floors measured before and after (the best of the two)."""
    servers: list[Server] = []
    floor_seconds = max(0.2, min(seconds, 2.0))
    floor_count = max(50, requests // 4)
    cells: list[Cell] = []
    try:
        servers.extend(Server(workdir, w) for w in workers)  # starting side by side
        works = [prepare(server, max(clients)) for server in servers]
        token = works[0].tokens[0]
        floors = sign_floors(works[0].server.path, token, floor_seconds, floor_count)
        for op in ops:
            for count in clients:
                for work in works:
                    cell = measure(work, op, count, seconds, requests, client_procs)
                    cells.append(cell)
                    if echo is not None:
                        echo(_line(cell))
        if seconds >= 1:  # a second measurement, after the cells: the best of the two
            again = sign_floors(works[0].server.path, token, floor_seconds, floor_count)
            floors = {name: max(value, again[name]) for name, value in floors.items()}
        if code_rate := max((w.code_rate for w in works), default=0.0):
            floors["authorize (making codes, 16 connections)"] = code_rate
    finally:
        for server in servers:
            server.terminate()  # all at once: their graceful stops overlap
        for server in servers:
            server.stop()
    settings = {"clients": list(clients), "workers": list(workers), "seconds": seconds, "requests": requests,
                "client_procs": client_procs, "cores": os.cpu_count(), "python": platform.python_version(),
                "floor_seconds": floor_seconds, "token_bytes": len(token)}
    return Report(cells, floors, settings)


HEADER = (f"{'workers':>7} {'operation':<9} {'clients':>7} {'req/s':>9} {'p50 ms':>8} {'p99 ms':>8} "
          f"{'ok':>7} {'errors':>6} {'bound':<5} {'client':>6} {'server':>6} {'others':>6}"
          f" {'srv ms/req':>10}  connections/worker\n"
          f"{'':>66}(cores used during the cell)  (server CPU)")


def _line(c: Cell) -> str:
    spread = "/".join(str(n) for n in c.connections_per_worker) if c.workers > 1 else "-"
    return (f"{c.workers:>7} {c.op:<9} {c.clients:>7} {c.rate:>9,.0f} {c.p50_ms:>8.2f} {c.p99_ms:>8.2f} "
            f"{c.requests:>7} {c.errors:>6} {c.bound:<5} {c.client_cores:>6.2f} {c.server_cores:>6.2f}"
            f" {c.other_cores:>6.2f} {c.server_ms_per_request:>10.2f}  {spread}"
            + (f"  ERROR {c.error_sample}" if c.errors else ""))


def print_floors(report: Report) -> None:
    print("\nfloors in the same run (RSA-2048, the server's key, a real token's signing input; per second):")
    for name, value in report.floors.items():
        print(f"  {name:<44} {value:>10,.0f}")


def _valid(cell: Cell | None, value: Callable[[Cell], float]) -> float:
    """The figure, or NaN when the cell is missing or saw any error (then it does not count)."""
    return value(cell) if cell is not None and cell.errors == 0 else math.nan


def _describe(cell: Cell | None) -> str:
    if cell is None:
        return "not measured"
    text = (f"{cell.clients} clients in {cell.client_procs} processes: {cell.rate:,.0f}/s, "
            f"p50 {cell.p50_ms:.2f} ms, p99 {cell.p99_ms:.2f} ms, n={cell.requests} in "
            f"{cell.seconds:.1f} s ({cell.bound}-bound), "
            f"CPU: client {cell.client_cores:.2f}, server {cell.server_cores:.2f}, other processes "
            f"{cell.other_cores:.2f} cores; server CPU {cell.server_ms_per_request:.2f} ms a request "
            f"({_share(cell.server_system_s, cell.server_cpu_s)} of it in the kernel)")
    if cell.workers > 1:
        text += ", connections per worker " + "/".join(str(n) for n in cell.connections_per_worker)
    if cell.errors:
        text += f", {cell.errors} ERRORS ({cell.error_sample}): the figure does not count"
    return text


def _share(part: float | None, whole: float | None) -> str:
    return f"{part / whole:.0%}" if part is not None and whole else "?"


def target_rows(report: Report) -> list[Row]:
    """The issue's three server targets as bench rows, each against its floor from this run."""
    clients = report.settings["clients"]
    many = TARGET_CLIENTS if TARGET_CLIENTS in clients else max(clients)
    single = min(clients)
    floors = report.floors
    rows: list[Row] = []
    for w in report.settings["workers"]:
        exchange = report.cell(w, "exchange", many)
        if exchange is not None:
            rows.append(Row(
                f"load exchange, {many} clients, --workers {w}", "tokens/s",
                _valid(exchange, lambda c: c.rate), floors["sign, 2 threads"], ">= 0.60",
                "cryptography RSA-2048 private_key.sign (PKCS#1 v1.5, SHA-256) of a real token's signing "
                "input on 2 threads, same run",
                f"{_describe(exchange)}; jwt.encode of the same claims on 2 threads "
                f"{floors['jwt.encode, 2 threads']:,.0f}/s, bare sign on 1 thread "
                f"{floors['sign, 1 thread']:,.0f}/s, "
                f"in 2 processes {floors['sign, 2 processes']:,.0f}/s"))
        audit, audit_one = report.cell(w, "audit log", many), report.cell(w, "audit log", single)
        if audit is not None and audit_one is not None and many != single:
            rows.append(Row(
                f"load audit log, {many} clients, --workers {w}", "requests/s",
                _valid(audit, lambda c: c.rate), _valid(audit_one, lambda c: c.rate),
                ">= 5x single-client rate",
                f"the same server with {single} client, same run",
                f"{_describe(audit)}; single: {_describe(audit_one)}"))
            rows.append(Row(
                f"load audit log p99, {many} clients, --workers {w}", "ms",
                _valid(audit, lambda c: c.p99_ms), _valid(audit_one, lambda c: c.p99_ms),
                "<= 3.00x single-client p99 (time)",
                f"p99 latency with {single} client on the same server, same run",
                f"ratio here is p99 ours/floor; {many} clients p50 {audit.p50_ms:.2f} ms; "
                f"single p50 {audit_one.p50_ms:.2f} ms"))
    if 1 in report.settings["workers"]:
        one = report.cell(1, "verify", many)
        for w in report.settings["workers"]:
            more = report.cell(w, "verify", many)
            if w > 1 and one is not None and more is not None:
                rows.append(Row(
                    f"load verify, {many} clients, --workers {w} vs 1", "requests/s",
                    _valid(more, lambda c: c.rate), _valid(one, lambda c: c.rate), ">= 1.6",
                    "the same requests against --workers 1, interleaved in the same run",
                    f"--workers {w}: {_describe(more)}; --workers 1: {_describe(one)}"))
    return rows


def rows(workdir: Path, clients: Sequence[int] = (1, 4, 16, 64), workers: Sequence[int] = (1, 2),
         seconds: float = 3.0, requests: int = 20_000) -> list[Row]:
    """What the full bench runs: the whole matrix, kept as the target rows."""
    return target_rows(run(workdir, clients, workers, seconds, requests))


def write_report(report: Report, target: list[Row], path: str) -> None:
    data = {
        "meta": dict(report.settings, date=time.strftime("%Y-%m-%d %H:%M:%S %Z"),
                     sqlite=sqlite3.sqlite_version, machine=platform.machine(),
                     platform=platform.platform()),
        "floors": report.floors,
        "cells": [dict(asdict(c), client_cores=c.client_cores, server_cores=c.server_cores,
                       other_cores=c.other_cores, server_ms_per_request=c.server_ms_per_request)
                  for c in report.cells],
        "rows": [dict(asdict(r), ratio=r.ratio, met=r.met) for r in target],
    }
    with open(path, "w") as fh:
        json.dump(data, fh, indent=2)


def _numbers(text: str) -> list[int]:
    try:
        values = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"a comma-separated list of integers, not {text!r}") from None
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"positive integers, not {text!r}")
    return values


def main(argv: list[str] | None = None) -> int:
    import tempfile

    parser = argparse.ArgumentParser(prog="python -m bench.load", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clients", type=_numbers, default=[1, 4, 16, 64], help="default 1,4,16,64")
    parser.add_argument("--workers", type=_numbers, default=[1, 2], help="default 1,2")
    parser.add_argument("--seconds", type=float, default=3.0, help="time bound of each cell (default 3)")
    parser.add_argument("--requests", type=int, default=20_000,
                        help="count bound of each cell, over all its connections (default 20000)")
    parser.add_argument("--client-procs", type=int, default=4,
                        help="client processes at most (default 4; fewer when fewer clients)")
    parser.add_argument("--ops", default=",".join(OPS), help=f"default {','.join(OPS)}")
    parser.add_argument("--json", metavar="FILE", help="write every cell, the floors and the target rows")
    args = parser.parse_args(argv)
    ops = [op.strip() for op in args.ops.split(",") if op.strip()]
    if unknown := set(ops) - set(OPS):
        parser.error(f"unknown operations {sorted(unknown)}; known: {', '.join(OPS)}")
    if not 0 < args.seconds <= 600 or not 0 < args.requests <= 10_000_000 or args.client_procs < 1:
        parser.error("--seconds must be in (0, 600], --requests in 1..10000000, --client-procs >= 1")
    with tempfile.TemporaryDirectory(prefix="grantex-bench-load-") as tmp:
        print(HEADER)
        print("-" * len(HEADER.splitlines()[0]))
        report = run(Path(tmp), args.clients, args.workers, args.seconds, args.requests,
                     args.client_procs, ops, echo=lambda line: print(line, flush=True))
    print_floors(report)
    target = target_rows(report)
    if target:
        print()
        print_table(target)
    if args.json:
        write_report(report, target, args.json)
        print(f"\nwritten to {args.json}")
    errors = sum(c.errors for c in report.cells)
    if errors:
        print(f"\n{errors} requests failed: the cells with errors do not count", file=sys.stderr)
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
