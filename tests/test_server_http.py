"""The REST contract of PROTOCOL §13 at the HTTP level: status codes, bodies, headers, limits.

One real server (uvicorn, loopback, free port) serves the module; tests that need other
limits start their own. Requests are plain httpx so every header and byte is visible.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from grantex_local import Ledger, developers
from grantex_local.server import create_app
from grantex_local.server.testing import RunningServer, running_server

RATE_HEADERS = ("x-ratelimit-limit", "x-ratelimit-remaining", "x-ratelimit-reset")


@dataclass
class Env:
    server: RunningServer
    path: Path
    key: str  # sandbox (default) developer
    live_key: str  # non-sandbox developer

    @property
    def base(self) -> str:
        return self.server.base_url

    def client(self, key: str | None = None) -> httpx.Client:
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        return httpx.Client(base_url=self.base, headers=headers, timeout=10)

    def api(self) -> httpx.Client:
        return self.client(self.key)


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    path = tmp_path_factory.mktemp("server") / "grantex.db"
    with Ledger(path) as ledger:
        key = developers.create_api_key(ledger, developers.default_developer(ledger).id).key
        live = developers.create_developer(ledger, "Acme Travel", sandbox=False)
        live_key = developers.create_api_key(ledger, live.id).key
    with running_server(path, rate_limit=10_000) as server:
        yield Env(server, path, key, live_key)


def assert_error(response: httpx.Response, status: int, code: str | None = None) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert set(body) == {"message", "code", "requestId"}
    assert body["message"] and body["requestId"] == response.headers["x-request-id"]
    if code is not None:
        assert body["code"] == code
    assert "Traceback" not in response.text
    return dict(body)


def grant(api: httpx.Client, scopes: list[str] | None = None, **agent: Any) -> dict[str, Any]:
    scopes = scopes or ["calendar:read"]
    made = api.post("/v1/agents", json={"name": "agent", "scopes": scopes, **agent})
    assert made.status_code == 201, made.text
    agent_id = made.json()["id"]
    auth = api.post("/v1/authorize", json={"agentId": agent_id, "principalId": "alice", "scopes": scopes})
    assert auth.status_code == 201, auth.text
    token = api.post("/v1/token", json={"code": auth.json()["code"], "agentId": agent_id})
    assert token.status_code == 201, token.text
    return {"agent": made.json(), **token.json()}


# ── authentication ──────────────────────────────────────────────────────────


@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer gxl_wrong"},
                                     {"Authorization": "Basic dXNlcjpwYXNz"}, {"Authorization": "Bearer"}])
def test_401_without_or_with_a_wrong_key(env: Env, headers: dict[str, str]) -> None:
    with httpx.Client(base_url=env.base, headers=headers) as client:
        for method, path in (("GET", "/v1/agents"), ("POST", "/v1/tokens/verify"),
                             ("GET", "/v1/revocations/status?grantId=x")):
            response = client.request(method, path, json={"token": "x"} if method == "POST" else None)
            assert_error(response, 401, "UNAUTHORIZED")
            assert not any(h in response.headers for h in RATE_HEADERS)


# ── rate limits ─────────────────────────────────────────────────────────────


def test_authenticated_responses_carry_integer_rate_limit_headers(env: Env) -> None:
    with env.api() as api:
        responses = [api.get("/v1/agents"), api.post("/v1/agents", json={"name": "x", "scopes": []}),
                     api.get("/v1/agents/ag_01J0000000000000000000000"),
                     api.post("/v1/tokens/verify", json={"token": "garbage"})]
        agent_id = responses[1].json()["id"]
        responses.append(api.delete(f"/v1/agents/{agent_id}"))
    assert [r.status_code for r in responses] == [200, 201, 404, 200, 204]
    remaining = []
    for response in responses:
        values = {h: response.headers[h] for h in RATE_HEADERS}
        assert all(re.fullmatch(r"\d+", v) for v in values.values()), values
        assert int(values["x-ratelimit-limit"]) == 10_000
        assert 0 <= int(values["x-ratelimit-reset"]) <= 3600
        remaining.append(int(values["x-ratelimit-remaining"]))
    assert remaining == sorted(remaining, reverse=True) and len(set(remaining)) == len(remaining)


def test_jwks_has_only_rsa_keys_and_no_rate_limit_headers(env: Env) -> None:
    response = httpx.get(env.base + "/.well-known/jwks.json")
    assert response.status_code == 200
    assert not any(h in response.headers for h in RATE_HEADERS)
    keys = response.json()["keys"]
    assert keys and all(k["kty"] == "RSA" and k["alg"] == "RS256" and k["use"] == "sig" and k["e"] == "AQAB"
                        and k["kid"] and "d" not in k for k in keys)
    health = httpx.get(env.base + "/health")
    assert health.status_code == 200 and health.json()["status"] == "ok"
    assert health.json()["issuer"] == env.base
    assert not any(h in health.headers for h in RATE_HEADERS)


def test_a_burst_gets_429_with_retry_after(tmp_path: Path) -> None:
    path = tmp_path / "grantex.db"
    with Ledger(path) as ledger:
        key = developers.create_api_key(ledger, developers.default_developer(ledger).id).key
        other = developers.create_api_key(ledger, developers.default_developer(ledger).id).key
    with running_server(path, rate_limit=5) as server, \
            httpx.Client(base_url=server.base_url, headers={"Authorization": f"Bearer {key}"}) as api:
        statuses = [api.get("/v1/agents").status_code for _ in range(8)]
        assert statuses == [200] * 5 + [429] * 3
        throttled = api.get("/v1/agents")
        body = assert_error(throttled, 429, "RATE_LIMITED")
        retry_after = int(throttled.headers["Retry-After"])
        assert 1 <= retry_after <= 60
        match = re.search(r"retry in (\d+)", body["message"])
        assert match and 1 <= int(match.group(1)) <= 60
        assert throttled.headers["x-ratelimit-remaining"] == "0"
        assert throttled.headers["x-ratelimit-limit"] == "5"
        # the limit is per key: another key is not throttled; public routes are not counted
        assert api.get("/v1/agents", headers={"Authorization": f"Bearer {other}"}).status_code == 200
        assert api.get("/.well-known/jwks.json").status_code == 200


# ── bodies ──────────────────────────────────────────────────────────────────


def test_413_on_an_oversized_body(tmp_path: Path) -> None:
    path = tmp_path / "grantex.db"
    with Ledger(path) as ledger:
        key = developers.create_api_key(ledger, developers.default_developer(ledger).id).key
    with running_server(path, max_body=4096) as server, \
            httpx.Client(base_url=server.base_url, headers={"Authorization": f"Bearer {key}"}) as api:
        big = {"name": "x", "description": "d" * 5000, "scopes": []}
        assert_error(api.post("/v1/agents", json=big), 413, "PAYLOAD_TOO_LARGE")

        def chunks() -> Iterator[bytes]:  # no Content-Length: counted as it arrives
            yield b'{"name": "x", "description": "'
            for _ in range(10):
                yield b"d" * 1000
            yield b'", "scopes": []}'

        streamed = api.post("/v1/agents", content=chunks(), headers={"content-type": "application/json"})
        assert_error(streamed, 413, "PAYLOAD_TOO_LARGE")
        assert api.post("/v1/agents", json={"name": "small", "scopes": []}).status_code == 201
    with pytest.raises(ValueError):
        create_app(path, max_body=0)


def test_malformed_json_is_400_and_wrong_media_type_415(env: Env) -> None:
    with env.api() as api:
        for raw in (b"{bad", b"", b'{"token": '):
            response = api.post("/v1/tokens/verify", content=raw,
                                headers={"content-type": "application/json"})
            assert_error(response, 400, "INVALID_JSON")
        assert_error(api.post("/v1/agents", json=["not", "an", "object"]), 400, "BAD_REQUEST")
        missing = assert_error(api.post("/v1/agents", json={"scopes": []}), 400, "BAD_REQUEST")
        assert "name" in missing["message"]
        assert_error(api.post("/v1/agents", json={"name": "x", "extra": 1}), 400, "BAD_REQUEST")
        assert_error(api.post("/v1/agents", content=b'{"name": "x"}', headers={"content-type": "text/plain"}),
                     415, "UNSUPPORTED_MEDIA_TYPE")
        assert_error(api.get("/v1/audit/entries?page=0"), 400, "BAD_REQUEST")


def test_verify_answers_200_valid_false_for_garbage(env: Env) -> None:
    with env.api() as api:
        for token in ("garbage", "a.b.c", "", None, 42, "eyJhbGciOiJub25lIn0.eyJzdWIiOiJ4In0."):
            response = api.post("/v1/tokens/verify", json={"token": token})
            assert response.status_code == 200 and response.json()["valid"] is False, response.text
            introspection = api.post("/v1/grants/verify", json={"token": token})
            assert introspection.status_code == 200 and introspection.json()["active"] is False


# ── routes and errors ───────────────────────────────────────────────────────


def test_unknown_routes_are_404_json(env: Env) -> None:
    with env.api() as api:
        for path in ("/nope", "/v1/nope", "/v1/agents/x/y", "/.well-known/other"):
            assert_error(api.get(path), 404, "NOT_FOUND")


def test_405_on_put_patch_delete_of_audit_entries(env: Env) -> None:
    with env.api() as api:
        made = grant(api)
        entry = api.post("/v1/audit/log", json={"agentId": made["agent"]["id"], "grantId": made["grantId"],
                                                "action": "calendar.read"})
        assert entry.status_code == 201
        entry_id = entry.json()["entryId"]
        for method in ("PUT", "PATCH", "DELETE"):
            response = api.request(method, f"/v1/audit/{entry_id}", json={"action": "rewritten"})
            assert_error(response, 405, "METHOD_NOT_ALLOWED")
            assert "GET" in response.headers["allow"]
        assert api.get(f"/v1/audit/{entry_id}").json()["action"] == "calendar.read"


def test_no_stack_trace_reaches_a_client(env: Env, monkeypatch: pytest.MonkeyPatch) -> None:
    from grantex_local import agents, errors

    def boom(*_args: Any, **_kwargs: Any) -> Any:
        raise RuntimeError("secret detail at /home/someone/grantex.db line 42")

    monkeypatch.setattr(agents, "list_agents", boom)
    with env.api() as api:
        body = assert_error(api.get("/v1/agents"), 500, "INTERNAL_ERROR")
        assert "secret" not in body["message"] and body["requestId"] in body["message"]

        def corrupt(*_args: Any, **_kwargs: Any) -> Any:
            raise errors.LedgerCorrupt("ledger /home/someone/grantex.db is corrupt: bad page 7")

        monkeypatch.setattr(agents, "list_agents", corrupt)
        body = assert_error(api.get("/v1/agents"), 500, "LEDGER_CORRUPT")
        assert "/home/someone" not in body["message"]


def test_create_is_201_delete_and_revoke_are_204_with_empty_bodies(env: Env) -> None:
    with env.api() as api:
        made = grant(api)
        token_id = made["tokenId"]
        revoked = api.post("/v1/tokens/revoke", json={"jti": token_id})
        assert revoked.status_code == 204 and revoked.content == b""
        assert_error(api.post("/v1/tokens/revoke", json={"jti": token_id}), 404, "NOT_FOUND")
        again = grant(api)
        deleted = api.delete(f"/v1/grants/{again['grantId']}")
        assert deleted.status_code == 204 and deleted.content == b""
        assert_error(api.delete(f"/v1/grants/{again['grantId']}"), 404, "NOT_FOUND")
        policy = api.post("/v1/policies",
                          json={"name": "p", "effect": "auto_approve", "scopes": ["email:send"]})
        assert policy.status_code == 201 and policy.json()["effect"] == "allow"
        listed = api.get("/v1/policies").json()
        assert listed["total"] == len(listed["policies"]) >= 1
        patched = api.patch(f"/v1/policies/{policy.json()['id']}", json={"priority": 3})
        assert patched.status_code == 200 and patched.json()["priority"] == 3
        assert api.delete(f"/v1/policies/{policy.json()['id']}").status_code == 204
        checkpoint = api.post("/v1/audit/checkpoints")
        assert checkpoint.status_code == 201 and checkpoint.json()["entryCount"] >= 1
        assert api.get("/v1/audit/checkpoints").json()["checkpoints"][-1]["checkpointId"] == \
            checkpoint.json()["checkpointId"]


def test_revocation_status_answers_what_enforce_asks(env: Env) -> None:
    with env.api() as api:
        made = grant(api)
        query = {"grantId": made["grantId"], "jti": made["tokenId"]}
        active = api.get("/v1/revocations/status", params=query).json()
        assert active["revoked"] is False and active["status"] == "active"
        unknown = api.get("/v1/revocations/status", params={"grantId": "grnt_nope"}).json()
        assert unknown["revoked"] is True and unknown["status"] == "unknown"
        assert_error(api.get("/v1/revocations/status"), 400, "BAD_REQUEST")
        api.patch(f"/v1/agents/{made['agent']['id']}", json={"status": "suspended"})
        assert api.get("/v1/revocations/status", params=query).json()["status"] == "suspended"
        api.patch(f"/v1/agents/{made['agent']['id']}", json={"status": "active"})
        assert api.post("/v1/tokens/revoke", json={"jti": made["tokenId"]}).status_code == 204
        after = api.get("/v1/revocations/status", params=query).json()
        assert after["revoked"] is True and after["status"] == "revoked"
        # the grant itself is still active: only that token was revoked
        whole = api.get("/v1/revocations/status", params={"grantId": made["grantId"]}).json()
        assert whole["revoked"] is False
    with env.client(env.live_key) as other:  # another developer's grant is unknown to this key
        assert other.get("/v1/revocations/status", params=query).json()["status"] == "unknown"


def test_refresh_retry_with_the_same_idempotency_key_replays(env: Env) -> None:
    with env.api() as api:
        made = grant(api)
        body = {"refreshToken": made["refreshToken"], "agentId": made["agent"]["id"]}
        first = api.post("/v1/token/refresh", json=body, headers={"Idempotency-Key": "k-1"})
        replay = api.post("/v1/token/refresh", json=body, headers={"Idempotency-Key": "k-1"})
        assert first.status_code == replay.status_code == 201 and first.json() == replay.json()
        assert api.post("/v1/tokens/verify", json={"token": first.json()["grantToken"]}).json()["valid"]
        reuse = api.post("/v1/token/refresh", json=body, headers={"Idempotency-Key": "k-2"})
        assert_error(reuse, 400, "REFRESH_TOKEN_REUSED")


def test_openapi_and_offline_docs(env: Env) -> None:
    spec = httpx.get(env.base + "/openapi.json").json()
    paths = set(spec["paths"])
    assert {"/v1/agents", "/v1/authorize", "/v1/token", "/v1/token/refresh", "/v1/tokens/verify",
            "/v1/tokens/revoke", "/v1/grants", "/v1/grants/{grant_id}", "/v1/grants/delegate",
            "/v1/grants/verify", "/v1/revocations/status", "/v1/audit/log", "/v1/audit/entries",
            "/v1/audit/{entry_id}", "/v1/audit/checkpoints", "/v1/policies", "/v1/policies/{policy_id}",
            "/health", "/.well-known/jwks.json", "/v1/consent/{request_id}"} <= paths
    docs = httpx.get(env.base + "/docs")
    assert docs.status_code == 200 and "swagger" in docs.text.lower()
    assert "/docs/assets/swagger-ui-bundle.js" in docs.text and "cdn." not in docs.text
    assert httpx.get(env.base + "/docs/assets/swagger-ui-bundle.js").status_code == 200


# ── consent, without a browser ──────────────────────────────────────────────


def pending_request(env: Env, *, redirect: str | None = "https://app.example/callback") -> dict[str, Any]:
    with env.client(env.live_key) as api:
        agent = api.post("/v1/agents", json={
            "name": "Trip Planner", "description": "Books flights and reads your calendar",
            "scopes": ["calendar:read", "payments:initiate:max_500"],
            **({"redirectUris": [redirect]} if redirect else {})})
        assert agent.status_code == 201, agent.text
        auth = api.post("/v1/authorize", json={
            "agentId": agent.json()["id"], "principalId": "alice@example.com", "expiresIn": "2h",
            "scopes": ["calendar:read", "payments:initiate:max_500"], "state": "st-42"})
        assert auth.status_code == 201 and "code" not in auth.json()
        return {"agentId": agent.json()["id"], **auth.json()}


def test_consent_json_routes_are_public_but_approve_is_sandbox_only(env: Env) -> None:
    request = pending_request(env)
    with env.client() as anonymous:
        data = anonymous.get(f"/v1/consent/{request['authRequestId']}")
        assert data.status_code == 200
        assert data.json()["agent"]["name"] == "Trip Planner"
        assert {s["description"] for s in data.json()["scopes"]} == {
            "Read calendar events", "Initiate payments up to 500 in the account's base currency"}
        refused = anonymous.post(f"/v1/consent/{request['authRequestId']}/approve")
        assert_error(refused, 403, "CONSENT_REQUIRES_PERSON")
        assert_error(anonymous.post(f"/v1/consent/{request['authRequestId']}/deny"), 403)
        assert_error(anonymous.get("/v1/consent/areq_nope"), 404, "NOT_FOUND")
    with env.client() as anonymous:
        sandbox_request = sandbox_pending(env)
        approved = anonymous.post(f"/v1/consent/{sandbox_request}/approve")
        assert approved.status_code == 200 and approved.json()["code"]
        assert_error(anonymous.post(f"/v1/consent/{sandbox_request}/approve"), 400, "INVALID_STATE")


def sandbox_pending(env: Env) -> str:
    """A pending request of a sandbox developer: made while sandbox was off (the library, as the
    CLI would), then sandbox switched back on, so the sandbox-only approve endpoint applies."""
    from grantex_local import Grantex

    with Ledger(env.path) as ledger:
        dev = developers.create_developer(ledger, "sandbox two", sandbox=True)
        gx = Grantex(ledger, developer_id=dev.id)
        agent = gx.agents.register(name="s", scopes=["calendar:read"])
        developers.set_sandbox(ledger, dev.id, False)
        request = gx.authorize(agent_id=agent.id, user_id="p", scopes=["calendar:read"])
        developers.set_sandbox(ledger, dev.id, True)
        return request.request_id


def test_consent_page_shows_everything_a_person_needs(env: Env) -> None:
    request = pending_request(env)
    page = httpx.get(request["consentUrl"], headers={"accept": "text/html"})
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    html = page.text
    for text in ("Trip Planner", "Books flights and reads your calendar", "Acme Travel", "alice@example.com",
                 "Read calendar events", "Initiate payments up to 500 in the account", "2 hours",
                 "app.example", 'name="viewport"', ">Deny</button>", ">Approve</button>"):
        assert text in html, text
    assert html.index(">Deny<") < html.index(">Approve<")  # Deny first in focus order
    assert "http://" not in html.replace(env.base, "") and "https://" not in html.replace("https://app", "")
    csp = page.headers["content-security-policy"]
    assert "frame-ancestors 'none'" in csp and "form-action 'self' https://app.example" in csp
    assert page.headers["x-frame-options"] == "DENY" and page.headers["cache-control"] == "no-store"
    cookie = page.headers["set-cookie"].lower()
    assert "httponly" in cookie and "samesite=strict" in cookie
    css = httpx.get(env.base + "/consent/assets/consent.css")
    assert css.status_code == 200 and ":focus-visible" in css.text


def _form(html: str) -> dict[str, str]:
    return dict(re.findall(r'name="(csrf_token)" value="([^"]+)"', html))


def _approval_code(env: Env, request_id: str) -> str:
    """What the local human sees (serve's console, 'consent show'): the page decides only with it."""
    from grantex_local import approval

    with Ledger(env.path) as ledger:
        return approval.approval_code(ledger, request_id)


def test_consent_form_is_csrf_protected(env: Env) -> None:
    request = pending_request(env)
    url = request["consentUrl"]
    form = {"decision": "approve", "approval_code": _approval_code(env, request["authRequestId"])}
    # no token, no cookie
    assert_error(httpx.post(url, data=form), 403, "CSRF_FAILED")
    with httpx.Client() as browser:
        token = _form(browser.get(url).text)["csrf_token"]
        # a token without the cookie it is bound to
        assert_error(httpx.post(url, data={**form, "csrf_token": token}), 403, "CSRF_FAILED")
        # the cookie with a forged token
        assert_error(browser.post(url, data={**form, "csrf_token": "0" * 64}), 403, "CSRF_FAILED")
        # the right pair, but from another site
        foreign = browser.post(url, data={**form, "csrf_token": token}, headers={"origin": "https://evil.test"})
        assert_error(foreign, 403, "CSRF_FAILED")
        # a token for another request does not carry over
        other = pending_request(env)
        other_token = _form(browser.get(other["consentUrl"]).text)["csrf_token"]
        assert_error(browser.post(url, data={**form, "csrf_token": other_token}), 403, "CSRF_FAILED")
        with env.client(env.live_key) as api:
            assert api.get(f"/v1/consent/{request['authRequestId']}").json()["request"]["status"] == "pending"
        # and the genuine form works: 303 to the redirect URI with code and state
        done = browser.post(url, data={**form, "csrf_token": token}, headers={"origin": env.base})
        assert done.status_code == 303
        target = urlsplit(done.headers["location"])
        assert f"{target.scheme}://{target.netloc}{target.path}" == "https://app.example/callback"
        query = parse_qs(target.query)
        assert query["state"] == ["st-42"] and query["code"][0]
        with env.client(env.live_key) as api:
            token_answer = api.post("/v1/token",
                                    json={"code": query["code"][0], "agentId": request["agentId"]})
            assert token_answer.status_code == 201
        # deciding twice is refused
        twice = browser.post(url, data={**form, "csrf_token": token}, headers={"accept": "text/html"})
        assert twice.status_code == 409 and "Already decided" in twice.text


def test_consent_without_redirect_uri_shows_the_code_or_the_denial(env: Env) -> None:
    for decision in ("approve", "deny"):
        request = pending_request(env, redirect=None)
        with httpx.Client() as browser:
            token = _form(browser.get(request["consentUrl"]).text)["csrf_token"]
            page = browser.post(request["consentUrl"], data={
                "decision": decision, "csrf_token": token,
                "approval_code": _approval_code(env, request["authRequestId"])})
        assert page.status_code == 200
        if decision == "approve":
            code = re.search(r'<output id="code" class="code">([^<]+)</output>', page.text)
            assert code is not None
            with env.client(env.live_key) as api:
                answer = api.post("/v1/token", json={"code": code.group(1), "agentId": request["agentId"]})
                assert answer.status_code == 201
        else:
            assert "Access denied" in page.text and 'id="code"' not in page.text
