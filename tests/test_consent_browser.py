"""The consent page in real headless Chromium (Debian ``chromium`` + ``chromium-driver``).

A person opens a ``consentUrl`` as ``serve`` prints it (``#approval=CODE``: the page's
script fills the approval code from the fragment), reads what the page shows, decides with
the keyboard or the mouse, and the browser lands on the agent's redirect URI (a small app on
another loopback port) with ``code`` and ``state`` or ``error=access_denied``; the code is
then exchanged. Without the code nothing is decided and the page asks for it; typed by hand
it works. A page on that other origin that tries to submit the consent form for the person
(CSRF) is refused.

No Selenium Manager: the driver and browser are the system's, and the tests
skip with the reason when they are not installed (CI installs them).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from grantex_local import Ledger, approval, developers
from grantex_local import principals as sessions
from grantex_local.server.testing import RunningServer, running_server

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
SCOPES = ["calendar:read", "payments:initiate:max_500"]

webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed")
if not (Path(CHROMIUM).exists() and Path(CHROMEDRIVER).exists()):
    pytest.skip(f"headless Chromium needs {CHROMIUM} and {CHROMEDRIVER} "
                "(apt-get install chromium chromium-driver)", allow_module_level=True)

from chromium import headless_chromium  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.common.keys import Keys  # noqa: E402
from selenium.webdriver.remote.webdriver import WebDriver  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402

# ── the agent's web app: the redirect target, and (for the CSRF test) a hostile page ──


class AgentApp(ThreadingHTTPServer):
    daemon_threads = True
    consent_url = ""

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class AgentHandler(BaseHTTPRequestHandler):
    server: AgentApp

    def do_GET(self) -> None:
        if self.path.startswith("/callback"):
            body = b"<!doctype html><title>agent app</title><h1 id='landed'>Back at the agent</h1>"
        elif self.path == "/attack":  # submits the consent form for whoever visits
            body = (f"<!doctype html><title>win a prize</title><form id='f' method='post' "
                    f"action='{self.server.consent_url}'><input type='hidden' name='decision' "
                    "value='approve'></form><script>document.getElementById('f').submit()</script>"
                    ).encode()
        else:
            self.send_error(404)
            return
        self.send_response(200)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@dataclass
class World:
    server: RunningServer
    app: AgentApp
    api: httpx.Client  # a non-sandbox developer's key: requests wait for the person
    path: Path

    def request(self, state: str = "st-1", redirect: bool = True) -> dict[str, Any]:
        agent = self.api.post("/v1/agents", json={
            "name": "Trip Planner", "description": "Books flights and keeps your calendar tidy",
            "scopes": SCOPES, **({"redirectUris": [self.app.base + "/callback"]} if redirect else {})})
        assert agent.status_code == 201, agent.text
        auth = self.api.post("/v1/authorize", json={"agentId": agent.json()["id"], "principalId": "alice",
                                                    "scopes": SCOPES, "expiresIn": "8h", "state": state})
        assert auth.status_code == 201 and "code" not in auth.json(), auth.text
        return {"agentId": agent.json()["id"], **auth.json()}

    def status(self, request_id: str) -> str:
        return str(self.api.get(f"/v1/consent/{request_id}").json()["request"]["status"])

    def code(self, request_id: str) -> str:
        with Ledger(self.path) as ledger:
            return approval.approval_code(ledger, request_id)

    def printed_url(self, request: dict[str, Any]) -> str:
        """The link ``serve`` prints for a waiting request."""
        return f"{request['consentUrl']}#approval={self.code(request['authRequestId'])}"

    def decided(self, request_id: str) -> tuple[str, str]:
        with Ledger(self.path) as ledger:
            row = ledger.query_one("SELECT decided_by, decision_channel FROM auth_requests WHERE id = ?",
                                   (request_id,))
            assert row is not None
            return row["decided_by"], row["decision_channel"]


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    path = tmp_path_factory.mktemp("consent") / "grantex.db"
    with Ledger(path) as ledger:
        dev = developers.create_developer(ledger, "Acme Travel", sandbox=False)
        key = developers.create_api_key(ledger, dev.id).key
    app = AgentApp(("127.0.0.1", 0), AgentHandler)
    threading.Thread(target=app.serve_forever, daemon=True).start()
    try:
        with running_server(path) as server, httpx.Client(
                base_url=server.base_url, headers={"Authorization": f"Bearer {key}"}) as api:
            yield World(server, app, api, path)
    finally:
        app.shutdown()
        app.server_close()


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[WebDriver]:
    with headless_chromium(tmp_path_factory.mktemp("chromium-profile")) as driver:
        yield driver


def landed(browser: WebDriver, app: AgentApp) -> dict[str, list[str]]:
    WebDriverWait(browser, 10).until(lambda d: d.current_url.startswith(app.base + "/callback"))
    return parse_qs(urlsplit(browser.current_url).query)


def test_the_page_shows_the_request_and_approve_returns_a_code(world: World, browser: WebDriver) -> None:
    request = world.request(state="st-approve")
    browser.set_window_size(390, 844)  # a phone
    browser.get(world.printed_url(request))
    code_field = browser.find_element(By.ID, "approval_code")
    assert code_field.get_attribute("value") == world.code(request["authRequestId"])
    assert "#" not in browser.current_url  # the script took the code out of the address bar
    text = browser.find_element(By.TAG_NAME, "main").text
    for expected in ("Trip Planner", "Books flights and keeps your calendar tidy", "Acme Travel", "alice",
                     "Read calendar events", "Initiate payments up to 500 in the account's base currency",
                     "8 hours after you approve", "Approval code", "Deny", "Approve"):
        assert expected in text, expected
    assert "payments:initiate:max_500" not in text  # descriptions, never raw scope strings
    scopes = [li.text for li in browser.find_elements(By.CSS_SELECTOR, "ul.scopes li")]
    assert len(scopes) == len(SCOPES)
    viewport = browser.find_element(By.CSS_SELECTOR, "meta[name=viewport]").get_attribute("content")
    assert "width=device-width" in (viewport or "")
    # readable on a phone: nothing scrolls sideways, Deny sits next to Approve, both big enough to tap
    assert browser.execute_script("return document.documentElement.scrollWidth <= window.innerWidth")
    deny, approve = browser.find_element(By.ID, "deny"), browser.find_element(By.ID, "approve")
    assert deny.rect["y"] == approve.rect["y"] and deny.rect["x"] < approve.rect["x"]
    assert deny.rect["height"] >= 44 and abs(deny.rect["width"] - approve.rect["width"]) < 2

    # keyboard only: Tab reaches the code, then Deny, then Approve, each with a visible focus ring;
    # Enter decides
    body = browser.find_element(By.TAG_NAME, "body")
    body.send_keys(Keys.TAB)
    assert browser.switch_to.active_element.get_attribute("id") == "approval_code"
    browser.switch_to.active_element.send_keys(Keys.TAB)
    assert browser.switch_to.active_element.get_attribute("id") == "deny"
    ring = browser.execute_script("return getComputedStyle(document.activeElement).outlineStyle")
    assert ring not in ("", "none")
    browser.switch_to.active_element.send_keys(Keys.TAB)
    assert browser.switch_to.active_element.get_attribute("id") == "approve"
    browser.switch_to.active_element.send_keys(Keys.ENTER)

    query = landed(browser, world.app)
    assert query["state"] == ["st-approve"] and "error" not in query
    exchanged = world.api.post("/v1/token", json={"code": query["code"][0], "agentId": request["agentId"]})
    assert exchanged.status_code == 201, exchanged.text
    verified = world.api.post("/v1/tokens/verify", json={"token": exchanged.json()["grantToken"]}).json()
    assert verified["valid"] is True and verified["principal"] == "alice"
    assert sorted(verified["scopes"]) == sorted(SCOPES)
    assert world.decided(request["authRequestId"]) == ("local human", "consent-page/approval-code")


def test_deny_redirects_with_access_denied(world: World, browser: WebDriver) -> None:
    request = world.request(state="st-deny")
    browser.set_window_size(1200, 900)
    browser.get(world.printed_url(request))
    browser.find_element(By.ID, "deny").click()
    query = landed(browser, world.app)
    assert query == {"error": ["access_denied"], "state": ["st-deny"]}
    assert world.status(request["authRequestId"]) == "denied"


def test_without_a_redirect_uri_the_page_shows_the_code(world: World, browser: WebDriver) -> None:
    request = world.request(redirect=False)
    browser.get(world.printed_url(request))
    browser.find_element(By.ID, "approve").click()
    code = WebDriverWait(browser, 10).until(lambda d: d.find_element(By.ID, "code")).text
    assert "Access approved" in browser.find_element(By.TAG_NAME, "h1").text
    exchanged = world.api.post("/v1/token", json={"code": code, "agentId": request["agentId"]})
    assert exchanged.status_code == 201


def test_a_forged_post_without_the_csrf_token_is_refused(world: World, browser: WebDriver) -> None:
    request = world.request(state="st-csrf")
    browser.get(request["consentUrl"])  # the person has a consent cookie from this server
    world.app.consent_url = request["consentUrl"]
    browser.get(world.app.base + "/attack")  # another site submits the form for them
    WebDriverWait(browser, 10).until(lambda d: d.current_url == request["consentUrl"])
    assert "refused" in browser.find_element(By.TAG_NAME, "body").text
    assert world.status(request["authRequestId"]) == "pending"
    # the same forgery without a browser (no cookie, no token, no origin) is refused too
    forged = httpx.post(request["consentUrl"], data={"decision": "approve"})
    assert forged.status_code == 403 and forged.json()["code"] == "CSRF_FAILED"
    assert world.status(request["authRequestId"]) == "pending"


def test_without_the_code_nothing_is_decided_and_a_typed_code_works(world: World, browser: WebDriver) -> None:
    """The agent's position (it can open the page; it has no code), then a person without
    JavaScript's help: the page refuses, says where the code is, and takes it typed by hand."""
    request = world.request(state="st-typed")
    browser.get(request["consentUrl"])  # no fragment
    assert browser.find_element(By.ID, "approval_code").get_attribute("value") == ""
    browser.find_element(By.ID, "approve").click()
    problem = WebDriverWait(browser, 10).until(lambda d: d.find_element(By.ID, "problem")).text
    assert "Nothing was decided" in problem and "grantex-local serve" in problem
    assert world.status(request["authRequestId"]) == "pending"
    typed = world.code(request["authRequestId"]).lower().replace("-", "")
    browser.find_element(By.ID, "approval_code").send_keys(typed)
    browser.find_element(By.ID, "approve").click()
    query = landed(browser, world.app)
    assert query["state"] == ["st-typed"] and query["code"][0]
    assert world.status(request["authRequestId"]) == "approved"


def test_the_principal_decides_with_their_session_link(world: World, browser: WebDriver) -> None:
    request = world.request(state="st-session")
    with Ledger(world.path) as ledger:
        developer_id = ledger.query_one("SELECT developer_id FROM auth_requests WHERE id = ?",
                                        (request["authRequestId"],))[0]  # type: ignore[index]
        token = sessions.create_session(ledger, developer_id, "alice", via="local").session_token
    browser.get(f"{request['consentUrl']}#session={token}")
    note = browser.find_element(By.ID, "session-note")
    assert note.is_displayed() and "alice" in note.text
    assert "#" not in browser.current_url
    browser.find_element(By.ID, "approve").click()
    query = landed(browser, world.app)
    assert query["state"] == ["st-session"] and query["code"][0]
    assert world.decided(request["authRequestId"]) == ("alice", "consent-page/principal-session")
