"""SSE fan-out (issue 11): events per second the server delivers to 10 subscribers of
``GET /v1/events/stream`` at once.

The server runs as its own process. A backlog of events is written in one transaction, then
10 subscribers connect with ``Last-Event-ID`` just before it (so none can miss the start) and
read until each has every event; ``ours`` counts events delivered to all of them per second.
The floor is the least any delivery must do: 10 threads in this process, each on its own
connection, reading the same events with ``events.read_events`` (no HTTP, no framing).
``ours / floor`` is then what HTTP, SSE framing and the server's poller add.
"""

from __future__ import annotations

import signal
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path

import httpx

from grantex_local import Ledger, developers, events

from .common import Row
from .server import _start

SUBSCRIBERS = 10


def _parallel(work: Callable[[], int], count: int) -> float:
    """Events per second handled by ``count`` threads running ``work`` together."""
    results: list[int] = []
    errors: list[BaseException] = []
    start_line = threading.Barrier(count + 1)

    def run() -> None:
        try:
            start_line.wait()
            results.append(work())
        except BaseException as exc:  # reported below, not lost in a thread
            errors.append(exc)

    threads = [threading.Thread(target=run, daemon=True) for _ in range(count)]
    for t in threads:
        t.start()
    start_line.wait()
    started = time.perf_counter()
    for t in threads:
        t.join(120)
    elapsed = time.perf_counter() - started
    if errors:
        raise RuntimeError(f"a subscriber failed: {errors[0]!r}")
    if len(results) != count:
        raise RuntimeError("a subscriber did not finish within 120 s")
    return sum(results) / elapsed


def fanout(workdir: Path, count: int = 5_000, repeats: int = 3) -> Row:
    path = Path(workdir) / "events-bench.db"
    with Ledger(path) as ledger:
        developer_id = developers.default_developer(ledger).id
        key = developers.create_api_key(ledger, developer_id, "bench").key
        mark = events.last_seq(ledger, developer_id)
        with ledger.write() as conn:
            for i in range(count):
                events.emit(ledger, conn, developer_id, "grant.revoked", {
                    "grantId": f"grnt_bench{i:021d}", "cascade": False,
                    "revokedGrants": [{"grantId": f"grnt_bench{i:021d}",
                                       "expiresAt": "2099-01-01T00:00:00.000Z"}]})
    proc, base = _start(path)

    def subscribe() -> int:
        seen = 0
        headers = {"Authorization": f"Bearer {key}", "Last-Event-ID": str(mark)}
        with httpx.stream("GET", base + "/v1/events/stream", headers=headers,
                          timeout=httpx.Timeout(30, read=60)) as response:
            response.raise_for_status()
            for line in response.iter_lines():
                if line.startswith("data: "):
                    seen += 1
                    if seen == count:
                        break
        return seen

    def read_floor() -> int:
        seen, after = 0, mark
        with Ledger(path, create=False) as ledger:
            while seen < count:
                found = events.read_events(ledger, developer_id, after=after, limit=500)
                seen += len(found)
                after = found[-1].seq
        return seen

    try:
        ours = max(_parallel(subscribe, SUBSCRIBERS) for _ in range(repeats))
        floor = max(_parallel(read_floor, SUBSCRIBERS) for _ in range(repeats))
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
    return Row(
        name=f"event stream fan-out, {SUBSCRIBERS} SSE subscribers", unit="events/s delivered",
        ours=ours, floor=floor, target=">= 0.1",
        floor_what=f"{SUBSCRIBERS} threads reading the same events with events.read_events, "
                   "each on its own connection",
        extra=f"{count} events each, best of {repeats}; server in its own process, loopback")


if __name__ == "__main__":
    import sys
    import tempfile

    from .common import print_table

    with tempfile.TemporaryDirectory(prefix="grantex-bench-events-") as tmp:
        print_table([fanout(Path(tmp), int(sys.argv[1]) if len(sys.argv) > 1 else 5_000)])
