"""Prefixed ULID identifiers (PROTOCOL §1).

python-ulid's generator is monotonic within a process and millisecond, which
the protocol requires so that ids sort in creation order.
"""

from __future__ import annotations

import contextlib
import random
import secrets
from collections.abc import Iterator

from ulid import ULIDGenerator

_generator = ULIDGenerator()

PREFIXES = {
    "agent": "ag_",
    "grant": "grnt_",
    "token": "tok_",
    "refresh": "ref_",
    "auth_request": "areq_",
    "audit": "alog_",
    "developer": "dev_",
    "policy": "pol_",
    "api_key": "key_",
}


def new_id(kind: str) -> str:
    """A fresh id of ``kind`` (a key of :data:`PREFIXES`).

    Always stamped with the real time, even when the ledger runs on a moved
    clock: ids must sort in creation order, and one generator fed two clocks
    would lose its monotonicity.
    """
    ulid = _generator.generate()
    return PREFIXES[kind] + str(ulid)


def new_secret(prefix: str = "") -> str:
    """An unguessable bearer secret (256 bits) for codes and API keys."""
    return prefix + secrets.token_urlsafe(32)


def looks_like(kind: str, value: object) -> bool:
    """Cheap shape check used to give a clear error before touching the ledger."""
    prefix = PREFIXES[kind]
    return isinstance(value, str) and value.startswith(prefix) and len(value) == len(prefix) + 26


@contextlib.contextmanager
def deterministic(seed: int, start_ms: int) -> Iterator[None]:
    """Make ids reproducible (fixture data for snapshot tests and seeded demos).

    Ids come from a clock that starts at ``start_ms`` and ticks one millisecond
    per id, with randomness from ``random.Random(seed)``. Never for real use:
    the ids are guessable. Secrets (codes, refresh tokens, keys) stay random.
    """
    global _generator
    rng = random.Random(seed)
    tick = iter(range(start_ms, start_ms + 10**9))
    saved = _generator
    _generator = ULIDGenerator(clock=lambda: next(tick), randomness=lambda _ts: rng.randbytes(10))
    try:
        yield
    finally:
        _generator = saved
