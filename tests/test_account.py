"""The account routes (issue 11 item 6) through the official SDK against a real server:
usage counted from the ledger's own records, ``/v1/me`` and its settings, API key rotation,
and the refused signup. Library tests for ``rotate_api_key`` / ``update_developer`` / usage
day bucketing are at the end.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grantex
import httpx
import pytest
from grantex import (
    AuthorizeParams,
    ExchangeTokenParams,
    GrantexApiError,
    GrantexAuthError,
    RefreshTokenParams,
    SignupParams,
    UpdateDeveloperSettingsParams,
)
from grantex._verify import clear_jwks_cache
from helpers import dump

from grantex_local import Grantex, Ledger, developers, errors, usage
from grantex_local.server.testing import RunningServer, running_server

SCOPES = ["calendar:read", "email:send"]


@dataclass(frozen=True)
class Setup:
    path: Path
    server: RunningServer
    sandbox_id: str
    sandbox_key: str  # the default developer (sandbox)
    live_id: str
    live_key: str

    def client(self, key: str | None = None) -> grantex.Grantex:
        return grantex.Grantex(api_key=key or self.sandbox_key, base_url=self.server.base_url,
                               max_retries=0)

    def raw(self, method: str, path: str, key: str | None = None, **kw: Any) -> httpx.Response:
        return httpx.request(method, self.server.base_url + path,
                             headers={"Authorization": f"Bearer {key or self.sandbox_key}"}, **kw)


@pytest.fixture
def setup(tmp_path: Path) -> Iterator[Setup]:
    path = tmp_path / "grantex.db"
    with Ledger(path) as ledger:
        sandbox_id = developers.default_developer(ledger).id
        sandbox_key = developers.create_api_key(ledger, sandbox_id, "sdk").key
        live = developers.create_developer(ledger, "Acme Travel", sandbox=False)
        live_key = developers.create_api_key(ledger, live.id, "sdk").key
    clear_jwks_cache()
    with running_server(path) as server:
        yield Setup(path, server, sandbox_id, sandbox_key, live.id, live_key)


def audit_actions(path: Path, developer_id: str) -> list[tuple[str, dict[str, Any]]]:
    conn = sqlite3.connect(path)
    try:
        rows = conn.execute("SELECT action, preimage FROM audit_entries WHERE developer_id = ? "
                            "ORDER BY seq", (developer_id,)).fetchall()
    finally:
        conn.close()
    return [(a, json.loads(p).get("metadata") or {}) for a, p in rows]


def today() -> str:
    return time.strftime("%Y-%m-%d", time.gmtime())


# ── usage ────────────────────────────────────────────────────────────────────


def test_usage_counts_real_activity(setup: Setup) -> None:
    gx = setup.client()
    agent = gx.agents.register(name="Planner", scopes=SCOPES)
    first = gx.authorize(AuthorizeParams(agent_id=agent.id, user_id="alice", scopes=SCOPES))
    gx.authorize(AuthorizeParams(agent_id=agent.id, user_id="bob", scopes=["calendar:read"]))
    assert first.code is not None
    token = gx.tokens.exchange(ExchangeTokenParams(code=first.code, agent_id=agent.id))
    # neither a refresh nor a verification is a token exchange
    gx.tokens.refresh(RefreshTokenParams(refresh_token=token.refresh_token, agent_id=agent.id))
    assert gx.tokens.verify(token.grant_token).valid

    now = gx.usage.current()
    assert now.developer_id == setup.sandbox_id
    assert now.period == today()
    assert (now.authorizations, now.token_exchanges, now.verifications, now.total_requests) == (2, 1, 0, 3)

    hist = gx.usage.history(days=3)
    assert hist.developer_id == setup.sandbox_id and hist.days == 3
    dates = [e.date for e in hist.entries]
    assert dates[0] == today() and len(dates) == 3
    assert dates == sorted(dates, reverse=True) and len(set(dates)) == 3
    assert (hist.entries[0].authorizations, hist.entries[0].token_exchanges,
            hist.entries[0].total_requests) == (2, 1, 3)
    assert all(e.total_requests == 0 for e in hist.entries[1:])
    assert len(gx.usage.history().entries) == usage.DEFAULT_DAYS

    # another developer's usage is its own
    other = setup.client(setup.live_key).usage.current()
    assert other.developer_id == setup.live_id
    assert (other.authorizations, other.token_exchanges, other.total_requests) == (0, 0, 0)


def test_usage_history_buckets_by_utc_day(tmp_path: Path) -> None:
    """Activity two days ago (by the ledger clock at the time) lands on that day's entry."""
    path = tmp_path / "grantex.db"
    past = time.time() - 2 * 86400
    with Ledger(path, clock=lambda: past) as ledger:
        key = developers.create_api_key(ledger, developers.default_developer(ledger).id).key
        gx = Grantex(ledger)
        agent = gx.agents.register(name="a", scopes=SCOPES)
        auth = gx.authorize(agent_id=agent.id, user_id="alice", scopes=SCOPES)
        assert auth.code is not None
        gx.tokens.exchange(ExchangeTokenParams(code=auth.code, agent_id=agent.id))  # type: ignore[arg-type]
    with running_server(path) as server:
        client = grantex.Grantex(api_key=key, base_url=server.base_url, max_retries=0)
        entries = {e.date: e for e in client.usage.history(days=5).entries}
        day = time.strftime("%Y-%m-%d", time.gmtime(past))
        assert (entries[day].authorizations, entries[day].token_exchanges) == (1, 1)
        assert sum(e.total_requests for e in entries.values()) == 2
        assert client.usage.current().total_requests == 0  # nothing today


def test_usage_history_days_bounds(setup: Setup) -> None:
    gx = setup.client()
    assert gx.usage.history(days=1).days == 1
    capped = gx.usage.history(days=365)
    assert capped.days == usage.MAX_DAYS and len(capped.entries) == usage.MAX_DAYS
    for bad in (0, -3):
        with pytest.raises(GrantexApiError) as info:
            gx.usage.history(days=bad)
        assert info.value.status_code == 400
    for query in ("days=abc", "days=1.5", "days=", "days=1&from=2026-01-01"):
        r = setup.raw("GET", f"/v1/usage/history?{query}")
        assert r.status_code == 400, query
        assert set(r.json()) >= {"message", "code", "requestId"}
    assert setup.raw("GET", "/v1/usage", key="gxl_nope").status_code == 401


# ── /v1/me and settings ──────────────────────────────────────────────────────


def test_me_describes_the_caller(setup: Setup) -> None:
    me = setup.client()._http.get("/v1/me")
    assert me["developerId"] == setup.sandbox_id and me["mode"] == "sandbox" and me["plan"] == "local"
    assert set(me) >= {"developerId", "name", "email", "mode", "plan", "fidoRequired", "fidoRpName",
                       "createdAt"}
    live = setup.client(setup.live_key)._http.get("/v1/me")
    assert (live["developerId"], live["name"], live["mode"]) == (setup.live_id, "Acme Travel", "live")


def test_update_settings_changes_what_it_says_and_is_audited(setup: Setup) -> None:
    gx = setup.client(setup.live_key)
    before = audit_actions(setup.path, setup.live_id)
    # the SDK's own call: fidoRequired false is the truth here, so accepted, and nothing to record
    assert gx.update_settings(UpdateDeveloperSettingsParams(fido_required=False)).updated is True
    assert audit_actions(setup.path, setup.live_id) == before

    answer = gx._http.patch("/v1/me", {"name": "Acme Travel EU"})
    assert answer["updated"] is True and answer["changed"] == ["name"]
    assert gx._http.get("/v1/me")["name"] == "Acme Travel EU"
    after = audit_actions(setup.path, setup.live_id)
    assert after[len(before):] == [("grantex.developer.updated",
                                    {"name": "Acme Travel EU", "previousName": "Acme Travel"})]

    # the same name again changes and records nothing
    assert gx._http.patch("/v1/me", {"name": "Acme Travel EU"})["changed"] == []
    assert audit_actions(setup.path, setup.live_id) == after


def test_sandbox_may_be_turned_off_not_on(setup: Setup) -> None:
    sandbox = setup.client()
    answer = sandbox._http.patch("/v1/me", {"mode": "live"})
    assert answer["changed"] == ["mode"] and answer["developer"]["mode"] == "live"
    last = audit_actions(setup.path, setup.sandbox_id)[-1]
    assert last == ("grantex.developer.updated", {"sandbox": False})
    agent = sandbox.agents.register(name="a", scopes=SCOPES)
    pending = sandbox.authorize(AuthorizeParams(agent_id=agent.id, user_id="alice", scopes=SCOPES))
    assert pending.code is None  # no longer approved at once

    snapshot = dump(setup.path)
    with pytest.raises(GrantexAuthError) as info:  # turning it on would skip consent
        setup.client(setup.live_key)._http.patch("/v1/me", {"mode": "sandbox"})
    assert info.value.status_code == 403
    assert dump(setup.path) == snapshot


@pytest.mark.parametrize("body", [
    {},
    {"nickname": "x"},
    {"name": "ok", "plan": "enterprise"},
    {"name": ""},
    {"name": "   "},
    {"name": 42},
    {"name": "bad\u0007name"},
    {"mode": "bogus"},
    {"mode": True},
    {"fidoRequired": True},
    {"fidoRequired": "yes"},
    {"fidoRpName": "Acme"},
    {"name": "fine", "fidoRequired": True},  # one bad field: nothing of the rest is applied
])
def test_bad_settings_are_400_and_write_nothing(setup: Setup, body: dict[str, Any]) -> None:
    snapshot = dump(setup.path)
    r = setup.raw("PATCH", "/v1/me", key=setup.live_key, json=body)
    assert r.status_code == 400, (body, r.text)
    assert set(r.json()) >= {"message", "code", "requestId"}
    assert dump(setup.path) == snapshot


def test_update_settings_sdk_refusals(setup: Setup) -> None:
    gx = setup.client()
    snapshot = dump(setup.path)
    for params in (UpdateDeveloperSettingsParams(), UpdateDeveloperSettingsParams(fido_required=True),
                   UpdateDeveloperSettingsParams(fido_rp_name="Acme")):
        with pytest.raises(GrantexApiError) as info:
            gx.update_settings(params)
        assert info.value.status_code == 400
    assert dump(setup.path) == snapshot


# ── key rotation ─────────────────────────────────────────────────────────────


def test_rotate_key_new_key_works_old_key_dies_at_once(setup: Setup) -> None:
    old = setup.client()
    rotated = old.rotate_key()
    assert rotated.api_key.startswith(developers.API_KEY_PREFIX) and rotated.api_key != setup.sandbox_key
    assert rotated.rotated_at
    with pytest.raises(GrantexAuthError) as info:  # the very next request with the old key
        old.agents.list()
    assert info.value.status_code == 401
    new = setup.client(rotated.api_key)
    assert new._http.get("/v1/me")["developerId"] == setup.sandbox_id
    new.agents.register(name="after rotation", scopes=SCOPES)

    with Ledger(setup.path, create=False) as ledger:
        keys = developers.list_api_keys(ledger, setup.sandbox_id)
    assert [(k.name, k.revoked) for k in keys] == [("sdk", True), ("sdk", False)]
    old_id, new_id = keys[0].id, keys[1].id
    trail = audit_actions(setup.path, setup.sandbox_id)
    assert ("grantex.api_key.created", {"keyId": new_id, "name": "sdk", "rotatedFrom": old_id}) in trail
    assert ("grantex.api_key.revoked", {"keyId": old_id, "name": "sdk", "rotatedTo": new_id}) in trail
    assert all(setup.sandbox_key not in json.dumps(m) and rotated.api_key not in json.dumps(m)
               for _, m in trail)

    # rotating with the dead key is 401 and mints nothing; the other developer is untouched
    snapshot = dump(setup.path)
    with pytest.raises(GrantexAuthError):
        old.rotate_key()
    assert dump(setup.path) == snapshot
    assert setup.client(setup.live_key).agents.list() is not None


def test_rotate_answer_is_not_cacheable(setup: Setup) -> None:
    r = setup.raw("POST", "/v1/keys/rotate", key=setup.live_key)
    assert r.status_code == 200 and r.headers["cache-control"] == "no-store"
    assert setup.raw("GET", "/v1/me", key=setup.live_key).status_code == 401
    assert setup.raw("GET", "/v1/me", key=r.json()["apiKey"]).json()["developerId"] == setup.live_id


# ── signup ───────────────────────────────────────────────────────────────────


def test_signup_is_refused_with_directions(setup: Setup) -> None:
    snapshot = dump(setup.path)
    with pytest.raises(ValueError, match="grantex-local developers create"):
        grantex.Grantex.signup(SignupParams(name="Mallory", mode="sandbox"), base_url=setup.server.base_url)
    assert dump(setup.path) == snapshot


# ── the library ──────────────────────────────────────────────────────────────


def test_rotate_api_key_library(tmp_path: Path) -> None:
    with Ledger(tmp_path / "g.db") as ledger:
        dev = developers.default_developer(ledger).id
        key = developers.create_api_key(ledger, dev, "ci")
        by_id = developers.rotate_api_key(ledger, key_id=key.id)
        assert by_id.old.id == key.id and by_id.old.revoked and by_id.new.developer_id == dev
        with pytest.raises(errors.NotFound):
            developers.developer_for_api_key(ledger, key.key)
        assert developers.developer_for_api_key(ledger, by_id.new.key).id == dev
        with pytest.raises(errors.InvalidState):
            developers.rotate_api_key(ledger, key_id=key.id)
        with pytest.raises(errors.NotFound):
            developers.rotate_api_key(ledger, secret="gxl_unknown")
        with pytest.raises(errors.InvalidInput):
            developers.rotate_api_key(ledger)
        with pytest.raises(errors.InvalidInput):
            developers.rotate_api_key(ledger, key_id=key.id, secret=key.key)
        again = developers.rotate_api_key(ledger, secret=by_id.new.key)
        assert again.old.id == by_id.new.id


def test_update_developer_library(tmp_path: Path) -> None:
    with Ledger(tmp_path / "g.db") as ledger:
        dev = developers.default_developer(ledger)
        count = ledger.query_one("SELECT count(*) AS n FROM audit_entries")["n"]  # type: ignore[index]
        same, changes = developers.update_developer(ledger, dev.id, name=dev.name, sandbox=dev.sandbox)
        assert changes == {} and same == dev
        assert ledger.query_one("SELECT count(*) AS n FROM audit_entries")["n"] == count  # type: ignore[index]
        changed, changes = developers.update_developer(ledger, dev.id, name=" New ", sandbox=False)
        assert changes == {"name": "New", "sandbox": False}
        assert (changed.name, changed.sandbox) == ("New", False)
        with pytest.raises(errors.NotFound):
            developers.update_developer(ledger, "dev_missing", name="x")
        with pytest.raises(errors.InvalidInput):
            developers.update_developer(ledger, dev.id, sandbox="yes")  # type: ignore[arg-type]
        with pytest.raises(errors.InvalidInput):
            usage.check_days(True)
