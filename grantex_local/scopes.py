"""Scopes: parsing, the standard registry, and the coverage rule (PROTOCOL §4).

A scope is ``resource:action[:constraint]``. Coverage is what delegation and
required-scope checks use: a child scope is covered by a parent scope when
resource and action are equal and the child's constraint is no wider. Every
exact match is covered, so this is a superset of the reference's string
equality.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from .errors import InvalidScope

# One part: no whitespace, no control characters, no ':'.
_PART = re.compile(r"[^\s:\x00-\x1f\x7f]+")
_MAX = re.compile(r"max_([0-9]{1,18})")
MAX_SCOPES = 100
MAX_SCOPE_LENGTH = 256


@dataclass(frozen=True, slots=True)
class Scope:
    resource: str
    action: str
    constraint: str | None = None

    def __str__(self) -> str:
        base = f"{self.resource}:{self.action}"
        return f"{base}:{self.constraint}" if self.constraint is not None else base

    @property
    def max_amount(self) -> int | None:
        """N of a ``max_N`` constraint, else None."""
        if self.constraint is None:
            return None
        m = _MAX.fullmatch(self.constraint)
        return int(m.group(1)) if m else None


def parse_scope(text: object) -> Scope:
    """Parse one scope string, refusing empty parts, whitespace and control characters."""
    if not isinstance(text, str):
        raise InvalidScope(f"scope must be a string, not {type(text).__name__}")
    if len(text) > MAX_SCOPE_LENGTH:
        raise InvalidScope(f"scope is longer than {MAX_SCOPE_LENGTH} characters")
    if not text.isascii():
        raise InvalidScope(f"scope {text!r} must be ASCII")
    parts = text.split(":")
    if len(parts) not in (2, 3):
        raise InvalidScope(f"scope {text!r} must have the form resource:action[:constraint]")
    for part in parts:
        if not _PART.fullmatch(part):
            raise InvalidScope(
                f"scope {text!r} has an empty part, whitespace or a control character"
            )
    return Scope(parts[0], parts[1], parts[2] if len(parts) == 3 else None)


def normalize_scopes(scopes: object, *, allow_empty: bool = False) -> list[str]:
    """Validate a list of scope strings; keeps order, drops exact duplicates."""
    if isinstance(scopes, str) or not isinstance(scopes, Sequence):
        raise InvalidScope("scopes must be a list of strings")
    if not scopes and not allow_empty:
        raise InvalidScope("at least one scope is required")
    if len(scopes) > MAX_SCOPES:
        raise InvalidScope(f"at most {MAX_SCOPES} scopes may be requested at once")
    out: list[str] = []
    for s in scopes:
        text = str(parse_scope(s))
        if text not in out:
            out.append(text)
    return out


def covers(parent: Scope, child: Scope) -> bool:
    """Does ``parent`` allow everything ``child`` allows?"""
    if parent.resource != child.resource or parent.action != child.action:
        return False
    if parent.constraint is None or parent.constraint == child.constraint:
        return True
    parent_max, child_max = parent.max_amount, child.max_amount
    return parent_max is not None and child_max is not None and child_max <= parent_max


def uncovered(requested: Iterable[str], held: Iterable[str]) -> list[str]:
    """The requested scopes that no held scope covers (empty: all covered)."""
    held_parsed = [parse_scope(h) for h in held]
    return [
        r for r in requested
        if not any(covers(h, parse_scope(r)) for h in held_parsed)
    ]


# The standard registry (SPEC §4.2) with the text a consent screen shows.
STANDARD_SCOPES: dict[str, str] = {
    "calendar:read": "Read calendar events",
    "calendar:write": "Create, modify, and delete calendar events",
    "email:read": "Read email messages",
    "email:send": "Send emails on your behalf",
    "email:delete": "Delete email messages",
    "files:read": "Read files and documents",
    "files:write": "Create and modify files",
    "payments:read": "View payment history and balances",
    "payments:initiate": "Initiate payments of any amount",
    "profile:read": "Read profile and identity information",
    "contacts:read": "Read address book and contacts",
    "payments:mpp:inference": "Pay for AI model inference",
    "payments:mpp:compute": "Pay for compute resources",
    "payments:mpp:data": "Pay for data access",
    "payments:mpp:storage": "Pay for storage",
    "payments:mpp:search": "Pay for search queries",
    "payments:mpp:media": "Pay for media generation or access",
    "payments:mpp:delivery": "Pay for delivery services",
    "payments:mpp:browser": "Pay for browser automation sessions",
    "payments:mpp:general": "Make general machine payments",
}

_ACTION_VERBS = {
    "read": "Read", "write": "Create and modify", "delete": "Delete", "send": "Send",
    "create": "Create", "search": "Search", "book": "Book", "initiate": "Initiate",
    "update": "Update", "list": "List", "cancel": "Cancel", "manage": "Manage",
}


def describe(scope: str) -> str:
    """A human-readable description; consent screens show this, never the raw string."""
    if scope in STANDARD_SCOPES:
        return STANDARD_SCOPES[scope]
    parsed = parse_scope(scope)
    amount = parsed.max_amount
    if parsed.resource == "payments" and parsed.action == "initiate" and amount is not None:
        return f"Initiate payments up to {amount} in the account's base currency"
    verb = _ACTION_VERBS.get(parsed.action, parsed.action.replace("_", " ").capitalize())
    resource = parsed.resource.rsplit(".", 1)[-1].replace("_", " ").replace("-", " ")
    text = f"{verb} {resource}"
    if amount is not None:
        text += f" (up to {amount})"
    elif parsed.constraint is not None:
        text += f" (limited to {parsed.constraint})"
    if "." in parsed.resource:
        text += f" at {parsed.resource.rsplit('.', 1)[0]}"
    return text
