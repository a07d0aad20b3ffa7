"""Time in one place, so tests and the demo can move it.

The ledger stores instants as ISO-8601 UTC text with exactly three
millisecond digits (PROTOCOL §1): it sorts as text, reads well in any SQLite
browser and is what the REST API returns. JWT times are integer seconds.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from datetime import datetime

from .errors import InvalidExpiresIn

Clock = Callable[[], float]
"""Returns seconds since the epoch, like :func:`time.time`."""

system_clock: Clock = time.time

_ISO = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\.[0-9]{3}Z")
_EXPIRES_IN = re.compile(r"([0-9]{1,9})([smhd])")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


_last_iso: tuple[int, str] = (-1, "")


def iso(ts: float) -> str:
    """``2026-02-01T12:34:56.789Z`` for an epoch time in seconds.

    The last answer is kept: hot paths (online verification, appends) ask for
    "now" many times within one millisecond.
    """
    global _last_iso
    ms = round(ts * 1000)
    last = _last_iso  # one read of the pair: another thread may replace it
    if last[0] == ms:
        return last[1]
    text = f"{time.strftime('%Y-%m-%dT%H:%M:%S', time.gmtime(ms // 1000))}.{ms % 1000:03d}Z"
    _last_iso = (ms, text)
    return text


def parse_iso(text: str) -> float:
    """The epoch seconds of a time stamp written by :func:`iso`."""
    if not _ISO.fullmatch(text):
        raise ValueError(f"time stamp {text!r} is not of the form 2026-02-01T12:34:56.789Z")
    return datetime.fromisoformat(text).timestamp()


def parse_expires_in(value: object, *, maximum: int) -> int:
    """Seconds in an ``expiresIn`` such as ``"24h"``; refuses 0 and anything over ``maximum``."""
    if not isinstance(value, str) or not (m := _EXPIRES_IN.fullmatch(value)):
        raise InvalidExpiresIn(
            f"expiresIn {value!r} is malformed: use a positive number and a unit s, m, h or d (e.g. '1h')"
        )
    seconds = int(m.group(1)) * _UNIT_SECONDS[m.group(2)]
    if seconds <= 0:
        raise InvalidExpiresIn(f"expiresIn {value!r} must be greater than zero")
    if seconds > maximum:
        raise InvalidExpiresIn(
            f"expiresIn {value!r} is over the maximum of {format_duration(maximum)}"
        )
    return seconds


def format_duration(seconds: int) -> str:
    """The shortest exact ``expiresIn`` spelling of ``seconds``."""
    for unit in ("d", "h", "m"):
        if seconds % _UNIT_SECONDS[unit] == 0:
            return f"{seconds // _UNIT_SECONDS[unit]}{unit}"
    return f"{seconds}s"
