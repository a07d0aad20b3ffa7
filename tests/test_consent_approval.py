"""Who may decide on the consent page (issue 15, item 3), over real HTTP on loopback.

The position under test is the agent's: it holds the developer API key, made the request,
and can fetch the public consent page (so it has a valid CSRF cookie and token). That alone
must decide nothing. A decision counts with the request's approval code (which only the
person holding the ledger file sees: serve's console, ``consent show``, the TUI) or with a
principal session for the request's own principal minted by that person; every decision
records who decided and through which channel.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from cli_helpers import ok, ok_json
from rich.console import Console

from grantex_local import Ledger, approval, authorization, developers
from grantex_local import principals as sessions
from grantex_local.server.testing import RunningServer, running_server

SCOPES = ["calendar:read", "calendar:write"]


@dataclass
class World:
    server: RunningServer
    path: Path
    key: str
    developer_id: str
    other_developer_id: str
    console: list[str] = field(default_factory=list)

    def api(self) -> httpx.Client:
        return httpx.Client(base_url=self.server.base_url, headers={"Authorization": f"Bearer {self.key}"})

    def request(self, principal: str = "user_alice", redirect: bool = False) -> dict[str, Any]:
        with self.api() as api:
            agent = api.post("/v1/agents", json={
                "name": "acme-scheduler", "scopes": SCOPES,
                **({"redirectUris": ["https://app.example/callback"]} if redirect else {})})
            assert agent.status_code == 201, agent.text
            auth = api.post("/v1/authorize", json={"agentId": agent.json()["id"], "principalId": principal,
                                                   "scopes": SCOPES})
            assert auth.status_code == 201 and auth.json()["status"] == "pending", auth.text
            return {"agentId": agent.json()["id"], **auth.json()}

    def code(self, request_id: str) -> str:
        with Ledger(self.path) as ledger:
            return approval.approval_code(ledger, request_id)

    def session(self, principal: str = "user_alice", developer_id: str | None = None,
                via: sessions.Origin = "local", clock_offset: float = 0.0, expires_in: str = "1h") -> str:
        with Ledger(self.path, clock=lambda: time.time() + clock_offset) as ledger:
            return sessions.create_session(ledger, developer_id or self.developer_id, principal, via=via,
                                           expires_in=expires_in).session_token

    def row(self, request_id: str) -> tuple[str, str | None, str | None]:
        with Ledger(self.path) as ledger:
            r = ledger.query_one(
                "SELECT status, decided_by, decision_channel FROM auth_requests WHERE id = ?", (request_id,))
            assert r is not None
            return r["status"], r["decided_by"], r["decision_channel"]

    def decisions(self, request_id: str) -> list[dict[str, Any]]:
        """The audit metadata of every consent decision on ``request_id``."""
        with Ledger(self.path) as ledger:
            rows = ledger.query("SELECT preimage FROM audit_entries WHERE action LIKE 'grantex.consent.%'")
        found = [json.loads(r["preimage"])["metadata"] for r in rows]
        return [m for m in found if m.get("authRequestId") == request_id]


def make_world(path: Path, **app_options: Any) -> Iterator[World]:
    with Ledger(path) as ledger:
        dev = developers.create_developer(ledger, "acme-labs", sandbox=False)
        key = developers.create_api_key(ledger, dev.id).key
        other = developers.create_developer(ledger, "other-labs", sandbox=False)
    with running_server(path, **app_options) as server:
        world = World(server, path, key, dev.id, other.id)
        server.app.state.grantex.console = world.console.append
        yield world


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    yield from make_world(tmp_path_factory.mktemp("approval") / "grantex.db")


@pytest.fixture(scope="module")
def open_world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    yield from make_world(tmp_path_factory.mktemp("open") / "grantex.db", open_consent=True)


def post_decision(url: str, decision: str = "approve", html: bool = False, **proof: str) -> httpx.Response:
    """What a browser (or the agent acting as one) does: fetch the page, then post its form."""
    with httpx.Client() as browser:
        page = browser.get(url, headers={"accept": "text/html"})
        assert page.status_code == 200, page.text
        token = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
        assert token is not None
        headers = {"accept": "text/html"} if html else {}
        return browser.post(url, data={"decision": decision, "csrf_token": token.group(1), **proof},
                            headers=headers)


def refused(answer: httpx.Response) -> str:
    assert answer.status_code == 403, answer.text
    body = answer.json()
    assert body["code"] == "APPROVAL_REQUIRED" and set(body) == {"message", "code", "requestId"}
    return str(body["message"])


# ── without proof, nothing is decided ────────────────────────────────────────


@pytest.mark.parametrize("decision", ["approve", "deny"])
def test_the_api_key_holders_valid_form_without_proof_is_refused(world: World, decision: str) -> None:
    request = world.request()
    message = refused(post_decision(request["consentUrl"], decision))
    assert "approval code" in message and "grantex-local serve" in message and "consent show" in message
    assert world.row(request["authRequestId"]) == ("pending", None, None)
    assert world.decisions(request["authRequestId"]) == []


def test_a_browser_without_proof_gets_the_form_back_with_the_reason(world: World) -> None:
    request = world.request()
    page = post_decision(request["consentUrl"], html=True)
    assert page.status_code == 403 and page.headers["content-type"].startswith("text/html")
    assert 'id="problem"' in page.text and "Nothing was decided" in page.text
    assert 'name="approval_code"' in page.text and 'name="csrf_token"' in page.text
    assert world.row(request["authRequestId"])[0] == "pending"


def test_wrong_codes_and_codes_in_the_query_string_decide_nothing(world: World) -> None:
    request = world.request()
    other = world.request()
    url = request["consentUrl"]
    refused(post_decision(url, approval_code="AAAAA-AAAAA"))
    refused(post_decision(url, approval_code=world.code(other["authRequestId"])))  # another request's
    refused(post_decision(url + "?approval_code=" + world.code(request["authRequestId"])))
    refused(post_decision(url, session_token="not.a.session"))
    assert world.row(request["authRequestId"])[0] == "pending"


# ── the approval code ────────────────────────────────────────────────────────


def test_the_approval_code_decides_and_the_audit_says_how(world: World) -> None:
    request = world.request()
    code = world.code(request["authRequestId"])
    assert re.fullmatch(r"[0-9A-HJKMNP-TV-Z]{5}-[0-9A-HJKMNP-TV-Z]{5}", code)
    typed = code.lower().replace("-", " ")  # as a person might type it
    answer = post_decision(request["consentUrl"], approval_code=typed)
    assert answer.status_code == 200 and 'id="code"' in answer.text
    assert world.row(request["authRequestId"]) == ("approved", "local human", "consent-page/approval-code")
    [decided] = world.decisions(request["authRequestId"])
    assert decided["decidedBy"] == "local human" and decided["channel"] == "consent-page/approval-code"
    # one decision per request: the code died with it
    again = post_again(world, request["consentUrl"], approval_code=code)
    assert again.status_code == 409 and again.json()["code"] == "INVALID_STATE"


def post_again(world: World, url: str, **form: str) -> httpx.Response:
    """A POST with a genuine CSRF pair for a request whose page is no longer served (it was
    decided): the pair is made the way the page makes it, with this server's secret."""
    from grantex_local.server.consent import COOKIE, csrf_token

    cookie = "c" * 43
    token = csrf_token(world.server.app.state.grantex.csrf_secret, cookie, url.rsplit("/", 1)[1])
    return httpx.post(url, data={"decision": "approve", "csrf_token": token, **form},
                      cookies={COOKIE: cookie})


def test_deny_with_the_code_redirects_with_access_denied(world: World) -> None:
    request = world.request(redirect=True)
    answer = post_decision(request["consentUrl"], "deny", approval_code=world.code(request["authRequestId"]))
    assert answer.status_code == 303 and "error=access_denied" in answer.headers["location"]
    assert world.row(request["authRequestId"]) == ("denied", "local human", "consent-page/approval-code")


# ── principal sessions ───────────────────────────────────────────────────────


def test_a_session_of_the_named_principal_decides_as_that_principal(world: World) -> None:
    request = world.request(principal="user_alice")
    answer = post_decision(request["consentUrl"], session_token=world.session("user_alice"))
    assert answer.status_code == 200, answer.text
    assert world.row(request["authRequestId"]) == ("approved", "user_alice", "consent-page/principal-session")
    [decided] = world.decisions(request["authRequestId"])
    assert decided["decidedBy"] == "user_alice" and decided["channel"] == "consent-page/principal-session"

    denied = world.request(principal="user_alice")
    post_decision(denied["consentUrl"], "deny", session_token=world.session("user_alice"))
    assert world.row(denied["authRequestId"]) == ("denied", "user_alice", "consent-page/principal-session")


def test_sessions_of_anyone_else_or_expired_or_from_the_api_key_are_refused(world: World) -> None:
    request = world.request(principal="user_alice")
    url = request["consentUrl"]
    assert "someone else" in refused(post_decision(url, session_token=world.session("user_bob")))
    assert "someone else" in refused(post_decision(
        url, session_token=world.session("user_alice", developer_id=world.other_developer_id)))
    assert "expired" in refused(post_decision(
        url, session_token=world.session("user_alice", clock_offset=-7200, expires_in="1h")))
    # the agent's own way to a session: POST /v1/principal-sessions with the API key it holds
    with world.api() as api:
        minted = api.post("/v1/principal-sessions", json={"principalId": "user_alice"})
    assert minted.status_code == 201
    assert "API key" in refused(post_decision(url, session_token=minted.json()["sessionToken"]))
    # a bad session is not excused by a good code sent with it
    refused(post_decision(url, session_token=world.session("user_bob"),
                          approval_code=world.code(request["authRequestId"])))
    assert world.row(request["authRequestId"]) == ("pending", None, None)
    assert world.decisions(request["authRequestId"]) == []


# ── serve's console, the page's script ───────────────────────────────────────


def test_a_waiting_request_is_announced_on_the_console_with_its_code(world: World) -> None:
    world.console.clear()
    request = world.request(principal="user_alice")
    code = world.code(request["authRequestId"])
    assert world.console == [f"consent  user_alice: acme-scheduler asks for 2 scopes \u2014 open "
                             f"{request['consentUrl']}#approval={code}"]
    with Ledger(world.path) as ledger:  # a sandbox developer's request waits for no one: no line
        sandbox_key = developers.create_api_key(ledger, developers.default_developer(ledger).id).key
    sandbox = {"Authorization": f"Bearer {sandbox_key}"}
    with httpx.Client(base_url=world.server.base_url, headers=sandbox) as api:
        agent = api.post("/v1/agents", json={"name": "s", "scopes": ["calendar:read"]}).json()
        assert api.post("/v1/authorize", json={"agentId": agent["id"], "principalId": "p",
                                               "scopes": ["calendar:read"]}).json()["status"] == "approved"
    assert len(world.console) == 1


def test_the_page_has_the_code_field_and_its_script_under_csp(world: World) -> None:
    request = world.request()
    page = httpx.get(request["consentUrl"], headers={"accept": "text/html"})
    assert 'name="approval_code"' in page.text and 'name="session_token"' in page.text
    assert '<script src="/consent/assets/consent.js" defer></script>' in page.text
    assert "script-src 'self'" in page.headers["content-security-policy"]
    assert "unsafe-inline" not in page.headers["content-security-policy"]
    script = httpx.get(world.server.base_url + "/consent/assets/consent.js")
    assert script.status_code == 200 and script.headers["content-type"].startswith("text/javascript")
    assert world.code(request["authRequestId"]) not in page.text  # the public page never shows it


# ── --open-consent keeps the old behaviour for demos ─────────────────────────


def test_open_consent_decides_without_proof_and_says_so(open_world: World) -> None:
    request = open_world.request()
    page = httpx.get(request["consentUrl"], headers={"accept": "text/html"})
    assert 'id="open-consent"' in page.text and 'name="approval_code"' not in page.text
    answer = post_decision(request["consentUrl"])
    assert answer.status_code == 200
    assert open_world.row(request["authRequestId"])[0::2] == ("approved", "consent-page/open")
    [decided] = open_world.decisions(request["authRequestId"])
    assert decided["channel"] == "consent-page/open"
    # proof that is sent is still checked, and recorded when it holds
    wrong = open_world.request()
    refused(post_decision(wrong["consentUrl"], approval_code="AAAAA-AAAAA"))
    right = open_world.request()
    post_decision(right["consentUrl"], approval_code=open_world.code(right["authRequestId"]))
    assert open_world.row(right["authRequestId"])[2] == "consent-page/approval-code"


# ── the CLI and the TUI hold the file: they show the code and decide directly ──


def test_cli_shows_the_code_and_records_the_os_user(world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    request = world.request()
    request_id = request["authRequestId"]
    code = world.code(request_id)
    shown = ok("--ledger", world.path, "consent", "show", request_id).stdout
    assert code in shown and f"{request['consentUrl']}#approval={code}" in shown
    assert ok_json("--ledger", world.path, "consent", "show", request_id)["approvalCode"] == code
    listed = {r["authRequestId"]: r for r in ok_json("--ledger", world.path, "consent", "list")["requests"]}
    assert listed[request_id]["approvalCode"] == code
    assert code in ok("--ledger", world.path, "consent", "list").stdout
    monkeypatch.setattr(authorization.getpass, "getuser", lambda: "carol")
    ok("--ledger", world.path, "consent", "approve", request_id)
    assert world.row(request_id) == ("approved", "carol", "cli")
    assert world.decisions(request_id)[0]["channel"] == "cli"
    decided = ok_json("--ledger", world.path, "consent", "show", request_id)
    assert "approvalCode" not in decided  # a decided request has no code to show


def test_tui_inbox_shows_the_code_and_decides_as_the_os_user(world: World,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    from grantex_local.tui.data import TuiData
    from grantex_local.tui.widgets.inbox import render_consent

    request = world.request()
    request_id = request["authRequestId"]
    with Ledger(world.path) as ledger:
        data = TuiData(ledger)
        details = data.consent_details(request_id)
        assert details["approvalCode"] == approval.approval_code(ledger, request_id)
        console = Console(record=True, width=160)
        console.print(render_consent(details, time.time()))
        text = console.export_text()
        assert "Approval code" in text and details["approvalCode"] in text
        monkeypatch.setattr(authorization.getpass, "getuser", lambda: "dave")
        data.deny(request_id)
    assert world.row(request_id) == ("denied", "dave", "tui")
    with Ledger(world.path) as ledger:
        assert "approvalCode" not in TuiData(ledger, read_only=True).consent_details(request_id)


def test_library_and_policy_decisions_record_their_channel(world: World) -> None:
    request = world.request()
    with Ledger(world.path) as ledger:
        authorization.approve(ledger, request["authRequestId"])
        with pytest.raises(authorization.errors.InvalidInput):
            authorization.deny(ledger, world.request()["authRequestId"], channel="Not A Channel!")
    assert world.row(request["authRequestId"]) == ("approved", "local user", "library")


def test_serve_prints_the_code_on_its_console_and_open_consent_says_so(tmp_path: Path) -> None:
    """The real ``serve`` (a separate process, as ``grantex-local serve`` runs it): the console
    callback is wired, and the line carries the link with the code in its fragment."""
    import queue

    from test_server_process import CLI, server_process

    path = tmp_path / "grantex.db"
    with Ledger(path) as ledger:
        dev = developers.create_developer(ledger, "acme-labs", sandbox=False)
        key = developers.create_api_key(ledger, dev.id).key
    with server_process(path) as server:
        assert "approval code" in "\n".join(server.banner)
        with httpx.Client(base_url=server.base_url, headers={"Authorization": f"Bearer {key}"}) as api:
            agent = api.post("/v1/agents", json={"name": "acme-scheduler", "scopes": SCOPES}).json()
            request = api.post("/v1/authorize", json={"agentId": agent["id"], "principalId": "user_alice",
                                                      "scopes": SCOPES}).json()
        deadline, line = time.monotonic() + 10, ""
        while not line.startswith("consent  ") and time.monotonic() < deadline:
            try:
                line = server.output.get(timeout=0.5)
            except queue.Empty:
                continue
        with Ledger(path) as ledger:
            code = approval.approval_code(ledger, request["authRequestId"])
        assert line == (f"consent  user_alice: acme-scheduler asks for 2 scopes \u2014 open "
                        f"{request['consentUrl']}#approval={code}")
    with server_process(path, "--open-consent", command=CLI) as server:
        assert "--open-consent: anyone who can open a consentUrl" in "\n".join(server.banner)
