"""How things look: status badges, short ids, times, and the filter mini-language.

Pure functions with no library calls: the data layer decides what is true,
this module only decides how it reads. A status is always colour AND a text
badge, because colour alone fails on monochrome terminals and for colour-blind
users.
"""

from __future__ import annotations

import shlex
from datetime import UTC, datetime

from rich.text import Text

from ..text import escape

STATUS_BADGES: dict[str, tuple[str, str]] = {
    "active": ("ACTIVE", "bold green"),
    "revoked": ("REVOKED", "bold red"),
    "expired": ("EXPIRED", "bold yellow"),
    "suspended": ("AGENT SUSPENDED", "bold magenta"),
    "deleted": ("AGENT DELETED", "bold magenta"),
    "pending": ("PENDING", "bold cyan"),
    "success": ("success", "green"),
    "failure": ("FAILURE", "bold red"),
    "blocked": ("BLOCKED", "bold yellow"),
}

CONFIRM_CHARS = 6
"""How many trailing characters of a grant id the revoke dialog asks for."""


class FilterError(ValueError):
    """A filter the user typed that does not parse."""


def badge(status: str) -> Text:
    """``[REVOKED]`` in red, ``[ACTIVE]`` in green: the text carries the meaning, colour helps."""
    label, style = STATUS_BADGES.get(status, (status.upper(), "bold"))
    return Text(f"[{label}]", style=style)


def status_word(status: str) -> Text:
    label, style = STATUS_BADGES.get(status, (status, ""))
    return Text(label, style=style)


def shown(value: str | None, empty: str = "-") -> str:
    """Stored text as it may be put on screen: a name with a right-to-left override or a
    zero-width character (stored before the ledger refused them), or an audit action with a
    lone surrogate, appears escaped (``\\u202e``), so it cannot pass for another name, break a
    row or stop the terminal from drawing."""
    return escape(value) if value else empty


def short_id(value: str | None, keep: int = CONFIRM_CHARS) -> str:
    """The id's last characters (ULIDs differ at the end; the start is a shared timestamp)."""
    if not value:
        return "-"
    return "…" + value[-keep:] if len(value) > keep + 1 else value


def parse_time(value: str) -> float:
    return datetime.strptime(value, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC).timestamp()


def relative(value: str | None, now: float) -> str:
    """``in 3h 12m`` / ``2d 4h ago`` against the ledger's clock (frozen in tests)."""
    if not value:
        return ""
    try:
        delta = parse_time(value) - now
    except ValueError:
        return ""
    text = duration(abs(delta))
    if text == "now":
        return text
    return f"in {text}" if delta > 0 else f"{text} ago"


def duration(seconds: float) -> str:
    seconds = int(seconds)
    if seconds < 1:
        return "now"
    parts = []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        if seconds >= size:
            parts.append(f"{seconds // size}{unit}")
            seconds %= size
        if len(parts) == 2:
            break
    return " ".join(parts)


def when(value: str | None, now: float) -> str:
    """Absolute stamp and relative time: ``2026-01-01T12:00:00.000Z (in 3h)``."""
    if not value:
        return "-"
    rel = relative(value, now)
    return f"{value} ({rel})" if rel else value


def plural(count: int, word: str, many: str | None = None) -> str:
    return f"{count:,} {word if count == 1 else (many or word + 's')}"


def parse_filter(text: str, keys: tuple[str, ...], *, bare: str | None = None) -> dict[str, str]:
    """``agent=travel-booker status=active`` → ``{"agent": ..., "status": ...}``.

    Values may be quoted (``agent="Travel Booker"``). A word without ``=`` is the
    ``bare`` key's value (the grant tree treats a bare word as an id to find).
    """
    try:
        words = shlex.split(text)
    except ValueError as exc:
        raise FilterError(f"cannot read the filter: {exc}") from None
    out: dict[str, str] = {}
    for word in words:
        key, sep, value = word.partition("=")
        if not sep:
            if bare is None:
                raise FilterError(f"{word!r} is not key=value; keys: {', '.join(keys)}")
            key, value = bare, word
        key = key.strip().lower()
        if key not in keys:
            raise FilterError(f"unknown filter {key!r}; use {', '.join(keys)}")
        if not value:
            raise FilterError(f"{key}= needs a value")
        if key in out:
            raise FilterError(f"{key} is given twice")
        out[key] = value
    return out


def describe_filter(values: dict[str, str]) -> str:
    return " ".join(f"{k}={shlex.quote(v)}" for k, v in values.items())
