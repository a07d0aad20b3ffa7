"""The principal's permissions page (``GET /permissions``) in real headless Chromium.

A person opens the link ``grantex-local principals link USER`` prints (a ``via="local"``
session in the URL fragment), sees every grant in their name described in words, presses
Revoke on a root grant and is first shown what else goes with it (the delegated grants below
it, by agent); only after confirming is anything revoked, the whole subtree at once, after
which the delegated token no longer verifies. The keyboard alone is enough, focus moves into
the dialog and back, and the states without a usable session say what to do.

Skips like tests/test_consent_browser.py when the system's Chromium is missing.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from helpers import MovableClock, grant_for

from grantex_local import Grantex, Ledger, developers
from grantex_local import principals as sessions
from grantex_local.server.testing import RunningServer, running_server

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"

webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed")
if not (Path(CHROMIUM).exists() and Path(CHROMEDRIVER).exists()):
    pytest.skip(f"headless Chromium needs {CHROMIUM} and {CHROMEDRIVER} "
                "(apt-get install chromium chromium-driver)", allow_module_level=True)

from chromium import headless_chromium  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.common.keys import Keys  # noqa: E402
from selenium.webdriver.remote.webdriver import WebDriver  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402


@dataclass
class World:
    server: RunningServer
    path: Path
    key: str
    gx: Grantex
    clock: MovableClock

    def link(self, principal: str, expires_in: str = "1h") -> str:
        """What ``grantex-local principals link`` prints: a local session in the fragment."""
        session = sessions.create_session(self.gx.ledger, self.gx.developer_id, principal, via="local",
                                          expires_in=expires_in)
        return session.dashboard_url(self.server.base_url)

    def revoked(self, grant_id: str) -> bool:
        row = self.gx.ledger.query_one("SELECT revoked_at FROM grants WHERE id = ?", (grant_id,))
        assert row is not None
        return row["revoked_at"] is not None

    def online_valid(self, token: str) -> bool:
        answer = httpx.post(self.server.base_url + "/v1/tokens/verify", json={"token": token},
                            headers={"Authorization": f"Bearer {self.key}"})
        assert answer.status_code == 200, answer.text
        return bool(answer.json()["valid"])

    def family(self, principal: str, root_name: str, child_name: str) -> tuple[str, str, str]:
        """A root grant and one grant delegated from it: (root id, child id, child token)."""
        root = grant_for(self.gx, ["calendar:read", "email:send"], principal=principal, agent_name=root_name)
        sub = self.gx.agents.register(name=child_name, scopes=["email:send"])
        child = self.gx.grants.delegate(parent_grant_token=root.grant_token, sub_agent_id=sub.id,
                                        scopes=["email:send"])
        return root.grant_id, child.grant_id, child.grant_token


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    path = tmp_path_factory.mktemp("permissions") / "grantex.db"
    clock = MovableClock()
    with Ledger(path, clock=clock) as ledger:
        dev = developers.create_developer(ledger, "Acme Travel", sandbox=True)
        key = developers.create_api_key(ledger, dev.id).key
    with running_server(path, clock=clock, webhook_delivery=False) as server:
        gx = Grantex(Ledger(path, clock=clock), developer_id=dev.id)
        try:
            yield World(server, path, key, gx, clock)
        finally:
            gx.close()


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[WebDriver]:
    with headless_chromium(tmp_path_factory.mktemp("chromium-profile")) as driver:
        yield driver


def grants_shown(browser: WebDriver, count: int) -> list[str]:
    """Wait for the list to show ``count`` grants; their ids, in page order."""
    def ready(d: WebDriver) -> list[str] | None:
        if not d.find_element(By.ID, "grants").is_displayed():
            return None
        ids = [li.get_attribute("data-grant-id") or "" for li in d.find_elements(By.CSS_SELECTOR, "li.grant")]
        return ids if len(ids) == count else None

    if count == 0:  # an empty list is no answer for WebDriverWait (falsy): wait for the state
        WebDriverWait(browser, 10).until(lambda d: d.find_element(By.ID, "state-empty").is_displayed())
        return []
    shown: list[str] = WebDriverWait(browser, 10).until(ready)
    return shown


def dialog_open(browser: WebDriver) -> bool:
    WebDriverWait(browser, 10).until(
        lambda d: d.execute_script("return document.getElementById('confirm').open"))
    return True


def dialog_closed(browser: WebDriver) -> bool:
    WebDriverWait(browser, 10).until(
        lambda d: not d.execute_script("return document.getElementById('confirm').open"))
    return True


def test_the_page_lists_grants_and_revoking_a_root_shows_then_revokes_its_subtree(
        world: World, browser: WebDriver) -> None:
    root, child, child_token = world.family("alice", "Trip Planner", "Mail Helper")
    other = grant_for(world.gx, ["calendar:read"], principal="alice", agent_name="Note Taker").grant_id
    grant_for(world.gx, ["calendar:read"], principal="bob", agent_name="Bob's Bot")  # not alice's
    browser.set_window_size(390, 844)  # a phone
    browser.get(world.link("alice"))
    assert sorted(grants_shown(browser, 3)) == sorted([root, child, other])
    assert "session=" not in browser.current_url  # the token left the address bar at once
    assert browser.execute_script("return window.localStorage.length + window.sessionStorage.length") == 0
    text = browser.find_element(By.TAG_NAME, "main").text
    for expected in ("alice", "Trip Planner", "Mail Helper", "Note Taker", "Read calendar events",
                     "Send emails on your behalf", "You, directly", "Trip Planner \u2192 Mail Helper",
                     "1 grant depends on it", "Revoke access"):
        assert expected in text, expected
    assert "Bob's Bot" not in text
    assert browser.execute_script("return document.documentElement.scrollWidth <= window.innerWidth")

    browser.find_element(By.CSS_SELECTOR, f"button.revoke[data-grant-id='{root}']").click()
    assert dialog_open(browser)
    dialog = browser.find_element(By.ID, "confirm")
    assert "Mail Helper" in dialog.text and "Trip Planner" in dialog.text
    below = [li.get_attribute("data-grant-id")
             for li in dialog.find_elements(By.CSS_SELECTOR, "li.below-grant")]
    assert below == [child]
    assert browser.switch_to.active_element.get_attribute("id") == "confirm-cancel"  # focus moved in
    assert not world.revoked(root) and not world.revoked(child)  # nothing yet: only shown
    assert world.online_valid(child_token)

    browser.find_element(By.ID, "confirm-revoke").click()
    assert dialog_closed(browser)
    assert grants_shown(browser, 1) == [other]
    assert world.revoked(root) and world.revoked(child) and not world.revoked(other)
    assert not world.online_valid(child_token)
    status = browser.find_element(By.ID, "status")
    assert "Access revoked" in status.text and "Trip Planner" in status.text


def test_keyboard_alone_reaches_revoke_cancels_and_confirms(world: World, browser: WebDriver) -> None:
    grant = grant_for(world.gx, ["calendar:read"], principal="carol", agent_name="Keyboard Agent")
    browser.set_window_size(1200, 900)
    browser.get(world.link("carol"))
    assert grants_shown(browser, 1) == [grant.grant_id]
    browser.find_element(By.TAG_NAME, "body").send_keys(Keys.TAB)
    for _ in range(10):
        if "revoke" in (browser.switch_to.active_element.get_attribute("class") or ""):
            break
        browser.switch_to.active_element.send_keys(Keys.TAB)
    revoke = browser.switch_to.active_element
    assert revoke.get_attribute("data-grant-id") == grant.grant_id and revoke.tag_name == "button"
    assert browser.execute_script("return getComputedStyle(document.activeElement).outlineStyle") != "none"

    revoke.send_keys(Keys.ENTER)
    assert dialog_open(browser)
    assert browser.switch_to.active_element.get_attribute("id") == "confirm-cancel"
    browser.switch_to.active_element.send_keys(Keys.ESCAPE)  # changed their mind
    assert dialog_closed(browser)
    assert browser.switch_to.active_element.get_attribute("data-grant-id") == grant.grant_id  # focus back
    assert not world.revoked(grant.grant_id)

    browser.switch_to.active_element.send_keys(Keys.ENTER)
    assert dialog_open(browser)
    browser.switch_to.active_element.send_keys(Keys.TAB)
    assert browser.switch_to.active_element.get_attribute("id") == "confirm-revoke"
    browser.switch_to.active_element.send_keys(Keys.ENTER)
    grants_shown(browser, 0)
    assert world.revoked(grant.grant_id) and not world.online_valid(grant.grant_token)


def test_without_a_session_the_page_says_how_to_get_one(world: World, browser: WebDriver) -> None:
    browser.get(world.server.base_url + "/permissions")
    notice = browser.find_element(By.ID, "state-no-session")
    assert notice.is_displayed() and "grantex-local principals link USER" in notice.text
    assert not browser.find_element(By.ID, "grants").is_displayed()


def test_no_grants_and_a_query_session_are_handled(world: World, browser: WebDriver) -> None:
    link = world.link("nobody-yet")
    browser.get(link.replace("#session=", "?session="))
    grants_shown(browser, 0)
    assert "No agent holds an active grant" in browser.find_element(By.ID, "state-empty").text
    assert "session" not in browser.current_url  # taken out of the query too


def test_an_expired_session_says_so(world: World, browser: WebDriver) -> None:
    grant = grant_for(world.gx, ["calendar:read"], principal="dave", agent_name="Late Agent")
    link = world.link("dave", expires_in="1m")
    world.clock.advance(120)  # past the session, well within the grant
    browser.get(link)
    WebDriverWait(browser, 10).until(lambda d: d.find_element(By.ID, "state-expired").is_displayed())
    assert "expired" in browser.find_element(By.ID, "state-expired").text
    assert not world.revoked(grant.grant_id)
