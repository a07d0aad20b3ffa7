"""Walking the chain: the one verifier the CLI, the TUI, exports and notebooks all call.

It streams rows (constant memory), recomputes every hash from the stored
bytes, checks every link, and stops at the first break with its seq and the
reason. Against a checkpoint it also recomputes the Merkle root over the
first ``size`` entries, which is what catches a deleted tail or a chain
rewritten and re-hashed from scratch. :func:`verify_chain` always does so
for the signed checkpoints stored in the file (a tail cut with raw sqlite3
under one of them fails); only a checkpoint kept outside the file also
survives a rewrite of the whole file, stored checkpoints and key included.

Rows from a cursor or a list are checked a batch at a time with C-level
string operations (see :meth:`_Walk.batch`); a batch that does not pass in
full, for whatever reason, is walked again row by row by the reference checks
(:meth:`_Walk.step`), which find the break and name it. The batch checks only
ever accept rows the reference checks accept, so the two paths cannot disagree.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, replace
from itertools import islice, repeat
from operator import getitem, le, lt
from typing import TYPE_CHECKING, cast

from ..errors import ChainBroken, LedgerError
from . import merkle
from .note import Checkpoint
from .stored import stored_checkpoints

if TYPE_CHECKING:
    from ..founding import Ledger

Row = tuple[int, str, str]
"""(seq, preimage text, stored hash)."""

_TAIL = '"timestamp":"'
_UNSET = object()
_PROGRESS_EVERY = 10_000
_BATCH = 2_000
"""Rows checked together: a divisor of the progress interval, so progress is reported at the same rows."""

# The layout this ledger writes, with "\0" where the values are: the entry id ("alog_" + ULID, 31
# characters) at the start, and before the status (whose 9 last characters are "success"}" or its
# like) the time stamp (24 characters, from clock.iso) and the previous entry's hash (64).
_HEAD = '{"id":"' + "\0" * 31 + '",'
_TAIL_LAYOUT = _TAIL + "\0" * 24 + '","prevHash":"' + "\0" * 64 + '","status":"'
_HEAD_SLICE = slice(0, len(_HEAD))
_TAIL_SLICE = slice(-9 - len(_TAIL_LAYOUT), -9)
_ID_SLICE = slice(7, 38)
_STAMP_SLICE = slice(-9 - len(_TAIL_LAYOUT) + len(_TAIL), -9 - len(_TAIL_LAYOUT) + len(_TAIL) + 24)
_LINK_SLICE = slice(-9 - 12 - 64, -9 - 12)
# operator.getitem, typed for how it is used here: a slice of a str is a str (typeshed's overload
# says Sequence[str]). Kept over str.__getitem__, which is twice as slow under map().
_cut = cast("Callable[[str, slice], str]", getitem)
_HEAD_LITERALS = [(i, c) for i, c in enumerate(_HEAD) if c != "\0"]
_TAIL_LITERALS = [(i, c) for i, c in enumerate(_TAIL_LAYOUT) if c != "\0"]


@dataclass(frozen=True)
class ChainReport:
    developer_id: str
    entries: int
    head_hash: str | None
    root_hash: str | None
    checkpoint_size: int | None = None
    stored_checkpoints: int = 0
    """How many checkpoints stored in the ledger file the chain was checked against."""

    def to_dict(self) -> dict[str, object]:
        return {"developerId": self.developer_id, "entries": self.entries, "headHash": self.head_hash,
                "rootHash": self.root_hash, "verifiedAgainstCheckpointSize": self.checkpoint_size,
                "storedCheckpointsChecked": self.stored_checkpoints}


def _linkage(text: str) -> tuple[str, str, str | None]:
    """(entry id, timestamp, prevHash) of a preimage without parsing the metadata.

    The common shape (written by this ledger) is sliced directly; anything
    else goes through the JSON parser below.
    """
    cut = text.rfind(_TAIL)  # the top-level field is the last one: metadata comes before it
    if cut > 0 and text.startswith('{"id":"'):
        stamp_end = text.find('"', cut + 13)
        id_end = text.find('"', 7)
        rest = text[stamp_end:stamp_end + 81]  # '","prevHash":"' + 64 hex + '","'
        if rest.startswith('","prevHash":null,') and "\\" not in text[7:id_end]:
            return text[7:id_end], text[cut + 13:stamp_end], None
        if rest.startswith('","prevHash":"') and rest.endswith('","') and "\\" not in text[7:id_end]:
            return text[7:id_end], text[cut + 13:stamp_end], rest[14:78]
    try:
        tail = json.loads("{" + text[cut:]) if cut > 0 else json.loads(text)
        if text.startswith('{"id":"') and (end := text.find('"', 7)) > 0 and "\\" not in text[7:end]:
            entry_id = text[7:end]
        else:
            entry_id = json.loads(text)["id"]
        stamp, link = tail["timestamp"], tail["prevHash"]
    except (ValueError, KeyError, TypeError):
        return "", "", "unparseable"
    if not isinstance(entry_id, str) or not isinstance(stamp, str) or not isinstance(link, str | None):
        return "", "", "unparseable"
    return entry_id, stamp, link


def _with_next(rows: Iterable[Row]) -> Iterator[tuple[Row, Row | None]]:
    """Each row with the one after it. A row that is None is a bad row, not the end of the chain."""
    it = iter(rows)
    ahead = list(islice(it, 1))
    while ahead:
        current = ahead[0]
        ahead = list(islice(it, 1))
        yield current, ahead[0] if ahead else None


class _Walk:
    """Where a walk along one chain stands, and the checks that move it on."""

    def __init__(self, *, after: tuple[int, str, str, str] | None, frontier: merkle.Frontier,
                 pending: list[Checkpoint], with_root: bool, ordered_ids: bool,
                 progress: Callable[[int], None] | None) -> None:
        """``with_root``: the caller wants the whole tree's root; the tree is grown anyway
        while a checkpoint is pending, and no further."""
        self.prev = after  # seq, hash, id, timestamp of the last entry checked
        self.before_prev: object = _UNSET  # the link of the entry before prev (None is a real value)
        self.count = frontier.size
        self.frontier = frontier
        self.pending = pending
        self.with_root = with_root or bool(pending)
        self.keep_root = with_root
        self.ordered_ids = ordered_ids
        self.progress = progress

    def step(self, row: Row, following: Row | None) -> None:
        """The reference checks of one entry: raises :class:`ChainBroken` at a break."""
        seq, text, stored_hash = row
        prev = self.prev
        expected = prev[0] + 1 if prev else 1
        if seq != expected:
            raise ChainBroken(expected, "seq_gap", f"expected seq {expected}, found {seq}")
        if hashlib.sha256(text.encode("utf-8")).hexdigest() != stored_hash:
            raise ChainBroken(seq, "content_changed", "the stored bytes no longer hash to the entry's hash")
        entry_id, timestamp, prev_hash = _linkage(text)
        if prev_hash != (prev[1] if prev else None):
            if following is not None and prev_hash == following[2]:
                raise ChainBroken(seq, "order_changed",
                                  f"entry {seq} links to the entry stored after it (entries swapped)")
            if prev is not None and self.before_prev is not _UNSET and prev_hash == self.before_prev:
                raise ChainBroken(prev[0], "inserted",
                                  f"entry {prev[0]} is not part of the chain (entry {seq} skips it)")
            raise ChainBroken(seq, "link_broken", "prevHash does not match the previous entry's hash")
        if self.ordered_ids and prev is not None and entry_id <= prev[2]:
            raise ChainBroken(seq, "order_changed", "entry ids are out of order")
        if prev is not None and timestamp < prev[3]:
            raise ChainBroken(seq, "timestamp_backwards", f"{timestamp} is before {prev[3]}")
        self.before_prev = prev[1] if prev else None
        self.prev = (seq, stored_hash, entry_id, timestamp)
        self._counted(seq, stored_hash)

    def _counted(self, seq: int, stored_hash: str) -> None:
        """Grow the tree by one checked entry; check the checkpoints it completes; report progress."""
        if self.with_root:
            self.frontier.append(merkle.leaf_hash(stored_hash))
        self.count += 1
        pending = self.pending
        while pending and pending[0].size == self.count:
            if self.frontier.root() != pending.pop(0).root_hash:
                raise ChainBroken(seq, "rewritten",
                                  f"the first {seq} entries do not match the checkpoint's Merkle root")
            if not pending and not self.keep_root:
                self.with_root = False  # the tree was only needed up to the last checkpoint
        if self.progress is not None and self.count % _PROGRESS_EVERY == 0:
            self.progress(self.count)

    def batch(self, rows: list[Row]) -> bool:
        """Check ``rows`` (the entries after ``prev``) at C speed; False when the reference must.

        Everything :meth:`step` checks is checked for every row, as whole-batch operations over
        tuples and joined strings. Values are read at fixed offsets, which only holds for the
        ledger's own layout, so the layout is proved first, character by character: the entry id
        is followed by the first quote of the text, and the tail's ``"timestamp":"`` is the last
        one in the text (no quote in the stamp, a hex hash, ``","status":"`` after it and 9
        characters left: too few to hold another). ``_linkage`` then reads exactly these values.
        """
        prev = self.prev
        if not rows:
            return True
        if prev is None:
            return False  # the first entry links to null: rare enough for the reference walk
        try:
            checked = self._batch_checks(rows, prev)
        except Exception:  # rows (or a trusted head) of a shape nobody writes: the reference decides
            return False
        if checked is None:
            return False
        seqs, hashes, ids, stamps = checked
        self.before_prev = hashes[-2] if len(hashes) > 1 else prev[1]
        self.prev = (seqs[-1], hashes[-1], ids[-1], stamps[-1])
        if self.with_root:  # also whenever a checkpoint is pending
            for seq, stored_hash in zip(seqs, hashes, strict=True):
                self._counted(seq, stored_hash)
            return True
        before, self.count = self.count, self.count + len(rows)
        if self.progress is not None:
            for mark in range(before - before % _PROGRESS_EVERY + _PROGRESS_EVERY, self.count + 1,
                              _PROGRESS_EVERY):
                self.progress(mark)
        return True

    def _batch_checks(self, rows: list[Row], prev: tuple[int, str, str, str]
                      ) -> tuple[Sequence[int], Sequence[str], list[str], list[str]] | None:
        """(seqs, hashes, ids, stamps) when every row passes every check, else None."""
        n = len(rows)
        seqs, texts, hashes = zip(*rows, strict=True)
        if seqs != tuple(range(prev[0] + 1, prev[0] + 1 + n)):
            return None
        sha256 = hashlib.sha256
        if [sha256(text.encode("utf-8")).hexdigest() for text in texts] != list(hashes):
            return None
        heads = "".join(map(_cut, texts, repeat(_HEAD_SLICE)))
        tails = "".join(map(_cut, texts, repeat(_TAIL_SLICE)))
        if len(heads) != len(_HEAD) * n or len(tails) != len(_TAIL_LAYOUT) * n:
            return None
        for joined, width, literals in ((heads, len(_HEAD), _HEAD_LITERALS),
                                        (tails, len(_TAIL_LAYOUT), _TAIL_LITERALS)):
            for offset, char in literals:
                if joined[offset::width] != char * n:
                    return None
        ids = list(map(_cut, texts, repeat(_ID_SLICE)))
        stamps = list(map(_cut, texts, repeat(_STAMP_SLICE)))
        all_ids, all_stamps = "".join(ids), "".join(stamps)
        if '"' in all_ids or "\\" in all_ids or '"' in all_stamps or '"' in prev[1]:
            return None
        # Each entry links to the hash before it: the first to prev's, the others to the batch's own.
        if "".join(map(_cut, texts, repeat(_LINK_SLICE))) != prev[1] + "".join(hashes[:-1]):
            return None
        if self.ordered_ids and not (prev[2] < ids[0] and all(map(lt, ids, islice(ids, 1, None)))):
            return None
        if not (prev[3] <= stamps[0] and all(map(le, stamps, islice(stamps, 1, None)))):
            return None
        return seqs, hashes, ids, stamps


def verify_rows(
    rows: Iterable[Row],
    *,
    developer_id: str = "",
    checkpoint: Checkpoint | None = None,
    progress: Callable[[int], None] | None = None,
    after: tuple[int, str, str, str] | None = None,
    checkpoints: Sequence[Checkpoint] = (),
    ordered_ids: bool = True,
    frontier: merkle.Frontier | None = None,
    with_root: bool = True,
) -> ChainReport:
    """Verify one chain given in seq order; raises :class:`ChainBroken` at the first break.

    ``checkpoint`` / ``checkpoints``: the chain must match each one's root at
    its size (one pass whatever their number). ``after`` (seq, hash, id,
    timestamp of a trusted head) checks only a continuation of the chain; the
    Merkle root reported is meaningless unless ``frontier`` (the trusted tree of
    the entries up to ``after``) is given too. ``ordered_ids=False`` skips the
    id-order check, for logs whose ids are not monotonic (the hosted service's).
    ``with_root=False`` skips the Merkle tree (two SHA-256 per entry) when no
    checkpoint needs it, and past the last checkpoint when one does; the
    report's root is then None.

    A cursor or a list is read up to two batches ahead, which costs them
    nothing. Any other iterable is pulled one row ahead only, as it always
    was: a generator that writes or refuses rows as it yields them sees the
    same order of events whatever the verifier finds.
    """
    frontier = frontier if frontier is not None else merkle.Frontier()
    pending = sorted([*checkpoints, *([checkpoint] if checkpoint is not None else [])],
                     key=lambda c: c.size)
    largest = pending[-1] if pending else None
    for empty in [c for c in pending if c.size == 0]:
        if empty.root_hash != merkle.root_of([]):
            raise ChainBroken(1, "rewritten", "the checkpoint's root does not match an empty log")
    pending = [c for c in pending if c.size > 0]
    walk = _Walk(after=after, frontier=frontier, pending=pending, with_root=with_root,
                 ordered_ids=ordered_ids, progress=progress)
    if isinstance(rows, sqlite3.Cursor | list | tuple):
        _walk_batches(walk, rows)
    else:
        for row, following in _with_next(rows):
            walk.step(row, following)
    count = walk.count
    if largest is not None and count < largest.size:
        raise ChainBroken(count + 1, "tail_deleted",
                          f"the checkpoint commits to {largest.size} entries, the log has {count}")
    if progress is not None:
        progress(count)
    prev = walk.prev
    return ChainReport(developer_id, count, prev[1] if prev else None,
                       frontier.root().hex() if walk.keep_root else None,
                       largest.size if largest is not None else None)


def _walk_batches(walk: _Walk, rows: Iterable[Row]) -> None:
    """Each batch through :meth:`_Walk.batch`, or row by row when it does not pass whole."""
    it = iter(rows)
    batch = list(islice(it, _BATCH))
    while batch:
        upcoming = list(islice(it, _BATCH))
        start = 0
        if walk.prev is None:  # the chain's first entry
            walk.step(batch[0], batch[1] if len(batch) > 1 else upcoming[0] if upcoming else None)
            start = 1
        if not walk.batch(batch[start:] if start else batch):
            for i in range(start, len(batch)):
                following = batch[i + 1] if i + 1 < len(batch) else upcoming[0] if upcoming else None
                walk.step(batch[i], following)
        batch = upcoming


def ledger_rows(ledger: Ledger, developer_id: str, start_seq: int = 1) -> sqlite3.Cursor:
    """The chain's rows in seq order, streamed by a cursor (close it when done).

    Plain tuples, not the connection's ``sqlite3.Row``: a million of those cost a third of a walk.
    """
    cursor = ledger.conn.cursor()
    cursor.row_factory = None
    return cursor.execute(
        "SELECT seq, preimage, hash FROM audit_entries WHERE developer_id = ? AND seq >= ? ORDER BY seq",
        (developer_id, start_seq))


def chain_developers(ledger: Ledger) -> list[str]:
    """Every developer that has a chain (or could have one)."""
    return [r[0] for r in ledger.query("SELECT id FROM developers ORDER BY created_at, id")]


def verify_chain(
    ledger: Ledger,
    developer_id: str,
    *,
    checkpoint: Checkpoint | None = None,
    progress: Callable[[int], None] | None = None,
) -> ChainReport:
    """Verify one developer's chain in the ledger, against every checkpoint stored for it too.

    Raises :class:`ChainBroken`, naming the stored checkpoint when one is what the
    chain fails (a tail cut under it, a rewrite) or when its own signature fails
    (reason ``checkpoint_invalid``). ``checkpoint`` is one kept outside the file
    (already signature-checked), the only kind that also catches a rewrite of the
    whole file; the report's ``checkpoint_size`` is its size.
    """
    from ..ledger import translate

    rows = ledger_rows(ledger, developer_id)
    try:
        with ledger.read():
            stored = stored_checkpoints(ledger, developer_id)
            try:
                report = verify_rows(rows, developer_id=developer_id, checkpoint=checkpoint,
                                     checkpoints=[c for _, c in stored], progress=progress,
                                     with_root=checkpoint is not None)
            except ChainBroken as exc:
                raise _naming_the_checkpoint(exc, stored, checkpoint) from None
    except (sqlite3.Error, LedgerError) as exc:
        # A row whose bytes are not UTF-8 (only ever written behind the ledger's back) stops the
        # driver with an error that names no seq: find the entry, and report it as the break.
        from .trail import NOT_UTF8, first_undecodable

        seq = first_undecodable(ledger, developer_id)
        if seq is not None:
            raise ChainBroken(seq, "content_changed", f"entry {seq}: {NOT_UTF8}") from None
        if isinstance(exc, LedgerError):
            raise
        raise translate(exc, ledger.path) from None
    finally:
        rows.close()
    return replace(report, checkpoint_size=checkpoint.size if checkpoint is not None else None,
                   stored_checkpoints=len(stored))


def _naming_the_checkpoint(exc: ChainBroken, stored: Sequence[tuple[str, Checkpoint]],
                           external: Checkpoint | None) -> ChainBroken:
    """The break, saying which stored checkpoint the chain fails (a tail cut, a rewrite)."""
    if exc.reason == "tail_deleted":
        largest = max(stored, key=lambda s: s[1].size, default=None)
        if largest is None or (external is not None and external.size > largest[1].size):
            return exc
        checkpoint_id, cp = largest
        first_missing = exc.seq
        return ChainBroken(first_missing, exc.reason,
                           f"stored checkpoint {checkpoint_id} (signed {cp.timestamp}) commits to {cp.size} "
                           f"entries, the log has {first_missing - 1}: entries {first_missing}.."
                           f"{cp.size} are missing")
    if exc.reason == "rewritten":
        named = [(i, c) for i, c in stored if c.size == 0 and c.root_hash != merkle.root_of([])]
        size = 0 if named else exc.seq
        named = named or [(i, c) for i, c in stored if c.size == size]
        if named and (external is None or external.size != size):
            checkpoint_id, cp = named[0]
            return ChainBroken(exc.seq, exc.reason,
                               f"{exc.detail} (stored checkpoint {checkpoint_id}, signed {cp.timestamp})")
    return exc
