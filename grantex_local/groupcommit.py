"""Group commit: concurrent writers in one process share one transaction and one fsync.

Why: a durable commit (WAL, ``synchronous=FULL``) costs an fsync, about half a millisecond here,
whatever it carries, and SQLite lets one transaction write at a time. Writers that queue on the
file lock each pay their own fsync, and SQLite's busy handler makes them sleep in steps of
milliseconds while they wait. So the writers of one process that find a commit in flight gather
into the next transaction instead:

- the first to arrive (the *leader*) opens ``BEGIN IMMEDIATE`` on its own connection once the
  previous batch is durable; those who arrive meanwhile join its batch;
- each member's body runs in turn on that connection inside its own ``SAVEPOINT``: a body that
  raises is rolled back to its savepoint and fails alone, the others' work stays;
- when the leader's body is done the batch closes to newcomers (they form the next one), the
  leader waits for the members that joined, and commits once; each member returns only after
  that commit, so a write that returned is as durable as before.

The audit chain stays one chain: each body reads the chain head inside the shared transaction, so
it sees the entries of the bodies before it, and bodies run one at a time, in commit order.
Across processes nothing changes: each process's batch is one ``BEGIN IMMEDIATE`` transaction, and
SQLite's write lock orders batches of different processes (CLI, TUI, server workers) as it
ordered single writes.

Members are the writers of one process on one file, whichever ``Ledger`` object they use (the
server keeps one per thread): the group is found by the file's identity. A thread inside a body
that opens another write on the same file joins its own body, as a nested ``write()`` does.

This module is pure: it knows sqlite3 connections and threads, not ledgers.
"""

from __future__ import annotations

import os
import sqlite3
import threading
import weakref
from collections.abc import Callable

MAX_BATCH = 128
"""Members one transaction takes at most: the leader waits for every member before it commits,
so an unbounded batch under steady load would keep the first writer waiting without end."""

_SAVEPOINT = "gx_member"


class BatchFailed(Exception):
    """The shared transaction was lost (rolled back by SQLite, or its BEGIN or COMMIT failed):
    nothing this member wrote in it was kept. ``cause`` is the sqlite3 error, when there was one."""

    def __init__(self, message: str, cause: BaseException | None = None) -> None:
        super().__init__(message)
        self.cause = cause


class _Batch:
    """One shared transaction and the members in it.

    Waiting is on events, one wake per waiter: a condition shared by every writer would wake
    them all at each member's turn, and with sixteen writers those wakes (each taking the GIL)
    cost more than the fsync saved."""

    __slots__ = ("bodies_done", "conn", "failure", "finished", "members", "open", "turn")

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn
        self.turn = threading.Lock()  # one body at a time on the connection
        self.members = 1  # joined and not yet done with their body (the leader counts)
        self.open = True  # newcomers may still join
        self.bodies_done = threading.Event()  # closed, and every member's body has ended
        self.finished = threading.Event()  # committed or failed: members may return
        self.failure: BatchFailed | None = None


class Member:
    """One writer's place in a batch: :meth:`CommitGroup.join` gives it, after which the caller
    owns the connection until :meth:`leave`."""

    __slots__ = ("batch", "group", "leader")

    def __init__(self, group: CommitGroup, batch: _Batch, leader: bool) -> None:
        self.group = group
        self.batch = batch
        self.leader = leader

    @property
    def conn(self) -> sqlite3.Connection:
        return self.batch.conn

    def begin_body(self) -> None:
        """Open this member's savepoint; raises the batch's failure when the transaction is gone."""
        if self.batch.failure is not None:
            raise self.batch.failure
        if not self.batch.conn.in_transaction:
            self.batch.failure = BatchFailed("the shared write transaction was rolled back")
            raise self.batch.failure
        self.batch.conn.execute(f"SAVEPOINT {_SAVEPOINT}")
        self.group._local.batch = self.batch

    def end_body(self, ok: bool) -> None:
        """Keep (``ok``) or undo this member's work; the connection stays in the transaction.

        Raises BatchFailed when the undo found the whole transaction gone (SQLite rolls back
        everything on some errors, a full disk among them): then nothing of the batch is kept."""
        self.group._local.batch = None
        conn = self.batch.conn
        try:
            if not ok:
                conn.execute(f"ROLLBACK TO {_SAVEPOINT}")
            conn.execute(f"RELEASE {_SAVEPOINT}")
        except sqlite3.Error as exc:
            if not conn.in_transaction:
                self.batch.failure = BatchFailed("the shared write transaction was rolled back", exc)
                raise self.batch.failure from exc
            raise
        if not conn.in_transaction:
            self.batch.failure = BatchFailed("the shared write transaction was rolled back")
            raise self.batch.failure

    def leave(self, wrote: bool) -> None:
        """Give the connection to the next member; return once the batch is durable.

        The leader commits here, after every member that joined is done. ``wrote`` is False for
        a member whose body failed (nothing of it is in the batch): it need not wait for the
        commit, unless it is the leader, who must commit the others' work."""
        group, batch = self.group, self.batch
        group._local.batch = None
        with group._lock:
            if self.leader:
                batch.open = False
                if group._open is batch:
                    group._open = None
            batch.members -= 1
            if not batch.open and batch.members == 0:
                batch.bodies_done.set()
        batch.turn.release()
        if self.leader:
            self._commit()
        elif wrote:
            batch.finished.wait()
        if wrote and batch.failure is not None:
            raise batch.failure

    def _commit(self) -> None:
        group, batch = self.group, self.batch
        batch.bodies_done.wait()
        conn = batch.conn
        try:
            if batch.failure is None:
                if not conn.in_transaction:
                    batch.failure = BatchFailed("the shared write transaction was rolled back")
                else:
                    try:
                        conn.execute("COMMIT")
                    except sqlite3.Error as exc:
                        batch.failure = BatchFailed(f"the commit failed: {exc}", exc)
            if batch.failure is not None and conn.in_transaction:
                try:
                    conn.execute("ROLLBACK")
                except sqlite3.Error:
                    pass
        finally:
            with group._lock:
                group.commits += 1
            batch.finished.set()


class CommitGroup:
    """The writers of one process on one ledger file."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._open: _Batch | None = None  # accepting members
        self._tail: _Batch | None = None  # the batch begun last: the next one waits for it
        self._local = threading.local()
        self.commits = 0  # batches finished: a generation for caches (see LedgerFile.stamp)
        self.members = 0  # writers ever joined: with ``commits``, how much was grouped

    def waiting(self) -> int:
        """Members in the batch that is still open to newcomers (0 when none is): what a test
        or a diagnostic can watch to see writers gather."""
        with self._lock:
            return self._open.members if self._open is not None else 0

    def current(self) -> sqlite3.Connection | None:
        """The shared connection when this thread is running a body in this group, else None."""
        batch: _Batch | None = getattr(self._local, "batch", None)
        return batch.conn if batch is not None else None

    def join(self, conn: sqlite3.Connection, begin: Callable[[sqlite3.Connection], None]) -> Member:
        """Wait for this writer's turn in a batch, joining the open one or leading a new one on
        ``conn`` (``begin`` opens its transaction). Raises what ``begin`` raised, or BatchFailed
        when the batch this writer joined could not begin."""
        with self._lock:
            self.members += 1
            batch = self._open
            if batch is not None and batch.members < MAX_BATCH:
                batch.members += 1
                leader = False
                previous = None
            else:
                batch = _Batch(conn)
                batch.turn.acquire()
                self._open = batch
                leader = True
                previous, self._tail = self._tail, batch
        member = Member(self, batch, leader)
        if not leader:
            batch.turn.acquire()
            if batch.failure is not None:
                with self._lock:
                    batch.members -= 1
                    if not batch.open and batch.members == 0:
                        batch.bodies_done.set()
                batch.turn.release()
                raise batch.failure
            return member
        if previous is not None:
            previous.finished.wait()  # one transaction at a time: newcomers gather meanwhile
        try:
            begin(conn)
        except BaseException as exc:
            with self._lock:
                batch.failure = BatchFailed(f"the write transaction could not begin: {exc}", exc)
                batch.open = False
                if self._open is batch:
                    self._open = None
                batch.members -= 1
                if batch.members == 0:
                    batch.bodies_done.set()
            batch.finished.set()
            batch.turn.release()
            raise
        return member


_groups: weakref.WeakValueDictionary[tuple[int, int, int], CommitGroup] = (
    weakref.WeakValueDictionary())
_groups_lock = threading.Lock()


def group_for(path: str) -> CommitGroup:
    """The group of this process's writers on the file at ``path`` (which must exist).

    Keyed by the process and the file's identity (device, inode), not its name: two spellings of
    one path share a group, and a file replaced under the same name gets a new one. A forked child
    gets groups of its own (its parent's threads and transactions did not come with it)."""
    st = os.stat(path)
    key = (os.getpid(), st.st_dev, st.st_ino)
    with _groups_lock:
        group = _groups.get(key)
        if group is None:
            group = CommitGroup()
            _groups[key] = group
        return group


def _forget_after_fork() -> None:
    global _groups_lock
    _groups_lock = threading.Lock()  # it may have been held by a thread that did not come along


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_after_fork)
