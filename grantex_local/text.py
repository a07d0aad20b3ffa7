"""What text grantex-local accepts, and how it shows text it would not accept today.

Two rules, one for every string and one for what a person reads:

- **Every string that enters the ledger** (names, ids, principal ids, state,
  redirect URIs, audit actions, metadata keys and values...) must be Unicode
  text that any reader can encode: no lone UTF-16 surrogates (valid JSON
  escapes, ``"\\ud800"``, but not UTF-8, so a single stored one once made every
  reader of the audit log fail) and no non-characters (U+FDD0..U+FDEF and
  U+xFFFE/U+xFFFF, which Unicode reserves for a program's own use and says
  never to interchange).
- **Names and descriptions** are shown to people, on the consent screen above
  all, where one agent must never be able to look like another. They also
  refuse control characters (a newline in a name), bidirectional controls (a
  right-to-left override turns ``gpj.exe`` into ``exe.jpg``) and invisible
  format characters (zero-width spaces and joiners, word joiner, BOM): every
  ``Cf`` character, plus the few invisible letters and marks that are not
  ``Cf`` (the Hangul fillers, the combining grapheme joiner).

An error names the field, the character as U+XXXX with its Unicode name, and
its position counted from 1, so the caller can find it in what they sent.
Only new writes are checked: rows already in a ledger keep working, and
readers show them through :func:`escape`.

No imports beyond the standard library's ``re`` and ``unicodedata``: the
command line imports this module on every start.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Mapping

from .errors import InvalidInput

_NONCHARACTERS = "\ufdd0-\ufdef" + "".join(
    f"{chr(plane << 16 | 0xFFFE)}{chr(plane << 16 | 0xFFFF)}" for plane in range(17))
_NOT_INTERCHANGEABLE = re.compile(f"[\ud800-\udfff{_NONCHARACTERS}]")
"""Lone surrogates and non-characters: refused in every field."""

_NAME_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Zl", "Zp"})
"""Controls, format characters (bidi controls and zero-width ones among them), surrogates, and
the line and paragraph separators: refused in names on top of :data:`_NOT_INTERCHANGEABLE`."""
_INVISIBLE = frozenset("\u034f\u115f\u1160\u17b4\u17b5\u3164\uffa0")
"""Invisible characters whose category is not ``Cf``: the combining grapheme joiner, the Hangul
fillers and the Khmer inherent vowels (all Default_Ignorable in Unicode)."""

_CONTROL_NAMES = {0x00: "NULL", 0x09: "CHARACTER TABULATION", 0x0A: "LINE FEED",
                  0x0B: "LINE TABULATION", 0x0C: "FORM FEED", 0x0D: "CARRIAGE RETURN",
                  0x1B: "ESCAPE", 0x7F: "DELETE", 0x85: "NEXT LINE"}
_SHORT_ESCAPES = {"\t": "\\t", "\n": "\\n", "\r": "\\r"}


def is_noncharacter(char: str) -> bool:
    code = ord(char)
    return 0xFDD0 <= code <= 0xFDEF or code & 0xFFFE == 0xFFFE


def describe(char: str) -> str:
    """``U+202E RIGHT-TO-LEFT OVERRIDE``; characters without a name say what they are."""
    code = ord(char)
    label = f"U+{code:04X}"
    if 0xD800 <= code <= 0xDFFF:
        return f"{label} (a lone UTF-16 surrogate, not a character)"
    if is_noncharacter(char):
        return f"{label} (a Unicode non-character)"
    name = unicodedata.name(char, "") or _CONTROL_NAMES.get(code)
    if name:
        return f"{label} {name}"
    return f"{label} (a {'control' if unicodedata.category(char) == 'Cc' else 'nameless'} character)"


def _refused_in_name(char: str) -> bool:
    return (unicodedata.category(char) in _NAME_CATEGORIES or char in _INVISIBLE
            or is_noncharacter(char))


def _paired(value: str, index: int) -> str | None:
    """The character a surrogate pair at ``index`` spells (Python can hold the two halves)."""
    pair = value[index:index + 2] if 0xD800 <= ord(value[index]) <= 0xDBFF else value[index - 1:index + 1]
    if len(pair) == 2 and 0xD800 <= ord(pair[0]) <= 0xDBFF and 0xDC00 <= ord(pair[1]) <= 0xDFFF:
        return pair.encode("utf-16-be", "surrogatepass").decode("utf-16-be")
    return None


def _refuse(field: str, value: str, index: int, why: str = "") -> InvalidInput:
    char = value[index]
    if 0xD800 <= ord(char) <= 0xDFFF and (joined := _paired(value, index)) is not None:
        why = f" (half of a surrogate pair: send the character U+{ord(joined):04X} itself)"
        return InvalidInput(f"{field}: U+{ord(char):04X} at position {index + 1} is not allowed{why}")
    return InvalidInput(f"{field}: {describe(char)} at position {index + 1} is not allowed{why}")


def check_text(value: str, field: str) -> str:
    """``value`` unchanged, or :class:`InvalidInput` for a lone surrogate or a non-character.

    ASCII (most ids and actions) is answered without a scan.
    """
    if not value.isascii() and (bad := _NOT_INTERCHANGEABLE.search(value)) is not None:
        raise _refuse(field, value, bad.start())
    return value


def check_optional_text(value: object, field: str) -> None:
    """:func:`check_text` for a value that may be None or not a string (checked elsewhere)."""
    if isinstance(value, str):
        check_text(value, field)


def check_name(value: str, field: str) -> str:
    """``value`` unchanged, or :class:`InvalidInput` for any character a name may not hold.

    Printable ASCII (most names) is answered without a scan; otherwise each character's
    category is looked up (names are short).
    """
    if value.isascii() and value.isprintable():
        return value
    for index, char in enumerate(value):
        if _refused_in_name(char):
            raise _refuse(field, value, index,
                          " (no control, bidirectional or invisible characters)"
                          if not _NOT_INTERCHANGEABLE.match(char) else "")
    return value


def check_json(value: object, field: str) -> None:
    """:func:`check_text` for every string of a JSON-like value (object keys too), recursively.

    The error names the path to the string, e.g. ``metadata.items[2].note``.
    """
    if isinstance(value, str):
        check_text(value, field)
    elif isinstance(value, Mapping):
        for key, item in value.items():
            if isinstance(key, str):
                check_text(key, f'{field} key "{escape(key)}"')
                check_json(item, f"{field}.{escape(key)}")
            else:
                check_json(item, field)
    elif isinstance(value, list | tuple):
        for position, item in enumerate(value):
            check_json(item, f"{field}[{position}]")


def is_clean(value: object) -> bool:
    """True when every string in ``value`` (any JSON-like value) would pass :func:`check_text`."""
    if isinstance(value, str):
        return value.isascii() or _NOT_INTERCHANGEABLE.search(value) is None
    if isinstance(value, Mapping):
        return all(is_clean(k) and is_clean(v) for k, v in value.items())
    if isinstance(value, list | tuple):
        return all(map(is_clean, value))
    return True


def _escape_char(char: str) -> str:
    code = ord(char)
    if char in _SHORT_ESCAPES:
        return _SHORT_ESCAPES[char]
    if code < 0x100:
        return f"\\x{code:02x}"
    if code < 0x10000:
        return f"\\u{code:04x}"
    return f"\\U{code:08x}"


def escape(value: str) -> str:
    """``value`` as a person may safely see it: every character a name may not hold written
    as a Python-style escape (``\\u202e``, ``\\ud800``, ``\\n``), the rest unchanged.

    Used by the readers (CLI, TUI, exports, pandas) for rows stored before these checks
    existed: the row still shows, and it can no longer pass for something else.
    """
    if value.isprintable() and not _INVISIBLE.intersection(value):
        return value
    return "".join(_escape_char(c) if _refused_in_name(c) else c for c in value)


def escape_surrogates(value: str) -> str:
    """``value`` with lone surrogates written as ``\\udxxx`` and nothing else changed: the least
    change that makes text encodable as UTF-8 (for files and Arrow arrays)."""
    if value.isascii() or _NOT_INTERCHANGEABLE.search(value) is None:
        return value
    return "".join(f"\\u{ord(c):04x}" if 0xD800 <= ord(c) <= 0xDFFF else c for c in value)
