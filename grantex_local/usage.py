"""Usage counts per developer and UTC day (SDK ``client.usage``, SDK-SURFACE §11).

The hosted service meters requests in separate counters; a local ledger keeps no counters, and
adding a write to every request would make reads (online verification above all) pay for a
lock they do not need. The counts are therefore read from what the ledger already records and
can never lose or inflate: the audit trail. It is append-only, hash-chained, and actions under
``grantex.`` can only be written by the ledger itself (clients' own entries may not use that
prefix), so a client cannot make its usage look larger or smaller than it was.

What each number counts, for one developer and one UTC day:

- ``authorizations``: authorization requests started (``grantex.authorization.requested``),
  however they ended (pending, approved, denied by policy) and whichever face started them
  (HTTP, the CLI, the TUI or the library: they all act on the same ledger).
- ``tokenExchanges``: authorization codes exchanged for a grant token (``grantex.grant.issued``).
  Refreshes and delegations are not exchanges, as in the hosted service.
- ``verifications``: always 0. Verifying a token (offline, or online through
  ``/v1/tokens/verify`` and ``/v1/grants/verify``) is a read and leaves no trace in the ledger,
  by design; the answer says so with ``verificationsCounted: false`` rather than inventing a
  number.
- ``totalRequests``: the sum of the three, as in the hosted service.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

from . import errors

if TYPE_CHECKING:
    from .ledger import LedgerFile

DEFAULT_DAYS = 30
"""History length when the caller names none (the hosted service's default)."""
MAX_DAYS = 90
"""Longest history; a longer request is capped, as the hosted service does, and the answer's
``days`` says how many were given."""

AUTHORIZATIONS = "grantex.authorization.requested"
TOKEN_EXCHANGES = "grantex.grant.issued"
_DAY_SECONDS = 86400


def utc_day(ts: float) -> str:
    """``YYYY-MM-DD`` of an epoch time, in UTC (the audit trail's timestamps are UTC)."""
    return time.strftime("%Y-%m-%d", time.gmtime(ts))


@dataclass(frozen=True)
class DayUsage:
    """One UTC day's counts (see the module docstring for what each counts)."""

    date: str
    token_exchanges: int = 0
    authorizations: int = 0
    verifications: int = 0

    @property
    def total_requests(self) -> int:
        return self.token_exchanges + self.authorizations + self.verifications

    def counts(self) -> dict[str, object]:
        return {"tokenExchanges": self.token_exchanges, "authorizations": self.authorizations,
                "verifications": self.verifications, "totalRequests": self.total_requests,
                "verificationsCounted": False}


@dataclass(frozen=True)
class Usage:
    """Today's usage: ``GET /v1/usage``."""

    developer_id: str
    today: DayUsage

    def to_dict(self) -> dict[str, object]:
        return {"developerId": self.developer_id, "period": self.today.date, **self.today.counts()}


@dataclass(frozen=True)
class UsageHistory:
    """One entry per UTC day of the window, today first, days without activity included (a
    gap in a chart should mean "nothing happened", not "no data")."""

    developer_id: str
    days: int
    entries: tuple[DayUsage, ...]

    def to_dict(self) -> dict[str, object]:
        return {"developerId": self.developer_id, "days": self.days,
                "entries": [{"date": e.date, **e.counts()} for e in self.entries]}


def check_days(days: object) -> int:
    """The history length to use: ``None`` is the default, more than :data:`MAX_DAYS` is capped,
    anything that is not a positive whole number is the caller's mistake."""
    if days is None:
        return DEFAULT_DAYS
    if isinstance(days, bool) or not isinstance(days, int):
        raise errors.InvalidInput("days must be a whole number of days")
    if days < 1:
        raise errors.InvalidInput(f"days must be at least 1, not {days}")
    return min(days, MAX_DAYS)


def _daily(ledger: LedgerFile, developer_id: str, first: str, last: str) -> dict[str, DayUsage]:
    """Counts for the days ``first``..``last`` (inclusive) that had any activity.

    ISO timestamps sort as text, so ``>= first`` and ``< last + 'U'`` (after every
    ``last + 'T...'``) select whole days through the (developer_id, timestamp) index.
    """
    rows = ledger.query(
        "SELECT substr(timestamp, 1, 10) AS day, action, count(*) AS n FROM audit_entries "
        "WHERE developer_id = ? AND timestamp >= ? AND timestamp < ? AND action IN (?, ?) "
        "GROUP BY day, action",
        (developer_id, first, last + "U", AUTHORIZATIONS, TOKEN_EXCHANGES),
    )
    found: dict[str, dict[str, int]] = {}
    for row in rows:
        found.setdefault(row["day"], {})[row["action"]] = int(row["n"])
    return {day: DayUsage(day, token_exchanges=n.get(TOKEN_EXCHANGES, 0),
                          authorizations=n.get(AUTHORIZATIONS, 0))
            for day, n in found.items()}


def current(ledger: LedgerFile, developer_id: str) -> Usage:
    """Today's (UTC, by the ledger's clock) usage of one developer."""
    today = utc_day(ledger.now())
    return Usage(developer_id, _daily(ledger, developer_id, today, today).get(today, DayUsage(today)))


def history(ledger: LedgerFile, developer_id: str, days: int | None = None) -> UsageHistory:
    """The last ``days`` UTC days (today included) of one developer, newest first."""
    count = check_days(days)
    now = ledger.now()
    dates = [utc_day(now - i * _DAY_SECONDS) for i in range(count)]
    found = _daily(ledger, developer_id, dates[-1], dates[0])
    return UsageHistory(developer_id, count, tuple(found.get(d, DayUsage(d)) for d in dates))
