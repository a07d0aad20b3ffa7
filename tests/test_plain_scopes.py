"""Plain scopes (issue 11 item 1): any RFC 6749 scope-token is a scope.

The conformance-style test talks to a real server over loopback HTTP with an API key, as the
protocol's black-box conformance suite does, and checks tokens offline with the official SDK.
The unit tests pin the grammar's boundaries and the coverage rule: a plain scope is covered
only by itself, structured scopes attenuate as before.
"""

from __future__ import annotations

import html
import json
import sqlite3
import warnings
from pathlib import Path

import httpx
import pytest
from cli_helpers import ok
from grantex import GrantexTokenError, VerifyGrantTokenOptions, verify_grant_token
from grantex._verify import clear_jwks_cache
from hypothesis import given
from hypothesis import strategies as st

from grantex_local import Grantex, InvalidScope, Ledger, developers
from grantex_local.scopes import (
    PlainScope,
    Scope,
    covers,
    describe,
    normalize_scopes,
    parse_scope,
    uncovered,
)
from grantex_local.server.testing import running_server

# Every character RFC 6749 §3.3 allows in a scope-token, and nothing else.
TOKEN_CHARS = "".join(chr(c) for c in range(0x21, 0x7F) if chr(c) not in '"\\')


# ── the grammar ──────────────────────────────────────────────────────────────


@pytest.mark.parametrize("text", ["read", "write", "admin", "tool.run", "!", "x" * 256,
                                  TOKEN_CHARS.replace(":", ""),
                                  "a:b:c:d", "a::b", ":read", "read:", ":", "urn:x:y:z:w"])
def test_plain_scope_tokens_are_accepted_as_plain(text: str) -> None:
    parsed = parse_scope(text)
    assert parsed == PlainScope(text) and str(parsed) == text
    assert normalize_scopes([text]) == [text]


@pytest.mark.parametrize(("text", "parts"), [("calendar:read", ("calendar", "read", None)),
                                             ("payments:initiate:max_5", ("payments", "initiate", "max_5")),
                                             ("a.b-c_d:e!:f~", ("a.b-c_d", "e!", "f~")),
                                             (TOKEN_CHARS, (*TOKEN_CHARS.split(":"), None))])
def test_two_or_three_non_empty_parts_stay_structured(text: str, parts: tuple[str, str, str | None]) -> None:
    parsed = parse_scope(text)
    assert isinstance(parsed, Scope) and (parsed.resource, parsed.action, parsed.constraint) == parts


@pytest.mark.parametrize(("text", "named"), [
    ("", "empty"), ("x" * 257, "longer than 256"), ("a b", "a space at position 2"),
    ('a"b', 'the character " at position 2'), ("a\\b", "the character \\ at position 2"),
    ("a\x7fb", "U+007F at position 2"), ("a\x00", "U+0000 at position 2"), ("\tread", "U+0009 at position 1"),
    ("read\n", "U+000A at position 5"), ("é", "U+00E9 at position 1"), ("kalendář:read", "U+00E1"),
    ("read\u00a0", "U+00A0"), ("calendar:read ", "a space at position 14"),
])
def test_the_grammar_refuses_and_says_why(text: str, named: str) -> None:
    with pytest.raises(InvalidScope) as err:
        parse_scope(text)
    assert named in err.value.message
    with pytest.raises(InvalidScope):
        normalize_scopes(["read", text])


@pytest.mark.parametrize("value", [None, 7, b"read", ["read"]])
def test_a_scope_must_be_a_string(value: object) -> None:
    with pytest.raises(InvalidScope, match="must be a string"):
        parse_scope(value)


@given(st.text(alphabet=TOKEN_CHARS, min_size=1, max_size=256))
def test_every_scope_token_parses_and_round_trips(text: str) -> None:
    assert str(parse_scope(text)) == text
    assert uncovered([text], [text]) == []


@given(st.text(alphabet=TOKEN_CHARS, min_size=0, max_size=20),
       st.characters(blacklist_characters=TOKEN_CHARS), st.text(alphabet=TOKEN_CHARS, max_size=20))
def test_any_other_character_is_refused(before: str, bad: str, after: str) -> None:
    with pytest.raises(InvalidScope):
        parse_scope(before + bad + after)


# ── coverage ─────────────────────────────────────────────────────────────────


@pytest.mark.parametrize(("parent", "child", "expected"), [
    ("read", "read", True), ("read", "write", False), ("admin", "read", False),
    ("read", "calendar:read", False), ("calendar:read", "read", False),   # plain never covers structured
    ("calendar", "calendar:read", False), ("calendar:read", "calendar:read:", False),
    ("a:b", "a:b:c:d", False), ("a:b:c", "a:b:c:d", False), ("a:b:c:d", "a:b:c", False),
    ("a:b:c:d", "a:b:c:d", True), ("tool.run", "tool.run", True), ("tool", "tool.run", False),
    ("payments:initiate", "payments:initiate:max_5", True),               # structured unchanged
    ("payments:initiate:max_500", "payments:initiate:max_499", True),
    ("payments:initiate:max_500", "payments:initiate:max_501", False),
])
def test_coverage(parent: str, child: str, expected: bool) -> None:
    assert covers(parse_scope(parent), parse_scope(child)) is expected


_short = st.text(alphabet=TOKEN_CHARS, min_size=1, max_size=30)


@given(_short, _short)
def test_a_plain_scope_is_covered_only_by_itself(a: str, b: str) -> None:
    pa, pb = parse_scope(a), parse_scope(b)
    if isinstance(pa, PlainScope) or isinstance(pb, PlainScope):
        assert covers(pa, pb) is (a == b)
        assert covers(pb, pa) is (a == b)


def test_uncovered_with_plain_scopes() -> None:
    assert uncovered(["read"], ["read", "write"]) == []
    assert uncovered(["read", "admin"], ["read", "write"]) == ["admin"]
    assert uncovered(["calendar:read"], ["read", "calendar"]) == ["calendar:read"]
    assert uncovered(["read"], ["calendar:read", "files:read"]) == ["read"]


def test_scopes_an_older_ledger_holds_still_work(tmp_path: Path) -> None:
    """Before the amendment '"' and '\\' were allowed inside a structured scope's parts."""
    legacy = 'files:read:"q\\1"'
    with pytest.raises(InvalidScope):
        normalize_scopes([legacy])  # no new input may use them
    assert isinstance(parse_scope(legacy, stored=True), Scope)
    assert uncovered(["files:read:x"], ["files:read"]) == [] and uncovered([legacy], [legacy]) == []
    assert "files" in describe(legacy)

    path = tmp_path / "grantex.db"
    with Grantex(ledger=Ledger(path)) as gx:
        agent = gx.agents.register(name="old", scopes=["calendar:read", "read"])
    conn = sqlite3.connect(path)  # what an older version could have written
    with conn:
        conn.execute("UPDATE agents SET scopes = ? WHERE id = ?",
                     (json.dumps(["calendar:read", "read", legacy]), agent.id))
    conn.close()
    with Grantex(ledger=Ledger(path)) as gx:
        auth = gx.authorize(agent_id=agent.id, user_id="u", scopes=["read", "calendar:read"])
        assert auth.code is not None
        assert gx.agents.get(agent.id).scopes[-1] == legacy


# ── descriptions ─────────────────────────────────────────────────────────────


@pytest.mark.parametrize("scope", ["read", "admin", "tool.run", "a:b:c:d", "<b>&'"])
def test_a_plain_scope_is_described_by_a_sentence(scope: str) -> None:
    text = describe(scope)
    assert text != scope and f"'{scope}'" in text and "no description" in text
    assert text[0].isupper()


def test_consent_page_and_consent_show_describe_plain_scopes(tmp_path: Path) -> None:
    path = tmp_path / "grantex.db"
    with Ledger(path) as ledger:
        live = developers.create_developer(ledger, "Acme", sandbox=False)
        key = developers.create_api_key(ledger, live.id, "conformance").key
    headers = {"authorization": f"Bearer {key}"}
    with running_server(path) as server, httpx.Client(base_url=server.base_url, headers=headers) as http:
        agent = http.post("/v1/agents", json={"name": "bot", "scopes": ["read", "tool.run"]}).json()
        request = http.post("/v1/authorize", json={"agentId": agent["id"], "principalId": "user_alice",
                                                   "scopes": ["read", "tool.run"]})
        assert request.status_code == 201, request.text
        url = request.json()["consentUrl"]
        page = httpx.get(url, headers={"accept": "text/html"})
        assert page.status_code == 200
        shown = html.unescape(page.text)
        for scope in ("read", "tool.run"):
            assert describe(scope) in shown
        request_id = request.json()["authRequestId"]
    text = ok("--ledger", path, "consent", "show", request_id).stdout
    assert f"  - {describe('read')}  (read)" in text
    assert f"  - {describe('tool.run')}  (tool.run)" in text


# ── conformance-style: the whole flow over HTTP with plain scopes ───────────


def test_conformance_flow_with_plain_scopes(tmp_path: Path) -> None:
    path = tmp_path / "grantex.db"
    with Ledger(path) as ledger:
        key = developers.create_api_key(ledger, developers.default_developer(ledger).id, "conformance").key
    clear_jwks_cache()
    headers = {"authorization": f"Bearer {key}"}
    with running_server(path) as server, httpx.Client(base_url=server.base_url, headers=headers) as http:
        created = http.post("/v1/agents", json={"name": "conformance-agent", "scopes": ["read", "write"]})
        assert created.status_code == 201, created.text
        agent = created.json()
        assert agent["scopes"] == ["read", "write"]
        sub = http.post("/v1/agents", json={"name": "sub-agent", "scopes": ["read", "admin"]}).json()

        auth = http.post("/v1/authorize", json={"agentId": agent["id"], "principalId": "user_alice",
                                                "scopes": ["read", "write"]})
        assert auth.status_code == 201, auth.text
        code = auth.json()["code"]
        assert code  # a sandbox developer's request is approved at once

        exchanged = http.post("/v1/token", json={"code": code, "agentId": agent["id"]})
        assert exchanged.status_code == 201, exchanged.text
        token = exchanged.json()
        assert token["scopes"] == ["read", "write"]

        online = http.post("/v1/tokens/verify", json={"token": token["grantToken"]}).json()
        assert online["valid"] is True and online["scopes"] == ["read", "write"]
        assert online["grantId"] == token["grantId"]

        jwks = server.base_url + "/.well-known/jwks.json"
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # legacy-alias warnings are the SDK's business
            offline = verify_grant_token(token["grantToken"], VerifyGrantTokenOptions(
                jwks_uri=jwks, required_scopes=["read", "write"]))
            assert list(offline.scopes) == ["read", "write"] and offline.grant_id == token["grantId"]
            with pytest.raises(GrantexTokenError):
                verify_grant_token(token["grantToken"], VerifyGrantTokenOptions(
                    jwks_uri=jwks, required_scopes=["admin"]))

        delegated = http.post("/v1/grants/delegate", json={
            "parentGrantToken": token["grantToken"], "subAgentId": sub["id"], "scopes": ["read"]})
        assert delegated.status_code == 201, delegated.text
        assert delegated.json()["scopes"] == ["read"]
        child = http.post("/v1/tokens/verify", json={"token": delegated.json()["grantToken"]}).json()
        assert child["valid"] is True and child["scopes"] == ["read"]

        refused = http.post("/v1/grants/delegate", json={
            "parentGrantToken": token["grantToken"], "subAgentId": sub["id"], "scopes": ["read", "admin"]})
        assert refused.status_code == 400
        body = refused.json()
        assert {"message", "code"} <= body.keys() and "admin" in body["message"]
        assert body["code"] == "SCOPE_NOT_COVERED"

        bad = http.post("/v1/agents", json={"name": "bad", "scopes": ["read", "has space"]})
        assert bad.status_code == 400 and bad.json()["code"] == "INVALID_SCOPE"
        assert "space" in bad.json()["message"]
