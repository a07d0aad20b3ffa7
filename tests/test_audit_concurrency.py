"""Several processes appending to one audit chain, and a writer killed mid-append.

Real processes on a real file: the chain must come out as one unbroken
sequence with nothing lost, and an append that returned to its caller must
survive a SIGKILL of the writer a moment later.
"""

from __future__ import annotations

import itertools
import json
import os
import random
import select
import subprocess
import sys
import textwrap
import time
from collections import Counter
from pathlib import Path

import pytest
from helpers import grant_for

from grantex_local import Grantex
from grantex_local.models import AuditEntry

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="SIGKILL and select on pipes")

WORKERS = 4
APPENDS = 500

APPEND_WORKER = textwrap.dedent("""
    import json, os, sys, time
    from grantex_local import Grantex
    path, agent_id, grant_id, ready_dir, me, count, workers = sys.argv[1:8]
    me, count, workers = int(me), int(count), int(workers)
    gx = Grantex(path, create=False)
    open(os.path.join(ready_dir, str(me)), "w").close()
    while len(os.listdir(ready_dir)) < workers:   # start together
        time.sleep(0.001)
    start = time.time()
    for i in range(count):
        gx.audit.log(agent_id=agent_id, grant_id=grant_id, action="worker.append",
                     metadata={"worker": me, "i": i})
    end = time.time()
    print(json.dumps({"worker": me, "start": start, "end": end, "seconds": end - start}))
""")


def _all_entries(gx: Grantex) -> list[AuditEntry]:
    out: list[AuditEntry] = []
    for number in itertools.count(1):
        page = gx.audit.list(page=number, page_size=10_000)
        out += page
        if len(page) < 10_000:
            return out
    raise AssertionError("unreachable")


def _chain_grant(gx: Grantex) -> tuple[str, str]:
    token = grant_for(gx, ["calendar:read"])
    grant = gx.grants.get(token.grant_id)
    return grant.agent_id, grant.id


def test_four_processes_appending_at_once_make_one_unbroken_chain(tmp_path: Path) -> None:
    path = tmp_path / "audit.db"
    with Grantex(path) as gx:
        agent_id, grant_id = _chain_grant(gx)
        before = gx.audit.verify().entries
    ready = tmp_path / "ready"
    ready.mkdir()
    started = time.perf_counter()
    procs = [
        subprocess.Popen([sys.executable, "-c", APPEND_WORKER, str(path), agent_id, grant_id, str(ready),
                          str(w), str(APPENDS), str(WORKERS)],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for w in range(WORKERS)
    ]
    reports = []
    for proc in procs:
        out, err = proc.communicate(timeout=240)
        assert proc.returncode == 0, err
        reports.append(json.loads(out))
    elapsed = time.perf_counter() - started
    print(f"\n{WORKERS}x{APPENDS} appends: {elapsed:.1f}s wall, per worker "
          + ", ".join(f"{r['seconds']:.1f}s" for r in sorted(reports, key=lambda r: r["worker"])))

    with Grantex(path, create=False) as gx:
        report = gx.audit.verify()
        entries = _all_entries(gx)
    assert report.entries == len(entries) == before + WORKERS * APPENDS
    actions = [e for e in entries if e.action == "worker.append"]
    assert len(actions) == WORKERS * APPENDS
    pairs = Counter((e.metadata["worker"], e.metadata["i"]) for e in actions)
    assert set(pairs) == {(w, i) for w in range(WORKERS) for i in range(APPENDS)}
    assert max(pairs.values()) == 1
    assert [e.seq for e in entries] == list(range(1, len(entries) + 1))
    assert all(a.timestamp <= b.timestamp for a, b in itertools.pairwise(entries))
    assert all(a.entry_id < b.entry_id for a, b in itertools.pairwise(entries))
    assert all(b.prev_hash == a.hash for a, b in itertools.pairwise(entries))
    # The appends really were concurrent: all four workers were appending at one moment.
    assert max(r["start"] for r in reports) < min(r["end"] for r in reports)
    switches = sum(a.metadata["worker"] != b.metadata["worker"] for a, b in itertools.pairwise(actions))
    print(f"the chain switches from one worker to another {switches} times")
    # Each worker's own appends keep their order in the chain.
    for w in range(WORKERS):
        assert [e.metadata["i"] for e in actions if e.metadata["worker"] == w] == list(range(APPENDS))


KILLED_WRITER = textwrap.dedent("""
    import random, sys
    from grantex_local import Grantex
    path, agent_id, grant_id, seed = sys.argv[1:5]
    rng = random.Random(int(seed))
    gx = Grantex(path, create=False)
    print("ready", flush=True)
    n = 0
    while True:
        if rng.random() < 0.35:
            size = rng.randint(2, 120)
            batch = [{"agent_id": agent_id, "grant_id": grant_id, "action": "bulk.append",
                      "metadata": {"seed": int(seed), "n": n + j, "pad": "x" * rng.randint(0, 300)}}
                     for j in range(size)]
            written = gx.audit.log_many(batch)
            sys.stdout.write("".join(e.entry_id + "\\n" for e in written))
            sys.stdout.flush()
            n += size
        else:
            entry = gx.audit.log(agent_id=agent_id, grant_id=grant_id, action="single.append",
                                 metadata={"seed": int(seed), "n": n})
            print(entry.entry_id, flush=True)
            n += 1
""")

ROUNDS = 20


def _read_until(proc: subprocess.Popen[bytes], lines_wanted: int, deadline: float) -> bytes:
    """Read the writer's stdout until ``lines_wanted`` complete lines or the deadline."""
    assert proc.stdout is not None
    fd = proc.stdout.fileno()
    data = b""
    while data.count(b"\n") < lines_wanted and time.monotonic() < deadline:
        ready, _, _ = select.select([fd], [], [], max(0.0, deadline - time.monotonic()))
        if not ready:
            break
        chunk = os.read(fd, 65536)
        if not chunk:
            break
        data += chunk
    return data


def test_a_writer_killed_mid_append_never_loses_a_returned_entry(tmp_path: Path) -> None:
    path = tmp_path / "killed.db"
    with Grantex(path) as gx:
        agent_id, grant_id = _chain_grant(gx)
    seed = random.randrange(1 << 30)
    rng = random.Random(seed)
    acknowledged: list[str] = []
    log = []
    for round_ in range(ROUNDS):
        stderr_file = tmp_path / f"writer-{round_}.err"
        with stderr_file.open("wb") as stderr:
            proc = subprocess.Popen([sys.executable, "-c", KILLED_WRITER, str(path), agent_id, grant_id,
                                     str(seed + round_)], stdout=subprocess.PIPE, stderr=stderr)
        try:
            head = _read_until(proc, 1, time.monotonic() + 30)
            assert head.startswith(b"ready\n"), stderr_file.read_text()
            if rng.random() < 0.5:
                how = f"after {rng.randint(1, 150)} lines"
                data = _read_until(proc, int(how.split()[1]), time.monotonic() + 10)
            else:
                delay = rng.uniform(0.02, 0.2)
                how = f"after {delay * 1000:.0f} ms"
                data = _read_until(proc, 1 << 30, time.monotonic() + delay)
            assert proc.poll() is None, f"writer died on its own: {stderr_file.read_text()}"
            proc.kill()
        finally:
            if proc.poll() is None:
                proc.kill()
            assert proc.stdout is not None
            rest = proc.stdout.read()
            proc.stdout.close()
            proc.wait(timeout=30)
        text = (head[len(b"ready\n"):] + data + rest).decode()
        returned = [line for line in text.split("\n")[:-1] if line]  # the last piece is incomplete
        acknowledged += returned
        log.append(f"round {round_}: killed {how}, {len(returned)} acknowledged")

        context = f"seed {seed}; " + "; ".join(log)
        with Grantex(path, create=False) as gx:  # the file always opens
            report = gx.audit.verify()  # and the chain always verifies
            for entry_id in returned:
                assert gx.audit.get(entry_id).entry_id == entry_id, context
            assert report.entries >= len(acknowledged), context
    with Grantex(path, create=False) as gx:
        for entry_id in acknowledged:  # nothing acknowledged in an earlier round went missing later
            gx.audit.get(entry_id)
        entries = _all_entries(gx)
    assert len(set(acknowledged)) == len(acknowledged)
    assert [e.seq for e in entries] == list(range(1, len(entries) + 1))
    assert sum(1 for e in entries if e.action in ("bulk.append", "single.append")) >= len(acknowledged)
    print(f"\nseed {seed}: {len(acknowledged)} acknowledged appends over {ROUNDS} kills, "
          f"{len(entries)} entries in the chain")
