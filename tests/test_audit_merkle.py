"""Incremental RFC 6962 trees agree with the definition; inclusion proofs check and break."""

from __future__ import annotations

import hashlib

import pytest

from grantex_local.audit import merkle


def _build(n: int) -> tuple[list[bytes], dict[tuple[int, int], bytes]]:
    leaves = [merkle.leaf_hash(hashlib.sha256(str(i).encode()).hexdigest()) for i in range(n)]
    nodes: dict[tuple[int, int], bytes] = {}
    for i, leaf in enumerate(leaves):
        for level, index, h in merkle.new_nodes(i, leaf, lambda lv, ix: nodes[(lv, ix)]):
            nodes[(level, index)] = h
    return leaves, nodes


def test_incremental_roots_match_the_definition_at_every_size() -> None:
    leaves, nodes = _build(70)
    get = lambda lv, ix: nodes[(lv, ix)]  # noqa: E731
    for size in range(71):
        assert merkle.root(size, get) == merkle.root_of(leaves[:size])
    assert len(nodes) < 2 * len(leaves)


@pytest.mark.parametrize("size", [1, 2, 3, 5, 7, 8, 13, 64, 70])
def test_inclusion_proofs_verify_and_any_change_fails(size: int) -> None:
    leaves, nodes = _build(size)
    get = lambda lv, ix: nodes[(lv, ix)]  # noqa: E731
    head = merkle.root(size, get)
    for index in range(size):
        proof = merkle.inclusion_proof(index, size, get)
        assert merkle.verify_inclusion(index, size, leaves[index], proof, head)
        if size > 1:
            assert not merkle.verify_inclusion((index + 1) % size, size, leaves[index], proof, head)
        for j in range(len(proof)):
            bad = list(proof)
            bad[j] = bytes([bad[j][0] ^ 1]) + bad[j][1:]
            assert not merkle.verify_inclusion(index, size, leaves[index], bad, head)


def test_frontier_root_matches_at_every_size() -> None:
    leaves, _ = _build(40)
    frontier = merkle.Frontier()
    assert frontier.root() == merkle.root_of([])
    for i, leaf in enumerate(leaves):
        frontier.append(leaf)
        assert frontier.root() == merkle.root_of(leaves[: i + 1])
