"""Issuers stay put (issue 15): serving elsewhere never moves the ledger's issuer, changing it is
asked for, and tokens issued under an earlier issuer of the same ledger verify until they expire.

The end-to-end test runs ``grantex-local serve`` as a real process, on the issuer's port, on
another port, and with a new issuer, and verifies over HTTP and with the official SDK offline.
"""

from __future__ import annotations

import socket
import sqlite3
import warnings
from pathlib import Path
from typing import Any

import grantex
import httpx
import jwt
import pytest
from cli_helpers import fails, invoke, ok, ok_json
from grantex._verify import clear_jwks_cache
from helpers import CLI, MovableClock, dump, grant_for, server_process

from grantex_local import (
    Grantex,
    InvalidInput,
    Ledger,
    TokenInvalid,
    Verifier,
    developers,
    verify_grant_token,
)
from grantex_local.ledger import DEFAULT_ISSUER
from grantex_local.server import create_app
from grantex_local.server.run import issuer_address, serves_issuer

SCOPES = ["calendar:read"]
NEW = "http://127.0.0.1:9000"
THIRD = "https://gx.example"


def iss_of(token: str) -> str:
    return str(jwt.decode(token, options={"verify_signature": False})["iss"])


def signed_with_iss(ledger: Ledger, token: str, iss: str) -> str:
    """``token``'s claims with another ``iss``, signed by the ledger's own key: only the issuer
    check can refuse it."""
    claims = jwt.decode(token, options={"verify_signature": False})
    kid, key = ledger.signing_key()
    return jwt.encode({**claims, "iss": iss}, key, "RS256", headers={"kid": kid, "typ": "at+jwt"})


# ── the library: past issuers ────────────────────────────────────────────────


def test_tokens_of_a_past_issuer_verify_until_they_expire(gx: Grantex, clock: MovableClock) -> None:
    before = grant_for(gx, SCOPES, expires_in="1h")
    gx.ledger.set_setting("issuer", NEW)
    [past] = gx.ledger.past_issuers()
    assert past["issuer"] == DEFAULT_ISSUER
    assert past["acceptedUntil"] == before.expires_at  # the last expiry of any token then live
    assert gx.ledger.accepted_issuers() == (NEW, DEFAULT_ISSUER)

    assert gx.tokens.verify(before.grant_token).valid is True
    assert gx.tokens.verify_offline(before.grant_token).issuer == DEFAULT_ISSUER
    after = grant_for(gx, SCOPES, agent_name="after")
    assert iss_of(after.grant_token) == NEW and gx.tokens.verify(after.grant_token).valid is True
    changed = [e for e in gx.audit.list(page_size=1000) if e.action == "grantex.settings.changed"]
    assert changed[-1].metadata == {"key": "issuer", "value": NEW, "previous": DEFAULT_ISSUER}

    clock.advance(2 * 3600)  # past the first token's expiry: it fails as expired, not for its issuer
    assert gx.tokens.verify(before.grant_token).reason == "expired"
    gx.ledger.set_setting("issuer", THIRD)  # the next change forgets issuers with no live token
    assert [p["issuer"] for p in gx.ledger.past_issuers()] == [NEW]
    assert gx.tokens.verify(after.grant_token).valid is True


def test_only_issuers_that_live_tokens_carry_are_kept(gx: Grantex) -> None:
    gx.ledger.set_setting("issuer", NEW)  # no token was ever issued under the default
    assert gx.ledger.past_issuers() == []
    grant_for(gx, SCOPES)
    gx.ledger.set_setting("issuer", THIRD)
    gx.ledger.set_setting("issuer", NEW)  # back to an earlier issuer: it is current, not past
    assert [p["issuer"] for p in gx.ledger.past_issuers()] == [THIRD]
    gx.ledger.set_setting("issuer", NEW)  # setting the same value again changes nothing
    assert [p["issuer"] for p in gx.ledger.past_issuers()] == [THIRD]


def test_a_foreign_issuer_is_refused_and_the_message_names_both(gx: Grantex) -> None:
    token = grant_for(gx, SCOPES).grant_token
    gx.ledger.set_setting("issuer", NEW)
    forged = signed_with_iss(gx.ledger, token, "http://127.0.0.1:9999")
    with pytest.raises(TokenInvalid) as exc:
        gx.tokens.verify_offline(forged)
    assert exc.value.reason == "issuer"  # the machine code is unchanged
    assert "'http://127.0.0.1:9999'" in exc.value.message  # what the token has
    assert f"expected '{NEW}'" in exc.value.message  # what this ledger expects
    assert f"past issuer: '{DEFAULT_ISSUER}'" in exc.value.message
    assert gx.tokens.verify(forged).reason == "issuer"

    with pytest.raises(TokenInvalid) as single:
        verify_grant_token(token, jwks=gx.jwks(), issuer=NEW)
    assert single.value.reason == "issuer"
    assert single.value.message.endswith(f"the token has '{DEFAULT_ISSUER}', expected '{NEW}'")


def test_verifier_takes_several_issuers_the_function_exactly_one(gx: Grantex) -> None:
    token = grant_for(gx, SCOPES).grant_token
    jwks = gx.jwks()
    assert Verifier(jwks, issuer=[NEW, DEFAULT_ISSUER]).verify(token).issuer == DEFAULT_ISSUER
    assert Verifier(jwks, issuer=(DEFAULT_ISSUER,)).verify(token).issuer == DEFAULT_ISSUER
    with pytest.raises(TokenInvalid) as exc:
        Verifier(jwks, issuer=[NEW, THIRD]).verify(token)
    assert exc.value.reason == "issuer"
    for bad in ([], [""], "", [DEFAULT_ISSUER, 7]):
        with pytest.raises(TokenInvalid):
            Verifier(jwks, issuer=bad)  # type: ignore[arg-type]
    with pytest.raises(TokenInvalid) as several:
        verify_grant_token(token, jwks=jwks, issuer=[DEFAULT_ISSUER])  # type: ignore[arg-type]
    assert several.value.reason == "issuer"


@pytest.mark.parametrize("stored", ["not json", "{}", "7", '[{"issuer": "http://127.0.0.1:8421"}]',
                                    '[{"issuer": 5, "retiredAt": "x", "acceptedUntil": "y"}]'])
def test_a_hand_edited_past_issuer_list_accepts_nothing_more(gx: Grantex, stored: str) -> None:
    token = grant_for(gx, SCOPES).grant_token
    gx.ledger.set_setting("issuer", NEW)
    raw = sqlite3.connect(gx.ledger.path)
    with raw:
        raw.execute("UPDATE settings SET value = ? WHERE key = 'past_issuers'", (stored,))
    raw.close()
    assert gx.ledger.past_issuers() == []
    assert gx.tokens.verify(token).reason == "issuer"  # fail closed
    assert ok_json("--ledger", gx.ledger.path, "info")["pastIssuers"] == []


# ── create_app and the CLI: the issuer changes only when asked ───────────────


def test_create_app_does_not_move_the_issuer_unasked(ledger_path: Path) -> None:
    Ledger(ledger_path).close()
    before = dump(ledger_path)
    with pytest.raises(InvalidInput, match="change_issuer=True"):
        create_app(ledger_path, issuer=NEW)
    assert dump(ledger_path) == before
    assert create_app(ledger_path).state.grantex.issuer == DEFAULT_ISSUER
    assert create_app(ledger_path, issuer=DEFAULT_ISSUER).state.grantex.issuer == DEFAULT_ISSUER
    app = create_app(ledger_path, issuer=NEW, change_issuer=True)
    assert app.state.grantex.issuer == NEW and app.state.grantex.issuer_changed_from == DEFAULT_ISSUER
    with Ledger(ledger_path) as ledger:
        assert ledger.issuer == NEW


def test_serve_issuer_needs_confirmation(ledger_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    Ledger(ledger_path).close()
    before = dump(ledger_path)
    result = fails(2, "--ledger", ledger_path, "serve", "--issuer", NEW)  # stdin is not a terminal
    assert "--yes" in result.stderr and NEW in result.stderr and DEFAULT_ISSUER in result.stderr
    fails(2, "--ledger", ledger_path, "serve", "--issuer", "ftp://nope")
    monkeypatch.setattr("grantex_local.cli._interactive", lambda: True)
    declined = invoke("--ledger", ledger_path, "serve", "--issuer", NEW, input="n\n")
    assert declined.exit_code == 1 and "cancelled" in declined.stderr
    assert dump(ledger_path) == before


def test_config_set_and_info_show_the_past_issuer(ledger_path: Path) -> None:
    with Grantex(Ledger(ledger_path)) as gx:
        token = grant_for(gx, SCOPES)
    changed = ok("--ledger", ledger_path, "config", "set", "issuer", NEW)
    assert changed.stdout.strip() == f"issuer = {NEW}"
    assert DEFAULT_ISSUER in changed.stderr and token.expires_at in changed.stderr
    info = ok_json("--ledger", ledger_path, "info")
    assert info["issuer"] == NEW and "past_issuers" not in info["settings"]
    assert [(p["issuer"], p["acceptedUntil"]) for p in info["pastIssuers"]] == [
        (DEFAULT_ISSUER, token.expires_at)]
    text = ok("--ledger", ledger_path, "info").stdout
    assert f"past issuer           {DEFAULT_ISSUER} (replaced" in text
    assert ok("--ledger", ledger_path, "tokens", "verify", token.grant_token).exit_code == 0


@pytest.mark.parametrize(("issuer", "address"), [
    ("http://127.0.0.1:8421", ("127.0.0.1", 8421)), ("http://localhost:9000", ("127.0.0.1", 9000)),
    ("http://[::1]:9001", ("::1", 9001)), ("http://127.0.0.2", ("127.0.0.2", 80)),
    ("https://127.0.0.1:8421", None), ("http://gx.example:8421", None),
    ("http://127.0.0.1:8421/grantex", None), ("http://192.168.1.5:8421", None)])
def test_where_the_issuer_says_to_listen(issuer: str, address: tuple[str, int] | None) -> None:
    assert issuer_address(issuer) == address


def test_whether_a_listener_serves_the_issuer() -> None:
    assert serves_issuer("http://127.0.0.1:8421", "127.0.0.1", 8421)
    assert serves_issuer("http://localhost:8421", "127.0.0.1", 8421)
    assert serves_issuer("http://localhost:8421", "0.0.0.0", 8421)
    assert not serves_issuer("http://127.0.0.1:8421", "127.0.0.1", 8422)
    assert not serves_issuer("http://127.0.0.1:8421", "127.0.0.2", 8421)
    assert not serves_issuer("https://gx.example", "127.0.0.1", 443)


# ── the real server ─────────────────────────────────────────────────────────

def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def verify_over_http(base: str, key: str, token: str) -> dict[str, Any]:
    answer = httpx.post(base + "/v1/tokens/verify", json={"token": token},
                        headers={"Authorization": f"Bearer {key}"}, timeout=10)
    assert answer.status_code == 200, answer.text
    return dict(answer.json())


def issue_over_http(base: str, key: str, name: str) -> str:
    with httpx.Client(base_url=base, headers={"Authorization": f"Bearer {key}"}, timeout=10) as api:
        agent = api.post("/v1/agents", json={"name": name, "scopes": SCOPES}).json()
        code = api.post("/v1/authorize", json={"agentId": agent["id"], "principalId": "alice",
                                               "scopes": SCOPES}).json()["code"]
        token = api.post("/v1/token", json={"code": code, "agentId": agent["id"]})
        assert token.status_code == 201, token.text
        return str(token.json()["grantToken"])


def sdk_offline(token: str, base: str) -> grantex.VerifiedGrant:
    """The official SDK's offline check: it expects ``iss`` to be the base of the JWKS URL."""
    clear_jwks_cache()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # legacy-alias warnings are the SDK's business
        return grantex.verify_grant_token(token, grantex.VerifyGrantTokenOptions(
            jwks_uri=f"{base}/.well-known/jwks.json"))


def test_serving_on_another_port_keeps_earlier_and_new_tokens_verifying(tmp_path: Path) -> None:
    path = tmp_path / "grantex.db"
    issuer = f"http://127.0.0.1:{free_port()}"
    with Grantex(Ledger(path, issuer=issuer)) as gx:
        key = developers.create_api_key(gx.ledger, developers.default_developer(gx.ledger).id).key
        earlier = grant_for(gx, SCOPES).grant_token

    # no --port: the server listens where the issuer says, and the SDK verifies offline there
    with server_process(path, command=CLI, any_port=False) as server:
        assert server.base_url == issuer and "the issuer stays" not in server.text
        assert verify_over_http(server.base_url, key, earlier)["valid"] is True
        assert sdk_offline(earlier, server.base_url).grant_id

    # another port: the issuer stays, the banner says which base URL clients must use
    with server_process(path, command=CLI) as server:
        assert server.base_url != issuer
        assert f"the issuer stays {issuer}" in server.text
        assert f"Clients must use {issuer} as their base URL" in server.text
        assert verify_over_http(server.base_url, key, earlier)["valid"] is True
        new = issue_over_http(server.base_url, key, "on another port")
        assert iss_of(new) == issuer
        assert verify_over_http(server.base_url, key, new)["valid"] is True
        jwks = httpx.get(server.base_url + "/.well-known/jwks.json").json()
        assert verify_grant_token(new, jwks=jwks, issuer=issuer).scopes == tuple(SCOPES)
    with Ledger(path) as ledger:
        assert ledger.issuer == issuer and ledger.past_issuers() == []

    # --issuer --yes: the explicit change; the server listens at the new issuer
    moved = f"http://127.0.0.1:{free_port()}"
    with server_process(path, "--issuer", moved, "--yes", command=CLI, any_port=False) as server:
        assert server.base_url == moved
        assert f"the issuer changed from {issuer}" in server.text
        for token in (earlier, new):  # issued under the past issuer: still valid
            assert verify_over_http(server.base_url, key, token)["valid"] is True
        latest = issue_over_http(server.base_url, key, "after the move")
        assert iss_of(latest) == moved
        assert verify_over_http(server.base_url, key, latest)["valid"] is True
        assert sdk_offline(latest, server.base_url).issuer == moved
    info = ok_json("--ledger", path, "info")
    assert info["issuer"] == moved and [p["issuer"] for p in info["pastIssuers"]] == [issuer]
