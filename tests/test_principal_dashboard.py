"""The principal-facing side of principal sessions (issue 12, SDK-SURFACE §5) over real HTTP.

Why these tests: the session token lets a person see and take back what was given in their
name, so it must reach exactly their grants under exactly the developer that minted it (404,
never 403, for anything else: no leak of what exists), stop at its expiry, never work as a
developer key, revoke through the normal path (cascade, audit entries, tokens dead online),
and refuse a revoke sent from another site.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import grantex
import httpx
import pytest
from click.testing import CliRunner
from grantex import AuthorizeParams, CreatePrincipalSessionParams, ExchangeTokenParams
from helpers import MovableClock, dump

from grantex_local import Ledger, developers
from grantex_local import principals as sessions
from grantex_local.cli import cli
from grantex_local.server.testing import RunningServer, running_server

SCOPES = ["calendar:read", "email:send"]


@dataclass
class World:
    server: RunningServer
    path: Path
    key: str
    dev_id: str
    other_key: str
    clock: MovableClock

    @property
    def base(self) -> str:
        return self.server.base_url

    def sdk(self, key: str | None = None) -> grantex.Grantex:
        return grantex.Grantex(api_key=key or self.key, base_url=self.base, max_retries=0)

    def flow(self, principal: str, scopes: list[str] = SCOPES, *, key: str | None = None,
             name: str = "Trip Planner") -> tuple[str, str]:
        """authorize → (sandbox) consent → token with the SDK; (grantId, grantToken)."""
        client = self.sdk(key)
        agent = client.agents.register(name=name, description=f"{name} does things", scopes=scopes)
        auth = client.authorize(AuthorizeParams(agent_id=agent.id, user_id=principal, scopes=scopes))
        assert auth.code is not None
        issued = client.tokens.exchange(ExchangeTokenParams(code=auth.code, agent_id=agent.id))
        return issued.grant_id, issued.grant_token

    def delegate(self, parent_token: str, name: str, scopes: list[str]) -> tuple[str, str]:
        client = self.sdk()
        sub = client.agents.register(name=name, scopes=scopes)
        answer = client.grants.delegate(parent_grant_token=parent_token, sub_agent_id=sub.id, scopes=scopes)
        return answer["grantId"], answer["grantToken"]

    def session(self, principal: str, *, key: str | None = None, expires_in: str = "1h") -> str:
        created = self.sdk(key).principal_sessions.create(
            CreatePrincipalSessionParams(principal_id=principal, expires_in=expires_in))
        return created.session_token

    def call(self, method: str, path: str, token: str | None, **headers: str) -> httpx.Response:
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        return httpx.request(method, self.base + path, headers=headers)

    def revoked_at(self, grant_id: str) -> str | None:
        with Ledger(self.path, create=False) as ledger:
            row = ledger.query_one("SELECT revoked_at FROM grants WHERE id = ?", (grant_id,))
        assert row is not None
        return row["revoked_at"]  # type: ignore[no-any-return]

    def online_valid(self, token: str) -> bool:
        answer = httpx.post(self.base + "/v1/tokens/verify", json={"token": token},
                            headers={"Authorization": f"Bearer {self.key}"})
        assert answer.status_code == 200, answer.text
        return bool(answer.json()["valid"])


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    path = tmp_path / "grantex.db"
    clock = MovableClock()
    with Ledger(path, clock=clock) as ledger:
        dev = developers.create_developer(ledger, "Acme", sandbox=True)
        key = developers.create_api_key(ledger, dev.id).key
        other = developers.create_developer(ledger, "Other", sandbox=True)
        other_key = developers.create_api_key(ledger, other.id).key
    with running_server(path, clock=clock, webhook_delivery=False) as server:  # nothing writes behind us
        yield World(server, path, key, dev.id, other_key, clock)


# ── the conformance suite's principal-sessions checks (SDK-SURFACE §5.2) ─────


def test_the_seven_conformance_checks(world: World) -> None:
    principal = "principal-session-1"
    grant_id, _ = world.flow(principal)
    # 1
    created = world.sdk().principal_sessions.create(
        CreatePrincipalSessionParams(principal_id=principal, expires_in="1h"))
    assert created.session_token and created.expires_at and "/permissions#session=" in created.dashboard_url
    # 2
    empty = httpx.post(world.base + "/v1/principal-sessions", json={},
                       headers={"Authorization": f"Bearer {world.key}"})
    assert empty.status_code == 400
    # 3
    token = world.session(principal)
    listed = world.call("GET", "/v1/principal/grants", token)
    assert listed.status_code == 200, listed.text
    body = listed.json()
    assert isinstance(body["grants"], list) and body["principalId"] == principal
    assert grant_id in [g["grantId"] for g in body["grants"]]
    mine = next(g for g in body["grants"] if g["grantId"] == grant_id)
    for field in ("grantId", "agentId", "agentName", "agentDescription", "agentDid", "scopes", "status",
                  "issuedAt", "expiresAt", "delegationDepth"):
        assert field in mine, field
    assert mine["agentName"] == "Trip Planner" and mine["status"] == "active"
    assert [d["description"] for d in mine["scopeDescriptions"]] == ["Read calendar events",
                                                                       "Send emails on your behalf"]
    assert mine["lastActivity"] is not None and mine["delegationChain"] == [] and mine["descendants"] == 0
    # 4
    audit = world.call("GET", "/v1/principal/audit", world.session(principal))
    assert audit.status_code == 200 and isinstance(audit.json()["entries"], list)
    entries = audit.json()["entries"]
    assert entries and all(set(e) == {"entryId", "agentId", "agentDid", "grantId", "principalId", "action",
                                      "metadata", "status", "timestamp"} for e in entries)
    assert all(e["principalId"] == principal for e in entries)
    assert [e["timestamp"] for e in entries] == sorted((e["timestamp"] for e in entries), reverse=True)
    # 5
    read_grant, _ = world.flow(principal, ["calendar:read"])
    deleted = world.call("DELETE", f"/v1/principal/grants/{read_grant}", world.session(principal))
    assert deleted.status_code == 204 and deleted.content == b""
    assert world.revoked_at(read_grant) is not None
    # 6
    assert world.call("GET", "/v1/agents", world.session(principal)).status_code == 401
    # 7
    page = httpx.get(world.base + "/permissions")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")


def test_missing_and_malformed_bearers_are_401_in_the_error_shape(world: World) -> None:
    world.flow("alice")
    for headers, message in (({}, "Missing session token"),
                             ({"Authorization": "Basic abc"}, "Missing session token"),
                             ({"Authorization": "Bearer"}, "Missing session token"),
                             ({"Authorization": "Bearer not.a.jwt"}, "Invalid or expired session token"),
                             ({"Authorization": f"Bearer {world.key}"}, "Invalid or expired session token")):
        answer = httpx.get(world.base + "/v1/principal/grants", headers=headers)
        assert answer.status_code == 401, headers
        body = answer.json()
        assert body["code"] == "UNAUTHORIZED" and body["message"].startswith(message), body
        assert "Traceback" not in answer.text


def test_principal_isolation(world: World) -> None:
    alice_grant, _ = world.flow("alice")
    bob_grant, bob_token = world.flow("bob")
    alice = world.session("alice")
    listed = world.call("GET", "/v1/principal/grants", alice).json()["grants"]
    assert [g["grantId"] for g in listed] == [alice_grant]
    before = dump(world.path)
    for method, path in (("DELETE", f"/v1/principal/grants/{bob_grant}"),
                         ("GET", f"/v1/principal/grants/{bob_grant}/blast-radius"),
                         ("DELETE", "/v1/principal/grants/grnt_01NOSUCHGRANT0000000000000")):
        refused = world.call(method, path, alice)
        assert refused.status_code == 404, (method, path, refused.text)
        assert set(refused.json()) == {"message", "code", "requestId"}
    # the same answer for a grant that exists elsewhere and one that does not exist at all
    texts = {world.call("DELETE", f"/v1/principal/grants/{g}", alice).json()["message"].replace(g, "X")
             for g in (bob_grant, "grnt_01NOSUCHGRANT0000000000000")}
    assert len(texts) == 1
    assert dump(world.path) == before
    assert world.revoked_at(bob_grant) is None and world.online_valid(bob_token)
    assert all(e["principalId"] == "alice"
               for e in world.call("GET", "/v1/principal/audit", alice).json()["entries"])


def test_another_developers_session_cannot_touch_this_developers_grant(world: World) -> None:
    grant_id, _ = world.flow("alice")
    foreign = world.session("alice", key=world.other_key)  # same principal name, another developer
    assert world.call("GET", "/v1/principal/grants", foreign).json()["grants"] == []
    assert world.call("DELETE", f"/v1/principal/grants/{grant_id}", foreign).status_code == 404
    assert world.revoked_at(grant_id) is None


def test_an_expired_session_is_401_and_revokes_nothing(world: World) -> None:
    grant_id, token = world.flow("alice")
    session = world.session("alice", expires_in="10m")
    assert world.call("GET", "/v1/principal/grants", session).status_code == 200
    world.clock.advance(11 * 60)
    before = dump(world.path)
    for method, path in (("GET", "/v1/principal/grants"), ("GET", "/v1/principal/audit"),
                         ("DELETE", f"/v1/principal/grants/{grant_id}")):
        answer = world.call(method, path, session)
        assert answer.status_code == 401, (method, answer.text)
        assert answer.json()["message"].startswith("Invalid or expired session token")
        assert "expired" in answer.json()["message"]
    assert dump(world.path) == before
    assert world.revoked_at(grant_id) is None and world.online_valid(token)


def test_a_session_token_is_refused_on_developer_endpoints(world: World) -> None:
    world.flow("alice")
    session = world.session("alice")
    for method, path in (("GET", "/v1/agents"), ("GET", "/v1/grants"), ("GET", "/v1/audit/entries")):
        assert world.call(method, path, session).status_code == 401, path


def test_revoking_a_root_cascades_and_is_recorded_as_the_principals(world: World) -> None:
    root, root_token = world.flow("alice", ["calendar:read", "email:send"], name="Assistant")
    child, child_token = world.delegate(root_token, "Mailer", ["email:send"])
    grandchild, grandchild_token = world.delegate(child_token, "Sender", ["email:send"])
    session = world.session("alice")
    listed = {g["grantId"]: g for g in world.call("GET", "/v1/principal/grants", session).json()["grants"]}
    assert set(listed) == {root, child, grandchild}
    assert next(iter(listed)) == grandchild  # newest first
    assert listed[root]["descendants"] == 2 and listed[child]["descendants"] == 1
    assert [a["agentName"] for a in listed[grandchild]["delegationChain"]] == ["Assistant", "Mailer"]
    assert listed[grandchild]["parentGrantId"] == child and listed[grandchild]["delegationDepth"] == 2

    radius = world.call("GET", f"/v1/principal/grants/{root}/blast-radius", session).json()
    assert [b["agentName"] for b in radius["below"]] == ["Mailer", "Sender"]
    assert radius["agentName"] == "Assistant" and radius["descendants"] == 2
    assert world.revoked_at(child) is None  # showing the radius revokes nothing

    assert world.call("DELETE", f"/v1/principal/grants/{root}", session).status_code == 204
    for grant_id in (root, child, grandchild):
        assert world.revoked_at(grant_id) is not None
    for token in (root_token, child_token, grandchild_token):
        assert not world.online_valid(token)
    assert world.call("GET", "/v1/principal/grants", session).json()["grants"] == []
    assert world.call("DELETE", f"/v1/principal/grants/{root}", session).status_code == 404  # gone now

    with Ledger(world.path, create=False) as ledger:
        rows = ledger.query("SELECT preimage FROM audit_entries WHERE action = 'grantex.grant.revoked'")
        revoked = {json.loads(r["preimage"])["grantId"]: json.loads(r["preimage"]) for r in rows}
        emitted = ledger.query("SELECT body FROM events WHERE type = 'grant.revoked'")
    assert set(revoked) == {root, child, grandchild}
    assert revoked[root]["principalId"] == "alice"
    assert revoked[root]["metadata"]["cause"] == "revoked_by_principal"
    assert revoked[root]["metadata"]["revokedBy"] == {"principalId": "alice", "via": "api-key"}
    assert revoked[child]["metadata"]["cause"] == "ancestor_revoked"
    assert len(emitted) == 1
    payload = json.loads(emitted[0]["body"])["data"]
    assert payload["grantId"] == root and payload["cascade"] is True
    entries = world.call("GET", "/v1/principal/audit", session).json()["entries"]
    assert entries[0]["action"] in ("grantex.grant.revoked", "grantex.principal_session.created")
    revoked_entries = {e["grantId"] for e in entries if e["action"] == "grantex.grant.revoked"}
    assert revoked_entries == {root, child, grandchild}


def test_a_revoke_from_a_foreign_origin_is_refused(world: World) -> None:
    grant_id, _ = world.flow("alice")
    session = world.session("alice")
    before = dump(world.path)
    refused = world.call("DELETE", f"/v1/principal/grants/{grant_id}", session, Origin="https://evil.example")
    assert refused.status_code == 403 and refused.json()["code"] == "CSRF_FAILED"
    assert dump(world.path) == before and world.revoked_at(grant_id) is None
    same = world.call("DELETE", f"/v1/principal/grants/{grant_id}", session, Origin=world.base)
    assert same.status_code == 204


def test_the_page_is_public_and_locked_down(world: World) -> None:
    page = httpx.get(world.base + "/permissions")
    assert page.status_code == 200
    csp = page.headers["content-security-policy"]
    assert "frame-ancestors 'none'" in csp and "script-src 'self'" in csp and "'unsafe-inline'" not in csp
    assert page.headers["referrer-policy"] == "no-referrer" and page.headers["cache-control"] == "no-store"
    assert "<script>" not in page.text and 'name="viewport"' in page.text
    assert "grantex-local principals link USER" in page.text
    for asset in ("/permissions/assets/permissions.js", "/permissions/assets/permissions.css"):
        assert httpx.get(world.base + asset).status_code == 200
    assert httpx.get(world.base + "/permissions?session=abc").status_code == 200


def test_the_cli_link_opens_the_page_with_a_working_local_session(world: World) -> None:
    world.flow("alice")
    runner = CliRunner()
    answer = runner.invoke(cli, ["principals", "link", "alice", "--ledger", str(world.path), "--json",
                                 "--developer", world.dev_id])
    assert answer.exit_code == 0, answer.output
    data: dict[str, Any] = json.loads(answer.stdout)
    assert set(data) == {"dashboardUrl", "expiresAt", "principalId"} and data["principalId"] == "alice"
    url = data["dashboardUrl"]
    assert url.startswith(world.base + "/permissions#session=")
    token = unquote(url.split("#session=", 1)[1])
    with Ledger(world.path, create=False, clock=world.clock) as ledger:
        verified = sessions.verify_session(ledger, token)
    assert (verified.principal_id, verified.developer_id, verified.via) == ("alice", world.dev_id, "local")
    assert httpx.get(url.split("#", 1)[0]).status_code == 200
    seen = world.call("GET", "/v1/principal/grants", token)
    assert seen.status_code == 200 and len(seen.json()["grants"]) == 1

    human = runner.invoke(cli, ["principals", "link", "alice", "--ledger", str(world.path),
                                "--developer", world.dev_id, "--expires-in", "30m"])
    assert human.exit_code == 0, human.output
    assert human.stdout.startswith(world.base + "/permissions#session=")
    assert "30 min" in human.stderr and "serve" in human.stderr
    got = runner.invoke(cli, ["principals", "link", "alice", "--ledger", str(world.path),
                              "--get", "principalId"])
    assert got.exit_code == 0 and got.stdout.strip() == "alice"

    unknown = runner.invoke(cli, ["principals", "link", "alice", "--ledger", str(world.path),
                                  "--developer", "dev_01NOSUCHDEVELOPER000000000"])
    assert unknown.exit_code == 2 and unknown.stderr.startswith("error: ")
    assert "Traceback" not in unknown.output
    listed = runner.invoke(cli, ["principals", "list", "--ledger", str(world.path), "--json"])
    assert listed.exit_code == 0
    assert [p["principalId"] for p in json.loads(listed.stdout)["principals"]] == ["alice"]
