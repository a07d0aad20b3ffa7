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
    "event": "evt_",
    "webhook": "wh_",
    "webhook_delivery": "whd_",
    "anomaly": "anm_",
    "scim_token": "scimtok_",
    "scim_user": "scimuser_",
    "sso_connection": "sso_",
    "sso_state": "ssostate_",
    "budget": "bdg_",
    "budget_transaction": "btx_",
    "consent_bundle": "cbdl_",
    "decision_request": "dreq_",
    "decision_grant": "dgnt_",
    "vault_credential": "vault_",
}


_CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
_PAIRS = tuple(a + b for a in _CROCKFORD for b in _CROCKFORD)
"""Ten bits to two base-32 characters: a ULID's 26 characters are 13 pairs (two zero bits, then 128)."""

_heads: dict[str, tuple[int, str]] = {}
"""Per prefix, the last id's value without its low 20 bits and its spelling (prefix + 22 characters)."""


def new_id(kind: str) -> str:
    """A fresh id of ``kind`` (a key of :data:`PREFIXES`).

    Always stamped with the real time, even when the ledger runs on a moved
    clock: ids must sort in creation order, and one generator fed two clocks
    would lose its monotonicity.

    The value comes from python-ulid's monotonic generator; only the spelling
    is done here, by table lookup (the tests hold it to ``str(ULID)`` for any
    value): python-ulid writes the 26 characters one bit-field at a time,
    which was a tenth of a bulk audit append. Ids minted in one millisecond
    differ by one, so all but the last four characters are kept from the
    previous id of the same prefix.
    """
    prefix = PREFIXES[kind]
    n = int.from_bytes(_generator.generate().bytes, "big")
    high, known = n >> 20, _heads.get(prefix)  # one read of the pair: another thread may replace it
    if known is None or known[0] != high:
        known = _heads[prefix] = (high, prefix + "".join(
            [_PAIRS[high >> shift & 1023] for shift in range(100, -10, -10)]))
    return known[1] + _PAIRS[n >> 10 & 1023] + _PAIRS[n & 1023]


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
