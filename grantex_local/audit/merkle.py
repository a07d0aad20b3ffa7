"""RFC 6962 Merkle trees over audit-entry hashes: roots, inclusion proofs, incremental nodes.

Only perfect subtrees are ever stored (``(level, index)`` → hash): appending
leaf ``i`` stores it at level 0 and then one parent per trailing 1-bit of
``i``, so an append costs O(1) amortised and never reads the log. The root of
any size, and any inclusion proof, is folded from those stored subtrees.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence

NodeGetter = Callable[[int, int], bytes]
"""(level, index) → hash of the perfect subtree covering leaves [index·2^level, (index+1)·2^level)."""


def leaf_hash(entry_hash_hex: str) -> bytes:
    return hashlib.sha256(b"\x00" + bytes.fromhex(entry_hash_hex)).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(b"\x01" + left + right).digest()


def new_nodes(index: int, leaf: bytes, get: NodeGetter) -> list[tuple[int, int, bytes]]:
    """The perfect-subtree nodes completed by appending ``leaf`` at ``index``."""
    out = [(0, index, leaf)]
    level, current, h = 0, index, leaf
    while current & 1:
        h = node_hash(get(level, current - 1), h)
        level, current = level + 1, current >> 1
        out.append((level, current, h))
    return out


def _largest_power_below(n: int) -> int:
    return 1 << ((n - 1).bit_length() - 1)


def range_hash(start: int, end: int, get: NodeGetter) -> bytes:
    """MTH(D[start:end]) where ``start`` is aligned as RFC 6962's recursion makes it."""
    size = end - start
    if size <= 0:
        raise ValueError("empty range")
    if size & (size - 1) == 0 and start % size == 0:
        return get(size.bit_length() - 1, start // size)
    k = _largest_power_below(size)
    return node_hash(range_hash(start, start + k, get), range_hash(start + k, end, get))


def root(size: int, get: NodeGetter) -> bytes:
    """The tree head of the first ``size`` leaves (SHA-256 of nothing for an empty log)."""
    if size == 0:
        return hashlib.sha256(b"").digest()
    return range_hash(0, size, get)


def inclusion_proof(index: int, size: int, get: NodeGetter) -> list[bytes]:
    """PATH(index, D[0:size]) of RFC 6962 §2.1.1, leaf-side first."""
    if not 0 <= index < size:
        raise ValueError("index outside the tree")

    def path(m: int, start: int, end: int) -> list[bytes]:
        n = end - start
        if n == 1:
            return []
        k = _largest_power_below(n)
        if m < k:
            return [*path(m, start, start + k), range_hash(start + k, end, get)]
        return [*path(m - k, start + k, end), range_hash(start, start + k, get)]

    return path(index, 0, size)


def verify_inclusion(
    index: int, size: int, leaf: bytes, proof: Sequence[bytes], expected_root: bytes
) -> bool:
    """RFC 9162 §2.1.3.2: does ``proof`` place ``leaf`` at ``index`` under ``expected_root``?"""
    if not 0 <= index < size:
        return False
    fn, sn, r = index, size - 1, leaf
    for p in proof:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            if not fn & 1:
                while fn and not fn & 1:
                    fn >>= 1
                    sn >>= 1
        else:
            r = node_hash(r, p)
        fn >>= 1
        sn >>= 1
    return sn == 0 and r == expected_root


def root_of(leaves: Sequence[bytes]) -> bytes:
    """Reference MTH straight from the definition (tests and small exports)."""
    if not leaves:
        return hashlib.sha256(b"").digest()
    if len(leaves) == 1:
        return leaves[0]
    k = _largest_power_below(len(leaves))
    return node_hash(root_of(leaves[:k]), root_of(leaves[k:]))


class Frontier:
    """The right edge of a growing tree: O(log n) memory, for streaming verification."""

    def __init__(self) -> None:
        self.size = 0
        self._stack: list[bytes] = []

    @classmethod
    def at(cls, size: int, get: NodeGetter) -> Frontier:
        """The frontier of the first ``size`` leaves, from their perfect subtrees."""
        frontier = cls()
        start = 0
        for level in range(size.bit_length() - 1, -1, -1):
            if size & (1 << level):
                frontier._stack.append(get(level, start >> level))
                start += 1 << level
        frontier.size = size
        return frontier

    def append(self, leaf: bytes) -> None:
        h, i = leaf, self.size
        while i & 1:
            h = node_hash(self._stack.pop(), h)
            i >>= 1
        self._stack.append(h)
        self.size += 1

    def root(self) -> bytes:
        if not self._stack:
            return hashlib.sha256(b"").digest()
        h = self._stack[-1]
        for left in reversed(self._stack[:-1]):
            h = node_hash(left, h)
        return h
