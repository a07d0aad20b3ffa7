"""Scopes: the grammar, the standard registry, and the coverage rule (PROTOCOL §4, amended).

A scope is any RFC 6749 §3.3 scope-token: 1-256 printable ASCII characters other
than space, ``"`` and ``\\``. Plain scopes (``read``, ``admin``, ``tool.run``) are
legal Grantex and OAuth scopes, and the hosted service, its conformance suite and
its examples use them, so refusing them made every core conformance test fail.

Coverage is what delegation and required-scope checks use. Only a scope of the
structured form ``resource:action[:constraint]`` (two or three non-empty parts)
attenuates: a child is covered by a parent when resource and action are equal and
the child's constraint is no wider. Any other scope carries no structure we could
reason about, so it is covered only by itself; that can never widen authority.
Every exact match is covered, so this is a superset of the reference's string
equality.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TypeAlias

from .errors import InvalidScope

# RFC 6749 §3.3: scope-token = 1*( %x21 / %x23-5B / %x5D-7E ).
_TOKEN_CHAR = re.compile(r"[\x21\x23-\x5b\x5d-\x7e]")
# What the grammar before the amendment let into a ledger or a signed token: it also allowed
# '"' and '\' inside a structured scope. Held scopes are read with this, so old ledgers and the
# tokens they issued keep working; new input gets the RFC grammar.
_STORED_CHAR = re.compile(r"[\x21-\x7e]")
_MAX = re.compile(r"max_([0-9]{1,18})")
MAX_SCOPES = 100
MAX_SCOPE_LENGTH = 256


@dataclass(frozen=True, slots=True)
class Scope:
    """A structured scope ``resource:action[:constraint]``: the only kind that attenuates."""

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


@dataclass(frozen=True, slots=True)
class PlainScope:
    """Any other scope-token (``read``, ``tool.run``, ``a:b:c:d``): it means only itself."""

    name: str

    def __str__(self) -> str:
        return self.name

    @property
    def max_amount(self) -> None:
        """Never a limit: a plain scope has no constraint to read one from."""
        return None


AnyScope: TypeAlias = Scope | PlainScope


def _bad_char(char: str) -> str:
    if char == " ":
        return "a space"
    if char in "\"\\":
        return f"the character {char}"
    return f"the character U+{ord(char):04X}"


def parse_scope(text: object, *, stored: bool = False) -> AnyScope:
    """Parse one scope-token; structured when it has the form, plain otherwise.

    ``stored`` is for scopes already in a ledger or a signed token, written under the grammar
    before the amendment (which let ``"`` and ``\\`` through); new input never sets it.
    """
    if not isinstance(text, str):
        raise InvalidScope(f"scope must be a string, not {type(text).__name__}")
    if not text:
        raise InvalidScope("a scope must not be empty")
    if len(text) > MAX_SCOPE_LENGTH:
        raise InvalidScope(f"scope is longer than {MAX_SCOPE_LENGTH} characters")
    allowed = _STORED_CHAR if stored else _TOKEN_CHAR
    for index, char in enumerate(text):
        if not allowed.fullmatch(char):
            raise InvalidScope(
                f"scope {text!r} has {_bad_char(char)} at position {index + 1}; a scope is 1-"
                f"{MAX_SCOPE_LENGTH} printable ASCII characters other than space, '\"' and '\\'"
            )
    parts = text.split(":")
    if len(parts) in (2, 3) and all(parts):
        return Scope(parts[0], parts[1], parts[2] if len(parts) == 3 else None)
    return PlainScope(text)


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


def covers(parent: AnyScope, child: AnyScope) -> bool:
    """Does ``parent`` allow everything ``child`` allows?

    A plain scope on either side means exact match only: a plain scope never covers a
    structured one, and no structured scope covers a plain one.
    """
    if isinstance(parent, PlainScope) or isinstance(child, PlainScope):
        return parent == child
    if parent.resource != child.resource or parent.action != child.action:
        return False
    if parent.constraint is None or parent.constraint == child.constraint:
        return True
    parent_max, child_max = parent.max_amount, child.max_amount
    return parent_max is not None and child_max is not None and child_max <= parent_max


def uncovered(requested: Iterable[str], held: Iterable[str]) -> list[str]:
    """The requested scopes that no held scope covers (empty: all covered).

    Both sides are read as stored scopes: callers validate new input with
    :func:`normalize_scopes` first, and what is held was written by an older grammar perhaps.
    """
    held_parsed = [parse_scope(h, stored=True) for h in held]
    return [
        r for r in requested
        if not any(covers(h, parse_scope(r, stored=True)) for h in held_parsed)
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
    """A human-readable description; consent screens show this, never the raw string.

    A plain scope's meaning belongs to the app that defined it, so the sentence names it and
    says plainly that nothing describes it, rather than guessing what ``admin`` allows.
    """
    if scope in STANDARD_SCOPES:
        return STANDARD_SCOPES[scope]
    parsed = parse_scope(scope, stored=True)
    if isinstance(parsed, PlainScope):
        return f"Do whatever the scope '{parsed.name}' permits (no description is registered for it)"
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
