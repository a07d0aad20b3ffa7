"""Decisions (issue 13, item 2): requests, approval (page, CLI, library), decision grants the
official SDK verifies offline, single-use consumption with the SDK's sub-reasons, and
``enforce()`` on a manifest tool with ``requires_decision``: all over real HTTP with the
official ``grantex`` SDK on the API side."""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grantex
import httpx
import jwt
import pytest
from click.testing import CliRunner
from grantex import AuthorizeParams, ExchangeTokenParams, GrantexApiError, ToolManifest
from grantex._verify import clear_jwks_cache
from grantex.decisions import (
    DecisionGrantError,
    compute_action_hash,
    verify_decision_grant,
    verify_decision_grants,
)
from helpers import MovableClock

from grantex_local import Ledger, decisions, developers, errors
from grantex_local.approval import approval_code
from grantex_local.cli import cli
from grantex_local.server.testing import RunningServer, running_server

CONNECTOR = "acme_kyb"
TOOL = "case_decision"
SCOPES = [f"tool:{CONNECTOR}:write"]


@dataclass
class World:
    path: Path
    server: RunningServer
    key: str
    other_key: str

    @property
    def base(self) -> str:
        return self.server.base_url

    def client(self, key: str | None = None) -> grantex.Grantex:
        return grantex.Grantex(api_key=key or self.key, base_url=self.base, max_retries=0)

    def ledger(self) -> Ledger:
        return Ledger(self.path, create=False)


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    path = tmp_path / "grantex.db"
    with Ledger(path) as ledger:
        key = developers.create_api_key(ledger, developers.default_developer(ledger).id, "sdk").key
        other = developers.create_developer(ledger, "Someone else", sandbox=True)
        other_key = developers.create_api_key(ledger, other.id, "sdk").key
    clear_jwks_cache()
    with running_server(path) as server:
        yield World(path, server, key, other_key)


def action(case: str = "case-1", decision: str = "approve", **extra: Any) -> dict[str, Any]:
    out: dict[str, Any] = {"case_id": case, "action": TOOL, "decision": decision, "subject": "gb:00000001",
                           "amount": "1250.5"}
    out.update(extra)
    return out


def ask(gx: grantex.Grantex, act: dict[str, Any] | None = None, version: str = "v1",
        **options: Any) -> dict[str, Any]:
    return gx.decisions.create_request(act or action(), connector=CONNECTOR, case_version=version,
                                       memo="Customer verified; sanctions clear.",
                                       policy_score={"score": 0.93, "model": "kyb-2"}, **options)


def approve(world: World, request_id: str, approver: str = "alice") -> decisions.Approved:
    with world.ledger() as ledger:
        return decisions.approve(ledger, request_id, approver=approver, channel="library",
                                 shown_at=ledger.now() - 2)


def open_page(url: str) -> tuple[httpx.Client, dict[str, str]]:
    browser = httpx.Client()
    page = browser.get(url, headers={"accept": "text/html"})
    assert page.status_code == 200, page.text
    fields = dict(re.findall(r'name="(csrf_token|served_at)" value="([^"]+)"', page.text))
    assert set(fields) == {"csrf_token", "served_at"}
    return browser, fields


def key_of(world: World) -> Any:
    with world.ledger() as ledger:
        return ledger.signing_key()[1].public_key()


def agent_token(world: World, name: str = "kyb-agent") -> tuple[str, str, str]:
    """(agent id, grant id, grant token) through the SDK's sandbox flow."""
    gx = world.client()
    agent = gx.agents.register(name=name, scopes=SCOPES)
    auth = gx.authorize(AuthorizeParams(agent_id=agent.id, user_id="user_alice", scopes=SCOPES))
    token = gx.tokens.exchange(ExchangeTokenParams(code=auth.code, agent_id=agent.id))
    return agent.id, token.grant_id, token.grant_token


def sub_reason(call: Any) -> str:
    with pytest.raises(DecisionGrantError) as refused:
        call()
    return str(refused.value.sub_reason)


def refusal(gx: grantex.Grantex, tokens: list[str], act: dict[str, Any] | None = None, version: str = "v1",
            **options: Any) -> str:
    """The sub-reason the SDK raises when the server refuses to consume ``tokens``."""
    return sub_reason(lambda: gx.decisions.consume(tokens, act or action(), version, **options))


# ── the action hash ──────────────────────────────────────────────────────────


@pytest.mark.parametrize("act", [
    action(),
    action(amount=1250.5),
    action(amount=10**15),
    action(amount=1e21),
    action(amount=0.1),
    action(amount=-0.0),
    action(subject="gb:ünïcödé \u20ac 😀", extra={"currency": "GBP", "zeta": 1, "alpha": "x"}),
    {"case_id": "c", "action": "t.x-1", "decision": "a", "subject": "\u00e9\U0001d11e"},
])
def test_action_hash_is_the_sdks(act: dict[str, Any]) -> None:
    """audit.hashing.canonical_json is RFC 8785 for what an action holds: the same hash as the SDK's
    own JCS (grantex.canonical) for numbers, non-ASCII and astral characters, key order."""
    assert decisions.action_hash(decisions.check_action(act)) == compute_action_hash(act)


@pytest.mark.parametrize("bad", [
    {**action(), "extra": {}}, {**action(), "amount": None}, {**action(), "amount": "01.50"},
    {**action(), "decision": "Approve"}, {**action(), "nope": 1}, {"case_id": "c", "action": TOOL},
    {**action(), "subject": "a\u200bb"}, {**action(), "amount": float("inf")}, [],
])
def test_actions_the_sdk_refuses_are_refused(bad: Any) -> None:
    with pytest.raises(errors.InvalidInput):
        decisions.check_action(bad)


# ── the whole path through the SDK ───────────────────────────────────────────


def test_create_get_approve_on_the_page_verify_offline_and_consume(world: World) -> None:
    gx = world.client()
    created = ask(gx)
    request_id = created["id"]
    assert request_id.startswith("dreq_") and created["status"] == "pending"
    assert created["approvalPage"] == f"{world.base}/decisions/{request_id}"
    assert created["actionHash"] == compute_action_hash(action())
    assert "decisionGrants" not in created and created["decisionGrantsReady"] is False
    assert ask(gx)["id"] == request_id  # idempotent while open
    assert ask(gx, version="v2")["id"] != request_id  # another case version is another request
    assert gx.decisions.get_request(request_id)["status"] == "pending"

    # the page shows the action, and approving needs the approval code
    browser, form = open_page(created["approvalPage"])
    page = browser.get(created["approvalPage"], headers={"accept": "text/html"}).text
    for shown in ("case-1", "gb:00000001", "1250.5", CONNECTOR, "sanctions clear", "kyb-2", TOOL):
        assert shown in page
    with world.ledger() as ledger:
        code = approval_code(ledger, request_id)
    answer = browser.post(created["approvalPage"], data={**form, "decision": "approve", "approver": "alice",
                                                         "approval_code": code})
    assert answer.status_code == 200, answer.text
    assert "Approved" in answer.text and "alice" in answer.text

    fetched = gx.decisions.get_request(request_id)
    assert fetched["status"] == "approved" and fetched["decisionGrantsReady"] is True
    [token] = fetched["decisionGrants"]
    [approval] = fetched["approvals"]
    assert approval["approver"] == "alice" and approval["channel"] == "approval-page/approval-code"

    # the SDK's offline verifier accepts it against the server's JWKS, with the profile it checks
    grant = verify_decision_grant(token, action(), "v1", jwks_uri=f"{world.base}/.well-known/jwks.json",
                                  issuer=world.base, connector=CONNECTOR)
    assert grant.sub == "alice" and grant.dwell_source == "server" and grant.dwell_ms >= 0
    assert grant.decision_request == request_id and grant.jti == approval["jti"]
    assert grant.exp - grant.iat <= 86_400 and grant.four_eyes is None
    assert jwt.get_unverified_header(token)["typ"] == "decision+jwt"
    assert grant.memo_hash == created["memo"]["hash"]
    assert grant.policy_score_hash == created["policyScore"]["hash"]

    # an edited token is refused offline (its signature no longer holds)
    header, _, signature = token.split(".")
    claims = jwt.decode(token, options={"verify_signature": False})
    claims["dwell_ms"] = 999_999
    forged = jwt.encode(claims, "x" * 32, algorithm="HS256").split(".")[1]
    with pytest.raises(DecisionGrantError) as edited:
        verify_decision_grant(f"{header}.{forged}.{signature}", action(), "v1",
                              jwks_uri=f"{world.base}/.well-known/jwks.json", issuer=world.base)
    assert edited.value.sub_reason == "malformed"
    assert refusal(gx, [f"{header}.{forged}.{signature}"]) == "malformed"

    # consume once through the SDK; a replay is `consumed`
    consumed = gx.decisions.consume([token], action(), "v1")
    assert consumed.jtis == (grant.jti,) and consumed.request_id == request_id
    assert consumed.action_hash == created["actionHash"] and consumed.approvers[0]["sub"] == "alice"
    assert refusal(gx, [token]) == "consumed"
    assert gx.decisions.get_request(request_id)["status"] == "consumed"

    with world.ledger() as ledger:
        steps = [r[0] for r in ledger.query(
            "SELECT action FROM audit_entries WHERE action LIKE 'grantex.decision.%' ORDER BY seq")]
    assert steps[:2] == ["grantex.decision.requested", "grantex.decision.requested"]
    assert {f"grantex.decision.{s}" for s in ("approved", "consumed", "refused")} <= set(steps)


def test_serve_console_shows_the_link_with_the_approval_code(world: World) -> None:
    printed: list[str] = []
    world.server.app.state.grantex.console = printed.append
    created = ask(world.client())
    ask(world.client())  # the same open request: announced once
    with world.ledger() as ledger:
        code = approval_code(ledger, created["id"])
    assert len(printed) == 1 and f"{created['approvalPage']}#approval={code}" in printed[0]
    assert code not in str(created)  # the API caller (maybe the agent) never sees it


def test_approving_on_the_page_needs_proof_and_nothing_is_decided_without_it(world: World) -> None:
    created = ask(world.client())
    url = created["approvalPage"]
    browser, form = open_page(url)
    for proof in ({}, {"approval_code": "AAAAA-AAAAA"}, {"session_token": "not.a.session"}):
        answer = browser.post(url, data={**form, "decision": "approve", "approver": "mallory", **proof})
        assert answer.status_code == 403, answer.text
        assert answer.json()["code"] == "APPROVAL_REQUIRED"
    # no CSRF token: refused before anything else
    assert httpx.post(url, data={"decision": "approve"}).status_code == 403
    # a foreign Origin is refused
    with world.ledger() as ledger:
        code = approval_code(ledger, created["id"])
    foreign = browser.post(url, data={**form, "decision": "approve", "approver": "m", "approval_code": code},
                           headers={"origin": "https://evil.example"})
    assert foreign.status_code == 403
    fetched = world.client().decisions.get_request(created["id"])
    assert fetched["status"] == "pending" and fetched["approvals"] == []
    # a principal session minted by the ledger's owner proves it too, and names the approver
    from grantex_local.principals import create_session

    with world.ledger() as ledger:
        session = create_session(ledger, developers.default_developer(ledger).id, "user_bob", via="local")
    answer = browser.post(url, data={**form, "decision": "approve", "session_token": session.session_token})
    assert answer.status_code == 200, answer.text
    assert world.client().decisions.get_request(created["id"])["approvals"][0]["approver"] == "user_bob"


def test_another_developer_sees_404(world: World) -> None:
    created = ask(world.client())
    other = world.client(world.other_key)
    for call in (lambda: other.decisions.get_request(created["id"]),
                 lambda: other.decisions.cancel_request(created["id"])):
        with pytest.raises(GrantexApiError) as missing:
            call()
        assert missing.value.status_code == 404
    # and another developer's decision grant is an unknown grant here
    token = approve(world, created["id"]).token
    assert refusal(other, [token]) == "unknown_grant"
    assert world.client().decisions.consume([token], action(), "v1").jtis


# ── enforce() on a manifest tool with requires_decision ──────────────────────


def test_enforce_denies_before_approval_allows_once_then_consumed(world: World) -> None:
    _, _, grant_token = agent_token(world)
    enforcer = world.client()
    enforcer.load_manifest(ToolManifest(CONNECTOR, {
        TOOL: {"permission": "write", "requires_decision": True}}))
    arguments = {"case_id": "case-1", "decision": "approve", "subject": "gb:00000001", "amount": "1250.5",
                 "note": "ignored by the hash"}

    before = enforcer.enforce(grant_token, CONNECTOR, TOOL, arguments=arguments, case_version="v1")
    assert before.allowed is False and before.reason_code == "decision_required"

    created = ask(world.client())
    pending = world.client().decisions.get_request(created["id"])
    assert "decisionGrants" not in pending
    result = CliRunner().invoke(cli, ["--ledger", str(world.path), "decisions", "approve", created["id"],
                                      "--approver", "carol", "--yes"])
    assert result.exit_code == 0, result.output
    grants = world.client().decisions.get_request(created["id"])["decisionGrants"]

    allowed = enforcer.enforce(grant_token, CONNECTOR, TOOL, arguments=arguments, case_version="v1",
                               decision_grants=grants)
    assert allowed.allowed is True, allowed.reason
    assert allowed.decision is not None and allowed.decision.request_id == created["id"]
    assert allowed.decision.approvers[0]["sub"] == "carol"

    replay = enforcer.enforce(grant_token, CONNECTOR, TOOL, arguments=arguments, case_version="v1",
                              decision_grants=grants)
    assert replay.allowed is False and replay.reason_code == "decision_invalid"
    assert replay.sub_reason == "consumed"


# ── four eyes ────────────────────────────────────────────────────────────────


def test_four_eyes_same_approver_refused_two_approvers_consume_together(world: World) -> None:
    gx = world.client()
    created = ask(gx, approvals_required=2)
    assert created["approvalsRequired"] == 2
    first = approve(world, created["id"], "alice")
    with pytest.raises(errors.DecisionRefused) as twice:
        approve(world, created["id"], "alice")
    assert twice.value.sub_reason == "same_approver"
    with world.ledger() as ledger:
        [refusal_entry] = ledger.query(
            "SELECT preimage FROM audit_entries WHERE action = 'grantex.decision.refused'")
    assert "same_approver" in refusal_entry[0] and "alice" in refusal_entry[0]
    # the same refusal on the page
    browser, form = open_page(created["approvalPage"])
    with world.ledger() as ledger:
        code = approval_code(ledger, created["id"])
    again = browser.post(created["approvalPage"], data={**form, "decision": "approve", "approver": "alice",
                                                        "approval_code": code})
    assert again.status_code == 409 and again.json()["code"] == "DECISION_REFUSED"
    assert "decisionGrants" not in gx.decisions.get_request(created["id"])
    # one grant alone is not enough; the same grant twice is the same approver
    assert refusal(gx, [first.token]) == "four_eyes_incomplete"
    assert refusal(gx, [first.token, first.token]) == "same_approver"

    second = approve(world, created["id"], "bob")
    tokens = gx.decisions.get_request(created["id"])["decisionGrants"]
    assert tokens == [first.token, second.token]
    verified = verify_decision_grants(tokens, action(), "v1", issuer=world.base, approvals_required=2,
                                      key_resolver=lambda _h: key_of(world))
    assert verified.grants[1].four_eyes is not None and verified.grants[1].four_eyes.first_sub == "alice"
    consumed = gx.decisions.consume(tokens, action(), "v1")
    assert list(consumed.jtis) == sorted([first.jti, second.jti])
    assert [a["sub"] for a in consumed.approvers] == ["alice", "bob"]
    assert sub_reason(lambda: gx.decisions.consume(tokens, action(), "v1")) == "consumed"


def test_four_eyes_on_names_the_decision(world: World) -> None:
    created = ask(world.client(), four_eyes_on=["approve"])
    assert created["approvalsRequired"] == 2
    assert ask(world.client(), action(decision="decline"), four_eyes_on=["approve"])["approvalsRequired"] == 1


# ── every sub-reason ─────────────────────────────────────────────────────────


def test_action_mismatch_wrong_case_case_changed_revoked(world: World) -> None:
    gx = world.client()
    token = approve(world, ask(gx)["id"]).token
    assert refusal(gx, [token], action(decision="decline")) == "action_mismatch"
    assert refusal(gx, [token], action(amount="1250.51")) == "action_mismatch"
    assert refusal(gx, [token], action(case="case-2")) == "wrong_case"
    assert refusal(gx, [token], version="v2") == "case_changed"
    assert refusal(gx, ["garbage"]) == "malformed"

    # a new case version revokes the unconsumed grants of the old one
    moved = gx.decisions.set_case_version("case-1", "v2")
    assert moved["caseVersion"] == "v2" and moved["revokedGrants"] == 1
    assert refusal(gx, [token]) == "revoked"
    # and a request for the old version is refused now
    with pytest.raises(GrantexApiError) as stale:
        ask(gx, version="v1")
    assert stale.value.status_code == 400

    # cancelling a request revokes its grants too
    cancelled_id = ask(gx, version="v2")["id"]
    cancelled_token = approve(world, cancelled_id).token
    assert gx.decisions.cancel_request(cancelled_id)["status"] == "cancelled"
    assert refusal(gx, [cancelled_token], version="v2") == "revoked"


def test_expired(tmp_path: Path) -> None:
    clock = MovableClock()
    with Ledger(tmp_path / "g.db", clock=clock) as ledger:
        dev = developers.default_developer(ledger).id
        found, _ = decisions.create_request(ledger, dev, action=action(), connector=CONNECTOR,
                                            case_version="v1", memo="m", policy_score={})
        token = decisions.approve(ledger, found.id, approver="alice", channel="library",
                                  shown_at=clock.now).token
        clock.advance(decisions.GRANT_SECONDS + 1)
        with pytest.raises(errors.DecisionRefused) as late:
            decisions.consume(ledger, dev, [token], action(), "v1")
        assert (late.value.sub_reason, late.value.status) == ("expired", 410)
        # a request nobody approved in time cannot be approved any more
        stale, _ = decisions.create_request(ledger, dev, action=action(case="c9"), connector=CONNECTOR,
                                            case_version="v1", memo="m", policy_score={},
                                            expires_in_seconds=60)
        clock.advance(61)
        assert decisions.get_request(ledger, dev, stale.id).status == "expired"
        with pytest.raises(errors.InvalidState):
            decisions.approve(ledger, stale.id, approver="alice", channel="library", shown_at=clock.now)


def test_wrong_agent_and_grants_for_the_named_agent(world: World) -> None:
    gx = world.client()
    agent_id, grant_id, grant_token = agent_token(world, "kyb-agent")
    _, _, other_token = agent_token(world, "other-agent")
    created = ask(gx, agent_id=agent_id, grant_id=grant_id)
    token = approve(world, created["id"]).token
    # bound: the API key alone never sees the grants
    fetched = gx.decisions.get_request(created["id"])
    assert fetched["decisionGrantsReady"] is True and "decisionGrants" not in fetched
    with pytest.raises(GrantexApiError) as refused:
        gx.decisions.get_grants(created["id"], other_token)
    assert refused.value.status_code == 403 and refused.value.body["subReason"] == "wrong_agent"
    assert gx.decisions.get_grants(created["id"], grant_token)["decisionGrants"] == [token]
    # consumed only with that agent's grant token
    assert refusal(gx, [token], grant_token=other_token) == "wrong_agent"
    assert refusal(gx, [token]) == "wrong_agent"
    assert sub_reason(lambda: gx.decisions.consume_request(created["id"], action(), "v1")) == "wrong_agent"
    assert gx.decisions.consume([token], action(), "v1", grant_token=grant_token).jtis


def test_consume_request_by_id(world: World) -> None:
    gx = world.client()
    created = ask(gx)
    approve(world, created["id"])
    consumed = gx.decisions.consume_request(created["id"], action(), "v1")
    assert consumed.request_id == created["id"] and len(consumed.jtis) == 1
    assert sub_reason(lambda: gx.decisions.consume_request(created["id"], action(), "v1")) == "consumed"


def test_a_refused_consumption_changes_nothing(world: World) -> None:
    gx = world.client()
    first = ask(gx, approvals_required=2)
    a, b = approve(world, first["id"], "alice"), approve(world, first["id"], "bob")
    # one good grant with one for another action: all or none
    other = approve(world, ask(gx, action(case="case-3"))["id"])
    assert refusal(gx, [a.token, other.token]) == "wrong_case"
    conn = sqlite3.connect(world.path)
    try:
        spent = conn.execute("SELECT COUNT(*) FROM decision_grants WHERE consumed_at IS NOT NULL").fetchone()
        assert spent[0] == 0
    finally:
        conn.close()
    assert gx.decisions.consume([a.token, b.token], action(), "v1").jtis


# ── the CLI ──────────────────────────────────────────────────────────────────


def test_cli_list_show_approve_cancel(world: World) -> None:
    created = ask(world.client(), approvals_required=2)
    runner = CliRunner()

    def run(*args: str, code: int = 0) -> str:
        result = runner.invoke(cli, ["--ledger", str(world.path), "decisions", *args])
        assert result.exit_code == code, result.output
        return result.output

    assert created["id"] in run("list", "--open")
    shown = run("show", created["id"])
    with world.ledger() as ledger:
        assert approval_code(ledger, created["id"]) in shown
    assert "sanctions clear" in shown and "1250.5" in shown
    out = run("approve", created["id"], "--approver", "alice", "--yes")
    assert "1 of 2" in out and "dgnt_" in out and "eyJ" not in out  # the token is never printed
    refused = run("approve", created["id"], "--approver", "alice", "--yes", code=2)
    assert refused.strip().splitlines()[-1].startswith("error:") and "already approved" in refused
    declined = runner.invoke(cli, ["--ledger", str(world.path), "decisions", "approve", created["id"],
                                   "--approver", "bob"], input="n\n")
    assert declined.exit_code != 0
    assert "2 of 2" in run("approve", created["id"], "--approver", "bob", "--yes")
    assert run("list", "--open").strip() == "no decision requests"
    run("show", "dreq_nope", code=2)
    another = ask(world.client(), action(case="case-7"))
    assert "cancelled" in run("cancel", another["id"])


# ── the TUI's consent inbox ──────────────────────────────────────────────────


def test_the_tui_inbox_lists_and_approves_a_decision(tmp_path: Path) -> None:
    import asyncio

    from textual.worker import WorkerState

    from grantex_local.tui.app import GrantexApp
    from grantex_local.tui.data import TuiData
    from grantex_local.tui.screens import ConfirmScreen

    path = tmp_path / "g.db"
    with Ledger(path) as ledger:
        dev = developers.default_developer(ledger).id
        found, _ = decisions.create_request(ledger, dev, action=action(), connector=CONNECTOR,
                                            case_version="v1", memo="Looks fine to me.",
                                            policy_score={"score": 0.5})
        code = approval_code(ledger, found.id)

    async def settle(pilot: Any) -> None:
        for _ in range(3):
            for _ in range(1000):
                if not any(w.state in (WorkerState.PENDING, WorkerState.RUNNING) for w in pilot.app.workers):
                    break
                await asyncio.sleep(0.005)
            await pilot.pause()

    async def drive() -> None:
        app = GrantexApp(TuiData(Ledger(path, create=False)), poll_seconds=0.2)
        try:
            async with app.run_test(size=(120, 36)) as pilot:
                await settle(pilot)
                await pilot.press("2")
                await settle(pilot)
                inbox = app.main.inbox
                assert [d.request_id for d in inbox.decisions] == [found.id] and inbox.rows == ()
                details = inbox.decision_details
                assert details is not None and details["approvalCode"] == code
                assert details["memo"]["content"] == "Looks fine to me." and "decisionGrants" not in details
                await pilot.press("a")
                await settle(pilot)
                assert isinstance(app.screen, ConfirmScreen)
                await pilot.press("y")
                await settle(pilot)
                for _ in range(80):
                    if not inbox.decisions:
                        break
                    await pilot.pause(0.05)
                assert inbox.decisions == ()
        finally:
            app.data.close()

    asyncio.run(drive())
    with Ledger(path, create=False) as ledger:
        approved = decisions.get_request(ledger, None, found.id)
        assert approved.status == "approved"
        [grant] = approved.approvals
        assert grant.channel == "tui" and grant.dwell_ms >= 0
