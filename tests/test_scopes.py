"""Scope parsing, the registry's descriptions, and the coverage (attenuation) rule."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from grantex_local import InvalidScope, describe_scope
from grantex_local.scopes import STANDARD_SCOPES, PlainScope, covers, normalize_scopes, parse_scope, uncovered


@pytest.mark.parametrize(
    ("text", "parts"),
    [("calendar:read", ("calendar", "read", None)),
     ("payments:initiate:max_500", ("payments", "initiate", "max_500")),
     ("com.stripe.charges:create:max_5000", ("com.stripe.charges", "create", "max_5000")),
     ("payments:mpp:inference", ("payments", "mpp", "inference"))],
)
def test_parse(text: str, parts: tuple[str, str, str | None]) -> None:
    scope = parse_scope(text)
    assert (scope.resource, scope.action, scope.constraint) == parts
    assert str(scope) == text


@pytest.mark.parametrize("text", ["", "a b:c", "a:b\t", "a:b\n", "é:read", 7, None, "x" * 300 + ":read",
                                  'a"b:c', "a:b\\c", "a:b\x7f"])
def test_parse_rejects(text: object) -> None:
    with pytest.raises(InvalidScope):
        parse_scope(text)


@pytest.mark.parametrize("text", ["read", "a:", ":b", "a::b", "a:b:", "a:b:c:d"])
def test_other_scope_tokens_are_plain(text: str) -> None:
    """Refused before issue 11; now legal RFC 6749 scope-tokens, matched only exactly."""
    assert parse_scope(text) == PlainScope(text)


def test_normalize_keeps_order_and_drops_duplicates() -> None:
    assert normalize_scopes(["b:x", "a:y", "b:x"]) == ["b:x", "a:y"]
    with pytest.raises(InvalidScope):
        normalize_scopes([])
    with pytest.raises(InvalidScope):
        normalize_scopes("a:b")


@pytest.mark.parametrize(
    ("parent", "child", "expected"),
    [("payments:initiate", "payments:initiate:max_5", True),
     ("payments:initiate:max_500", "payments:initiate:max_500", True),
     ("payments:initiate:max_500", "payments:initiate:max_499", True),
     ("payments:initiate:max_500", "payments:initiate:max_501", False),
     ("payments:initiate:max_500", "payments:initiate", False),
     ("payments:initiate:max_500", "payments:initiate:eur", False),
     ("payments:initiate:eur", "payments:initiate:eur", True),
     ("payments:initiate", "payments:read", False),
     ("files:read", "email:read", False)],
)
def test_coverage_rule(parent: str, child: str, expected: bool) -> None:
    assert covers(parse_scope(parent), parse_scope(child)) is expected


@given(st.integers(0, 10**12), st.integers(0, 10**12))
def test_max_n_coverage_is_numeric(n: int, m: int) -> None:
    assert covers(parse_scope(f"a:b:max_{n}"), parse_scope(f"a:b:max_{m}")) is (m <= n)


_part = st.text(alphabet=st.characters(min_codepoint=33, max_codepoint=126, blacklist_characters=':"\\'),
                min_size=1, max_size=12)


@given(_part, _part, st.none() | _part)
def test_every_exact_match_is_covered(resource: str, action: str, constraint: str | None) -> None:
    text = f"{resource}:{action}" + (f":{constraint}" if constraint else "")
    assert uncovered([text], [text]) == []


def test_every_standard_scope_has_a_description_and_others_get_one() -> None:
    for scope, text in STANDARD_SCOPES.items():
        assert describe_scope(scope) == text and text
    assert describe_scope("payments:initiate:max_500") == \
        "Initiate payments up to 500 in the account's base currency"
    assert "stripe" in describe_scope("com.stripe.charges:create:max_5000")
    assert ":" not in describe_scope("flights:book")
