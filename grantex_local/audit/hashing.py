"""The audit-entry hash of PROTOCOL §10, byte for byte as the reference computes it.

The reference hashes a JavaScript ``JSON.stringify`` of the entry fields in a
fixed order, with the metadata in canonical form (keys sorted by UTF-16 code
units, numbers written as JavaScript writes a double). Python's ``json``
differs in both places (``10.0`` vs ``10``, ``1e-07`` vs ``1e-7``, code-point
key order), so the text is built here explicitly and checked against the
shared vectors.

Where the two agree byte for byte, the C encoder is used instead (see
:func:`_flat_canonical`): a flat object of strings, safe integers, booleans
and nulls, with no character beyond U+FFFF and no lone surrogate anywhere, is
most metadata, and appends spend much of their time here.
"""

from __future__ import annotations

import functools
import hashlib
import json
import math
import re
from collections.abc import Callable, Mapping
from json.encoder import c_make_encoder, encode_basestring  # type: ignore[attr-defined]
from typing import Any

from ..errors import InvalidInput

_SURROGATE = re.compile("[\ud800-\udfff]")
_BEYOND_BMP = re.compile("[\ud800-\udfff\U00010000-\U0010ffff]")
"""Characters whose UTF-16 order differs from code-point order, or that JavaScript spells otherwise."""
_SAFE_INTEGER = 2**53

FIELD_ORDER = ("id", "agentId", "agentDid", "grantId", "principalId", "developerId", "action",
               "metadata", "timestamp", "prevHash", "status")
_MAX_DEPTH = 64


@functools.lru_cache(maxsize=16_384)
def js_string(value: str) -> str:
    """``JSON.stringify`` of a string: escapes as JavaScript does, non-ASCII kept raw.

    ``encode_basestring`` is the C escaper behind ``json.dumps(ensure_ascii=False)``;
    ids, DIDs and actions repeat from entry to entry, hence the cache.
    """
    if not value.isascii() and _SURROGATE.search(value):
        value = js_code_points(value)
        text: str = encode_basestring(value)
        # Lone surrogates: JavaScript writes them as \\udxxx escapes.
        return "".join(f"\\u{ord(c):04x}" if 0xD800 <= ord(c) <= 0xDFFF else c for c in text)
    return str(encode_basestring(value))


def js_code_points(value: str) -> str:
    """Join surrogate pairs into one character, as a JavaScript string holds them.

    Python can hold "\\ud83d\\ude00" as two code points; to JavaScript it is one
    emoji, and the reference hashes the emoji's UTF-8 bytes.
    """
    return value.encode("utf-16-be", "surrogatepass").decode("utf-16-be", "surrogatepass")


def js_number(value: int | float) -> str:
    """A number as JavaScript's ``Number.prototype.toString`` writes the double."""
    if isinstance(value, bool):
        raise InvalidInput("booleans are not numbers")
    if isinstance(value, int):
        if abs(value) < 2**53:
            return str(value)
        try:
            value = float(value)  # JavaScript only has doubles
        except OverflowError:
            raise InvalidInput("metadata numbers must fit in a double (JavaScript's number)") from None
    if not math.isfinite(value):
        raise InvalidInput("metadata numbers must be finite (no NaN or Infinity)")
    if value == 0:
        return "0"
    sign = "-" if value < 0 else ""
    mantissa, _, exp_text = repr(abs(value)).partition("e")
    int_part, _, frac = mantissa.partition(".")
    all_digits = int_part + frac
    point = len(int_part) + (int(exp_text) if exp_text else 0)
    leading = len(all_digits) - len(all_digits.lstrip("0"))
    digits = all_digits.strip("0")
    n = point - leading  # value = 0.<digits> * 10**n
    k = len(digits)
    if k <= n <= 21:
        body = digits + "0" * (n - k)
    elif 0 < n <= 21:
        body = digits[:n] + "." + digits[n:]
    elif -6 < n <= 0:
        body = "0." + "0" * (-n) + digits
    else:
        e = n - 1
        exponent = f"e{'+' if e >= 0 else '-'}{abs(e)}"
        body = (digits if k == 1 else digits[0] + "." + digits[1:]) + exponent
    return sign + body


def _refuse(value: object) -> object:
    raise TypeError(type(value).__name__)


def _c_encoder() -> Callable[[dict[str, Any], int], list[str]] | None:
    """The C encoder with canonical separators and unsorted keys (the caller sorts), or None.

    ``json.JSONEncoder.encode`` builds this object on every call, which is half
    its cost on a small object; it is built once here. Without the C
    accelerator (or if its signature ever changes) the fast path is skipped.
    """
    if c_make_encoder is None:
        return None
    try:
        encode: Callable[[dict[str, Any], int], list[str]] = c_make_encoder(
            None, _refuse, encode_basestring, None, ":", ",", False, False, False)
        if "".join(encode({"b": "\u00e9", "a": [1, None, True]}, 0)) != '{"b":"\u00e9","a":[1,null,true]}':
            return None
    except TypeError:
        return None
    return encode


_encode = _c_encoder()


def _flat_canonical(value: dict[Any, Any]) -> tuple[str, dict[str, Any]] | None:
    """(canonical JSON, a copy as ``json.loads`` would give it back) of a flat object, else None.

    For string keys and values that are strings, integers under 2^53,
    booleans, null or lists of strings (scope lists), the C encoder writes exactly what :func:`canonical_json`
    writes (both escape with ``encode_basestring``; Python and JavaScript agree
    on such integers), once the keys are sorted and as long as no character
    lies beyond U+FFFF (UTF-16 order, surrogate pairs) or is a lone surrogate.
    Anything else returns None and takes the general path.
    """
    if _encode is None:
        return None
    lists = False
    for key, item in value.items():
        if type(key) is not str:
            return None
        kind = type(item)
        if kind is str or item is None or kind is bool:
            continue
        if kind is list or kind is tuple:
            if not all(type(x) is str for x in item):
                return None
            lists = True
            continue
        if kind is not int or not -_SAFE_INTEGER < item < _SAFE_INTEGER:
            return None
    if lists:  # the copy owns its lists, as json.loads would give them
        value = {k: list(v) if type(v) is list or type(v) is tuple else v for k, v in value.items()}
    ordered = dict(sorted(value.items()))
    text = "".join(_encode(ordered, 0))
    if not text.isascii() and _BEYOND_BMP.search(text):
        return None
    return text, ordered


def canonical_object(value: Mapping[str, Any]) -> tuple[str, dict[str, Any]]:
    """(canonical JSON of an object, the object as a JavaScript reader of that text sees it).

    The second item is a fresh copy, with keys in canonical order: what
    ``json.loads`` of the text returns, without parsing it when the fast path
    applies.
    """
    if type(value) is dict and (flat := _flat_canonical(value)) is not None:
        return flat
    text = canonical_json(value)
    parsed: dict[str, Any] = json.loads(text)
    return text, parsed


def canonical_json(value: Any, _depth: int = 0) -> str:
    """Canonical JSON: sorted keys (UTF-16 order), no whitespace, JavaScript scalars."""
    if type(value) is dict and _depth < _MAX_DEPTH and (flat := _flat_canonical(value)) is not None:
        return flat[0]
    if _depth > _MAX_DEPTH:
        raise InvalidInput(f"metadata is nested deeper than {_MAX_DEPTH} levels")
    if value is None:
        return "null"
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, str):
        return js_string(value)
    if isinstance(value, int | float):
        return js_number(value)
    if isinstance(value, Mapping):
        if not all(isinstance(key, str) for key in value):
            raise InvalidInput("metadata object keys must be strings")
        if not all(k.isascii() for k in value) and any(_SURROGATE.search(k) for k in value):
            joined = {js_code_points(k) for k in value}
            if len(joined) != len(value):
                raise InvalidInput("metadata has two spellings of the same key")
        # Code-point order is UTF-16 order unless a key has a character beyond U+FFFF.
        keys = sorted(value) if all(k.isascii() for k in value) else sorted(value, key=_utf16_key)
        return "{" + ",".join(f"{js_string(k)}:{canonical_json(value[k], _depth + 1)}" for k in keys) + "}"
    if isinstance(value, list | tuple):
        return "[" + ",".join(canonical_json(v, _depth + 1) for v in value) + "]"
    raise InvalidInput(f"metadata holds a value JSON cannot carry ({type(value).__name__})")


def _utf16_key(key: object) -> bytes:
    if not isinstance(key, str):
        raise InvalidInput("metadata object keys must be strings")
    return key.encode("utf-16-be", "surrogatepass")


def _field(fields: Mapping[str, Any], name: str) -> str:
    value = fields[name]
    if value is None:
        return "null"
    if not isinstance(value, str):
        raise InvalidInput(f"audit field {name} must be a string")
    return js_string(value)


def preimage_text(fields: Mapping[str, Any], metadata: Any, metadata_text: str | None = None) -> str:
    """The exact text whose UTF-8 bytes are hashed for one entry (keys in FIELD_ORDER).

    ``metadata_text`` is ``canonical_json(metadata)`` when the caller has it already.
    """
    meta = metadata_text if metadata_text is not None else canonical_json(metadata)
    f = fields
    return (
        f'{{"id":{_field(f, "id")},"agentId":{_field(f, "agentId")},"agentDid":{_field(f, "agentDid")},'
        f'"grantId":{_field(f, "grantId")},"principalId":{_field(f, "principalId")},'
        f'"developerId":{_field(f, "developerId")},"action":{_field(f, "action")},"metadata":{meta},'
        f'"timestamp":{_field(f, "timestamp")},"prevHash":{_field(f, "prevHash")},'
        f'"status":{_field(f, "status")}}}'
    )


def preimage(fields: Mapping[str, Any], metadata: Any) -> bytes:
    """The exact bytes that are hashed for one entry."""
    return preimage_text(fields, metadata).encode("utf-8")


def entry_hash(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()
