"""The server's own small parts, without HTTP: the per-thread ledger pool, the rate limiter, and
the consent page's helpers."""

from __future__ import annotations

import gc
import threading
from pathlib import Path

import pytest

from grantex_local import Ledger
from grantex_local.server.consent import _with_query, csrf_token, humanize_duration
from grantex_local.server.run import is_loopback, url_host
from grantex_local.server.state import LedgerPool, RateLimiter


def test_each_thread_gets_its_own_ledger_and_retired_threads_free_theirs(tmp_path: Path) -> None:
    path = tmp_path / "grantex.db"
    Ledger(path).close()
    pool = LedgerPool(str(path))
    main = pool.get()
    assert pool.get() is main
    seen: list[int] = []

    def worker() -> None:
        ledger = pool.get()
        seen.append(id(ledger))
        assert ledger is not main and ledger.issuer

    threads = [threading.Thread(target=worker) for _ in range(5)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    del t
    gc.collect()
    assert len(seen) == 5 and pool.open_count() == 1  # only the main thread's is still open
    pool.close_all()  # at shutdown: a thread that has no ledger yet cannot open one any more
    errors: list[BaseException] = []

    def late() -> None:
        try:
            pool.get()
        except RuntimeError as exc:
            errors.append(exc)

    thread = threading.Thread(target=late)
    thread.start()
    thread.join()
    assert len(errors) == 1 and "shutting down" in str(errors[0])


def test_rate_limiter_fixed_window() -> None:
    now = [1000.0]
    limiter = RateLimiter(2, 60, clock=lambda: now[0])
    first = limiter.hit("k")
    assert (first.allowed, first.remaining, first.reset) == (True, 1, 60)
    now[0] += 1
    assert limiter.hit("k").remaining == 0
    now[0] += 1.5
    refused = limiter.hit("k")
    assert (refused.allowed, refused.remaining, refused.reset) == (False, 0, 58)
    assert refused.headers()["Retry-After"] == "58"
    assert limiter.hit("other").allowed  # per key
    now[0] += 58
    again = limiter.hit("k")
    assert again.allowed and again.remaining == 1 and again.reset == 60
    with pytest.raises(ValueError):
        RateLimiter(0)
    with pytest.raises(ValueError):
        RateLimiter(10, 3601)


def test_consent_helpers() -> None:
    assert humanize_duration("24h") == "24 hours" and humanize_duration("1d") == "1 day"
    assert humanize_duration("90s") == "90 seconds" and humanize_duration("odd") == "odd"
    assert _with_query("https://app.test/cb?x=1", {"code": "c d", "state": "s"}) == \
        "https://app.test/cb?x=1&code=c+d&state=s"
    assert _with_query("https://app.test/cb", {"error": "access_denied"}) == \
        "https://app.test/cb?error=access_denied"
    secret = b"s" * 32
    assert csrf_token(secret, "session", "areq_1") != csrf_token(secret, "session", "areq_2")
    assert csrf_token(secret, "session", "areq_1") != csrf_token(b"t" * 32, "session", "areq_1")


def test_url_hosts() -> None:
    assert url_host("0.0.0.0") == "127.0.0.1" and url_host("::1") == "[::1]"
    assert url_host("localhost") == "localhost"
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost")
    assert not is_loopback("0.0.0.0") and not is_loopback("example.test")
