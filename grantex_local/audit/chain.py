"""Walking the chain: the one verifier the CLI, the TUI, exports and notebooks all call.

It streams rows (constant memory), recomputes every hash from the stored
bytes, checks every link, and stops at the first break with its seq and the
reason. With a checkpoint kept outside the file it also recomputes the Merkle
root over the first ``size`` entries, which is what catches a deleted tail or
a chain rewritten and re-hashed from scratch.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ..errors import ChainBroken
from . import merkle
from .note import Checkpoint

if TYPE_CHECKING:
    from ..ledger import Ledger

Row = tuple[int, str, str]
"""(seq, preimage text, stored hash)."""

_TAIL = '"timestamp":"'
_UNSET = object()


@dataclass(frozen=True)
class ChainReport:
    developer_id: str
    entries: int
    head_hash: str | None
    root_hash: str | None
    checkpoint_size: int | None = None

    def to_dict(self) -> dict[str, object]:
        return {"developerId": self.developer_id, "entries": self.entries, "headHash": self.head_hash,
                "rootHash": self.root_hash, "verifiedAgainstCheckpointSize": self.checkpoint_size}


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
    it = iter(rows)
    current = next(it, None)
    while current is not None:
        following = next(it, None)
        yield current, following
        current = following


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
    checkpoint needs it; the report's root is then None.
    """
    frontier = frontier if frontier is not None else merkle.Frontier()
    pending = sorted([*checkpoints, *([checkpoint] if checkpoint is not None else [])],
                     key=lambda c: c.size)
    largest = pending[-1] if pending else None
    for empty in [c for c in pending if c.size == 0]:
        if empty.root_hash != merkle.root_of([]):
            raise ChainBroken(1, "rewritten", "the checkpoint's root does not match an empty log")
    pending = [c for c in pending if c.size > 0]
    with_root = with_root or bool(pending)
    leaf_hash, append = merkle.leaf_hash, frontier.append
    prev: tuple[int, str, str, str] | None = after  # seq, hash, id, timestamp
    before_prev: object = _UNSET  # the link of the entry before prev (None is a real value)
    count = frontier.size
    for (seq, text, stored_hash), following in _with_next(rows):
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
            if prev is not None and before_prev is not _UNSET and prev_hash == before_prev:
                raise ChainBroken(prev[0], "inserted",
                                  f"entry {prev[0]} is not part of the chain (entry {seq} skips it)")
            raise ChainBroken(seq, "link_broken", "prevHash does not match the previous entry's hash")
        if ordered_ids and prev is not None and entry_id <= prev[2]:
            raise ChainBroken(seq, "order_changed", "entry ids are out of order")
        if prev is not None and timestamp < prev[3]:
            raise ChainBroken(seq, "timestamp_backwards", f"{timestamp} is before {prev[3]}")
        if with_root:
            append(leaf_hash(stored_hash))
        count += 1
        while pending and pending[0].size == count:
            if frontier.root() != pending.pop(0).root_hash:
                raise ChainBroken(seq, "rewritten",
                                  f"the first {seq} entries do not match the checkpoint's Merkle root")
        before_prev = prev[1] if prev else None
        prev = (seq, stored_hash, entry_id, timestamp)
        if progress is not None and count % 10_000 == 0:
            progress(count)
    if largest is not None and count < largest.size:
        raise ChainBroken(count + 1, "tail_deleted",
                          f"the checkpoint commits to {largest.size} entries, the log has {count}")
    if progress is not None:
        progress(count)
    return ChainReport(developer_id, count, prev[1] if prev else None,
                       frontier.root().hex() if with_root else None,
                       largest.size if largest is not None else None)


def ledger_rows(ledger: Ledger, developer_id: str, start_seq: int = 1) -> sqlite3.Cursor:
    """The chain's rows in seq order, streamed by a cursor (close it when done)."""
    return ledger.conn.execute(
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
    """Verify one developer's chain in the ledger; raises :class:`ChainBroken`."""
    from ..ledger import translate

    rows = ledger_rows(ledger, developer_id)
    try:
        with ledger.read():
            return verify_rows(rows, developer_id=developer_id, checkpoint=checkpoint, progress=progress,
                               with_root=checkpoint is not None)
    except sqlite3.Error as exc:
        raise translate(exc, ledger.path) from None
    finally:
        rows.close()
