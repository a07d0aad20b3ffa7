"""REST server load (issue 6): verify and audit-log requests against the same server's /health.

The server runs as its own process (``python -m grantex_local.server``, what ``grantex-local
serve`` runs) on a free loopback port; this process is the client, on one keep-alive
connection, sending a fixed number of requests to each endpoint one after another, so each
request's latency is exactly what a caller waits. The floor is ``GET /health`` on the same
server, measured in the same run with the same client: it pays for HTTP, the middleware and
one ledger read, so ``ours / floor`` is the cost of the route's own work (signature and ledger
checks for verify; a hashed, committed append for audit log). Endpoints are measured in
interleaved rounds so that a slow moment on a shared machine hits all three alike.
"""

from __future__ import annotations

import http.client
import json
import queue
import signal
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from grantex_local import Ledger, developers

from .common import Row

ROUNDS = 4
WARMUP = 20


class _Client:
    """One persistent HTTP/1.1 connection: the cheapest client the standard library has."""

    def __init__(self, base: str, key: str) -> None:
        host, port = base.removeprefix("http://").rsplit(":", 1)
        self.conn = http.client.HTTPConnection(host, int(port), timeout=30)
        self.headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}

    def call(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        payload = json.dumps(body).encode() if body is not None else None
        self.conn.request(method, path, body=payload, headers=self.headers)
        response = self.conn.getresponse()
        data = response.read()
        return response.status, json.loads(data) if data else None

    def close(self) -> None:
        self.conn.close()


def _start(path: Path) -> tuple[subprocess.Popen[str], str]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "grantex_local.server", "--ledger", str(path), "--port", "0",
         "--rate-limit", "100000000", "--log-level", "warning", "--no-access-log"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines: queue.Queue[str] = queue.Queue()
    assert proc.stdout is not None
    stdout = proc.stdout
    threading.Thread(target=lambda: [lines.put(line) for line in stdout], daemon=True).start()
    deadline = time.monotonic() + 30
    base = ""
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            line = lines.get(timeout=0.5)
        except queue.Empty:
            continue
        if line.startswith("grantex-local server on "):
            base = line.split(" on ", 1)[1].strip()
        if line.startswith("Press Ctrl+C"):
            break
    if not base:
        proc.kill()
        raise RuntimeError("the benchmark server did not start")
    host, port = base.removeprefix("http://").rsplit(":", 1)
    for _ in range(200):
        probe = http.client.HTTPConnection(host, int(port), timeout=5)
        try:
            probe.request("GET", "/health")
            probe.getresponse().read()
            break
        except OSError:
            time.sleep(0.05)
        finally:
            probe.close()
    return proc, base


def _percentile(sorted_ms: list[float], p: float) -> float:
    index = min(len(sorted_ms) - 1, max(0, round(p / 100 * len(sorted_ms)) - 1))
    return sorted_ms[index]


def load(workdir: Path, requests: int = 2000) -> list[Row]:
    """Drive ``POST /v1/tokens/verify`` and ``POST /v1/audit/log`` ``requests`` times each, next to
    ``GET /health``; one row per endpoint with requests per second, p50 and p99 in ``extra``."""
    path = Path(workdir) / "server-bench.db"
    with Ledger(path) as ledger:
        key = developers.create_api_key(ledger, developers.default_developer(ledger).id, "bench").key
    proc, base = _start(path)
    client = _Client(base, key)
    try:
        status, agent = client.call("POST", "/v1/agents", {"name": "bench", "scopes": ["calendar:read"]})
        assert status == 201, agent
        status, auth = client.call("POST", "/v1/authorize", {"agentId": agent["id"], "principalId": "bench",
                                                             "scopes": ["calendar:read"]})
        status, token = client.call("POST", "/v1/token", {"code": auth["code"], "agentId": agent["id"]})
        assert status == 201, token
        log_body = {"agentId": agent["id"], "grantId": token["grantId"], "action": "calendar.read",
                    "metadata": {"calendar": "work", "query": "meetings this week"}}
        endpoints: dict[str, tuple[Callable[[], tuple[int, Any]], int]] = {
            "GET /health": (lambda: client.call("GET", "/health"), 200),
            "POST /v1/tokens/verify": (lambda: client.call("POST", "/v1/tokens/verify",
                                                           {"token": token["grantToken"]}), 200),
            "POST /v1/audit/log": (lambda: client.call("POST", "/v1/audit/log", log_body), 201),
        }
        for call, expected in endpoints.values():
            for _ in range(WARMUP):
                assert call()[0] == expected
        valid = endpoints["POST /v1/tokens/verify"][0]()[1]
        assert valid["valid"] is True, valid
        times: dict[str, list[float]] = {name: [] for name in endpoints}
        spent: dict[str, float] = dict.fromkeys(endpoints, 0.0)
        per_round = [requests // ROUNDS + (1 if r < requests % ROUNDS else 0) for r in range(ROUNDS)]
        for count in per_round:
            for name, (call, expected) in endpoints.items():
                started = time.perf_counter()
                for _ in range(count):
                    t0 = time.perf_counter()
                    status, _body = call()
                    times[name].append((time.perf_counter() - t0) * 1000)
                    if status != expected:
                        raise RuntimeError(f"{name} answered {status}")
                spent[name] += time.perf_counter() - started
    finally:
        client.close()
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()

    def summary(name: str) -> tuple[float, float, float]:
        ordered = sorted(times[name])
        return len(ordered) / spent[name], statistics.median(ordered), _percentile(ordered, 99)

    floor_rate, floor_p50, floor_p99 = summary("GET /health")
    rows = []
    for name, target in (("POST /v1/tokens/verify", ">= 0.50 of /health"),
                         ("POST /v1/audit/log", ">= 0.1x /health (an fsync per append)")):
        rate, p50, p99 = summary(name)
        rows.append(Row(
            name=f"server {name}", unit="requests/s", ours=rate, floor=floor_rate, target=target,
            floor_what="GET /health on the same server, same client, same run",
            extra=(f"p50 {p50:.2f} ms, p99 {p99:.2f} ms; /health p50 {floor_p50:.2f} ms, "
                   f"p99 {floor_p99:.2f} ms; {requests} requests, 1 keep-alive client in a second "
                   "process, loopback")))
    return rows


if __name__ == "__main__":
    import tempfile

    from .common import print_table

    with tempfile.TemporaryDirectory(prefix="grantex-bench-server-") as tmp:
        print_table(load(Path(tmp), int(sys.argv[1]) if len(sys.argv) > 1 else 2000))
