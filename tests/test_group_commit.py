"""Group commit: concurrent writers of one process share a transaction and its fsync.

Each test gathers a batch deterministically: the first writer (the leader) holds its body open
until the others have joined its batch (``CommitGroup.waiting``), so what is asserted is what a
batch does, not what the scheduler happened to do. Real ledger files under tmp_path, one
``Ledger`` per thread as the server keeps them.
"""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from grantex_local import Ledger, errors, keys
from grantex_local.audit import trail
from grantex_local.audit.chain import verify_chain
from grantex_local.developers import default_developer

FOLLOWERS = 15


def _count(path: Path, action: str) -> int:
    """Entries with this action as another connection sees them: only what was committed."""
    with sqlite3.connect(path) as conn:
        return int(conn.execute("SELECT count(*) FROM audit_entries WHERE action = ?",
                                (action,)).fetchone()[0])


def _wait_for(condition: Callable[[], bool], what: str, seconds: float = 20.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.002)


class Batch:
    """A leader whose body waits until ``followers`` writers have joined its batch, then runs
    ``lead`` on the shared connection; each follower runs its own body. Collects what each
    thread got back (True, or the exception) and what a fresh connection saw right after."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.results: dict[str, Any] = {}
        self.seen_after_return: dict[str, int] = {}
        self.group_commits: tuple[int, int] = (0, 0)

    def run(self, lead: Callable[[Ledger, sqlite3.Connection], None],
            bodies: dict[str, Callable[[Ledger, sqlite3.Connection], None]]) -> None:
        leader_in_body = threading.Event()
        ledgers = {name: Ledger(self.path, create=False) for name in ["leader", *bodies]}
        group = ledgers["leader"]._group
        before = group.commits

        def leader() -> None:
            try:
                with ledgers["leader"].write() as conn:
                    leader_in_body.set()
                    _wait_for(lambda: group.waiting() == len(bodies) + 1, "followers to join")
                    lead(ledgers["leader"], conn)
                self.results["leader"] = True
            except Exception as exc:
                self.results["leader"] = exc

        def follower(name: str, body: Callable[[Ledger, sqlite3.Connection], None]) -> None:
            try:
                with ledgers[name].write() as conn:
                    body(ledgers[name], conn)
                self.results[name] = True
                self.seen_after_return[name] = _count(self.path, name)
            except Exception as exc:
                self.results[name] = exc

        threads = [threading.Thread(target=leader)]
        threads[0].start()
        assert leader_in_body.wait(20)
        for name, body in bodies.items():
            threads.append(threading.Thread(target=follower, args=(name, body)))
            threads[-1].start()
        for thread in threads:
            thread.join(60)
            assert not thread.is_alive()
        self.group_commits = (before, group.commits)
        for ledger in ledgers.values():
            ledger.close()


def _log(action: str) -> Callable[[Ledger, sqlite3.Connection], None]:
    def body(ledger: Ledger, conn: sqlite3.Connection) -> None:
        trail.record(ledger, conn, default_developer(ledger).id, action)
    return body


def _failing(action: str, error: Exception) -> Callable[[Ledger, sqlite3.Connection], None]:
    def body(ledger: Ledger, conn: sqlite3.Connection) -> None:
        trail.record(ledger, conn, default_developer(ledger).id, action)
        raise error
    return body


@pytest.fixture
def path(tmp_path: Path) -> Path:
    p = tmp_path / "g.db"
    Ledger(p).close()
    return p


def test_a_batch_commits_once_and_a_failing_body_fails_alone(path: Path) -> None:
    bodies = {f"ok.{i}": _log(f"ok.{i}") for i in range(FOLLOWERS - 2)}
    bodies["bad.input"] = _failing("bad.input", errors.InvalidInput("refused"))
    bodies["bad.sql"] = _failing("bad.sql", sqlite3.IntegrityError("constraint"))
    batch = Batch(path)
    batch.run(_log("leader"), bodies)

    before, after = batch.group_commits
    assert after - before == 1, "sixteen writers gathered in one batch commit once"
    assert batch.results["leader"] is True
    for i in range(FOLLOWERS - 2):
        assert batch.results[f"ok.{i}"] is True
        # answered only once durable: a fresh connection sees the entry the moment write returns
        assert batch.seen_after_return[f"ok.{i}"] == 1
    assert isinstance(batch.results["bad.input"], errors.InvalidInput)
    assert isinstance(batch.results["bad.sql"], errors.LedgerError)  # translated, not sqlite3's
    assert _count(path, "bad.input") == 0 and _count(path, "bad.sql") == 0
    assert _count(path, "leader") == 1
    with Ledger(path, create=False) as ledger:
        verify_chain(ledger, default_developer(ledger).id)  # raises ChainBroken
        seqs = [r[0] for r in ledger.query("SELECT seq FROM audit_entries ORDER BY seq")]
        assert seqs == list(range(1, len(seqs) + 1)), "one chain, no forks or gaps"


def test_a_failing_leader_still_commits_the_others(path: Path) -> None:
    batch = Batch(path)
    batch.run(_failing("leader", errors.InvalidInput("leader refused")),
              {f"f.{i}": _log(f"f.{i}") for i in range(4)})
    assert isinstance(batch.results["leader"], errors.InvalidInput)
    assert _count(path, "leader") == 0
    assert all(batch.results[f"f.{i}"] is True and _count(path, f"f.{i}") == 1 for i in range(4))
    with Ledger(path, create=False) as ledger:
        verify_chain(ledger, default_developer(ledger).id)


def test_a_lost_transaction_answers_every_member_with_an_error(path: Path) -> None:
    """When the shared transaction is gone (SQLite rolls everything back on some errors; here a
    body ends it by hand), no member that wrote in it may be told it succeeded."""
    def ends_transaction(ledger: Ledger, conn: sqlite3.Connection) -> None:
        trail.record(ledger, conn, default_developer(ledger).id, "killer")
        conn.execute("ROLLBACK")

    bodies: dict[str, Callable[[Ledger, sqlite3.Connection], None]] = {"killer": ends_transaction}
    bodies.update({f"f.{i}": _log(f"f.{i}") for i in range(3)})
    batch = Batch(path)
    batch.run(_log("leader"), bodies)
    assert isinstance(batch.results["leader"], errors.LedgerError)
    assert isinstance(batch.results["killer"], errors.LedgerError)
    for name in ["leader", "killer", *(f"f.{i}" for i in range(3))]:
        assert _count(path, name) == 0
        result = batch.results[name]
        # those whose body ran after the loss may not claim success either
        assert result is not True, name
    with Ledger(path, create=False) as ledger:
        verify_chain(ledger, default_developer(ledger).id)
        # and the ledger still takes writes
        with ledger.write() as conn:
            trail.record(ledger, conn, default_developer(ledger).id, "after")
    assert _count(path, "after") == 1


def test_a_key_rotated_by_a_follower_is_seen_by_the_leader_object(path: Path) -> None:
    """The batch is committed on the leader's connection, whose data_version does not move for
    its own commit: the group's commit count must invalidate the leader object's cached key."""
    with Ledger(path, create=False) as leader:
        old_kid = leader.signing_key()[0]
        follower = Ledger(path, create=False)
        joined = threading.Event()

        def rotate() -> None:
            joined.set()
            keys.rotate_signing_key(follower)

        with leader.write():
            thread = threading.Thread(target=rotate)
            thread.start()
            assert joined.wait(10)
            _wait_for(lambda: leader._group.waiting() == 2, "the rotation to join")
        thread.join(30)
        new_kid = follower.signing_key()[0]
        assert new_kid != old_kid
        assert leader.signing_key()[0] == new_kid
        follower.close()


def test_a_nested_write_through_another_ledger_object_joins(path: Path) -> None:
    """The same thread writing through a second object of the same file inside a body joins the
    body (before, it waited for its own lock until the busy timeout)."""
    with Ledger(path, create=False) as one, Ledger(path, create=False) as two:
        dev = default_developer(one).id
        with one.write() as conn:
            trail.record(one, conn, dev, "outer")
            with two.write() as inner:
                assert inner is conn
                trail.record(two, inner, dev, "inner")
            assert two.query_one("SELECT count(*) FROM audit_entries WHERE action = 'inner'")[0] == 1
        assert _count(path, "outer") == 1 and _count(path, "inner") == 1


def test_many_threads_many_writes_one_chain(path: Path) -> None:
    """Free-running threads (no orchestration): every write returned is there, once, in one
    chain, and the writes were grouped into fewer commits than writes."""
    threads, per_thread = 8, 40
    ledgers = [Ledger(path, create=False) for _ in range(threads)]
    group = ledgers[0]._group
    before_commits, before_members = group.commits, group.members
    start = threading.Barrier(threads)
    failures: list[BaseException] = []

    def work(n: int) -> None:
        ledger = ledgers[n]
        dev = default_developer(ledger).id
        start.wait()
        try:
            for i in range(per_thread):
                with ledger.write() as conn:
                    trail.record(ledger, conn, dev, f"t{n}", metadata={"i": i})
        except BaseException as exc:  # pragma: no cover - reported below
            failures.append(exc)

    pool = [threading.Thread(target=work, args=(n,)) for n in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join(120)
    assert not failures
    commits = group.commits - before_commits
    assert group.members - before_members == threads * per_thread
    assert 1 <= commits <= threads * per_thread
    for n in range(threads):
        assert _count(path, f"t{n}") == per_thread
    with Ledger(path, create=False) as ledger:
        verify_chain(ledger, default_developer(ledger).id)
    for ledger in ledgers:
        ledger.close()


WRITER = textwrap.dedent("""
    import sys, threading
    from grantex_local import Ledger
    from grantex_local.audit import trail
    from grantex_local.developers import default_developer
    path, me, threads, count = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    def work(n):
        with Ledger(path, create=False) as ledger:
            dev = default_developer(ledger).id
            for i in range(count):
                with ledger.write() as conn:
                    trail.record(ledger, conn, dev, "proc", metadata={"p": me, "t": n, "i": i})
    pool = [threading.Thread(target=work, args=(n,)) for n in range(threads)]
    [t.start() for t in pool]
    [t.join() for t in pool]
    print("done", me)
""")


def test_batches_of_several_processes_make_one_chain(path: Path) -> None:
    """Each process groups its own writers; SQLite's write lock orders the processes' batches,
    and the chain comes out whole."""
    procs = [subprocess.Popen([sys.executable, "-c", WRITER, str(path), str(p), "4", "25"],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for p in range(4)]
    for proc in procs:
        out, err = proc.communicate(timeout=180)
        assert proc.returncode == 0, err
        assert out.startswith("done")
    assert _count(path, "proc") == 4 * 4 * 25
    with Ledger(path, create=False) as ledger:
        verify_chain(ledger, default_developer(ledger).id)
        written = [json.loads(r[0])["metadata"] for r in ledger.query(
            "SELECT preimage FROM audit_entries WHERE action = 'proc'")]
        assert sorted((m["p"], m["t"], m["i"]) for m in written) == sorted(
            (str(p), t, i) for p in range(4) for t in range(4) for i in range(25)), \
            "every write exactly once"


def test_one_batch_four_presenting_one_code(path: Path) -> None:
    """Sixteen exchanges gathered in one batch, four of them with the same code: exactly one of
    the four wins, the three losers fail alone, and the batch's twelve other exchanges stand."""
    from grantex_local import Grantex
    from grantex_local import tokens as tokens_module

    gx = Grantex(path, create=False)
    agent = gx.agents.register(name="batch", scopes=["calendar:read"])
    codes = [gx.authorize(agent_id=agent.id, user_id=f"user_{i}", scopes=["calendar:read"]).code
             for i in range(13)]
    dev = gx.developer_id
    grants_before = gx.ledger.query_one("SELECT count(*) FROM grants")[0]
    gx.close()

    def exchange(code: str | None) -> Callable[[Ledger, sqlite3.Connection], None]:
        def body(ledger: Ledger, conn: sqlite3.Connection) -> None:
            assert code is not None
            tokens_module.exchange(ledger, dev, code=code, agent_id=agent.id)
        return body

    shared = codes[12]
    bodies = {f"same.{i}": exchange(shared) for i in range(4)}
    bodies.update({f"own.{i}": exchange(codes[i + 1]) for i in range(11)})
    batch = Batch(path)
    batch.run(exchange(codes[0]), bodies)

    assert batch.group_commits[1] - batch.group_commits[0] == 1
    same = [batch.results[f"same.{i}"] for i in range(4)]
    assert same.count(True) == 1
    losers = [r for r in same if r is not True]
    assert all(isinstance(r, errors.InvalidCode) for r in losers), losers
    assert batch.results["leader"] is True
    assert all(batch.results[f"own.{i}"] is True for i in range(11))
    with Ledger(path, create=False) as ledger:
        assert ledger.query_one("SELECT count(*) FROM grants")[0] == grants_before + 13
        assert ledger.query_one("SELECT count(*) FROM tokens")[0] == grants_before + 13
        verify_chain(ledger, default_developer(ledger).id)
