"""``grantex-local mcp`` (issue 20): a real subprocess driven by the official ``mcp`` SDK's stdio client."""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from helpers import dump
from mcp.client.session import ClientSession
from mcp.client.stdio import StdioServerParameters, stdio_client

from grantex_local import Grantex, Ledger
from grantex_local.cli import cli

HOSTED_TOOLS = {
    "grantex_agent_register", "grantex_agent_list", "grantex_agent_get", "grantex_authorize",
    "grantex_token_exchange", "grantex_token_verify", "grantex_token_revoke", "grantex_grant_list",
    "grantex_grant_get", "grantex_grant_revoke", "grantex_grant_delegate", "grantex_audit_log",
    "grantex_audit_list",
}
SCRIPT = Path(sys.executable).with_name("grantex-local")


class Tools:
    """Calls tools on one session; ``ok`` insists on success, ``fail`` on a tool error."""

    def __init__(self, session: ClientSession) -> None:
        self.session = session

    async def call(self, tool: str, /, **arguments: Any) -> tuple[bool, Any, str]:
        result = await self.session.call_tool(tool, arguments)
        text = "".join(getattr(c, "text", "") for c in result.content)
        return bool(result.is_error), result.structured_content, text

    async def ok(self, tool: str, /, **arguments: Any) -> dict[str, Any]:
        is_error, data, text = await self.call(tool, **arguments)
        assert not is_error, text
        assert isinstance(data, dict)
        return data

    async def fail(self, tool: str, /, **arguments: Any) -> str:
        is_error, _, text = await self.call(tool, **arguments)
        assert is_error, text
        assert "Traceback" not in text
        return text


def drive(ledger: Path, body: Callable[[Tools], Awaitable[None]], *extra: str) -> None:
    """Start ``grantex-local mcp --ledger LEDGER`` and run ``body`` against it."""
    command = [str(SCRIPT)] if SCRIPT.is_file() else [sys.executable, "-m", "grantex_local"]

    async def main() -> None:
        params = StdioServerParameters(command=command[0],
                                       args=[*command[1:], "mcp", "--ledger", str(ledger), *extra])
        async with stdio_client(params) as (read, write), ClientSession(read, write) as session:
            await session.initialize()
            await body(Tools(session))

    asyncio.run(asyncio.wait_for(main(), timeout=120))


@pytest.fixture
def ledger(tmp_path: Path) -> Path:
    path = tmp_path / "grantex.db"
    Ledger(path).close()
    return path


def test_the_whole_flow_over_stdio(ledger: Path) -> None:
    async def body(t: Tools) -> None:
        names = {tool.name for tool in (await t.session.list_tools()).tools}
        assert names >= HOSTED_TOOLS
        assert {"grantex_grant_tree", "grantex_audit_verify", "grantex_audit_checkpoint_create",
                "grantex_audit_checkpoint_list", "grantex_compliance_summary"} <= names

        root = await t.ok("grantex_agent_register", name="booking", description="books trips",
                          scopes=["calendar:read", "calendar:write"])
        sub = await t.ok("grantex_agent_register", name="helper", description="reads calendars",
                         scopes=["calendar:read"])
        listed = await t.ok("grantex_agent_list", pageSize=1)
        assert listed["total"] == 2 and len(listed["agents"]) == 1 and listed["nextPage"] == 2
        assert (await t.ok("grantex_agent_get", agentId=root["agentId"]))["name"] == "booking"

        auth = await t.ok("grantex_authorize", agentId=root["agentId"], userId="user_alice",
                          scopes=["calendar:read", "calendar:write"])
        assert auth["consentUrl"] and auth["code"]  # the default developer is a sandbox
        issued = await t.ok("grantex_token_exchange", code=auth["code"], agentId=root["agentId"])
        verified = await t.ok("grantex_token_verify", token=issued["grantToken"])
        assert verified["valid"] is True

        child = await t.ok("grantex_grant_delegate", parentGrantToken=issued["grantToken"],
                           subAgentId=sub["agentId"], scopes=["calendar:read"])
        assert (await t.ok("grantex_token_verify", token=child["grantToken"]))["valid"] is True
        grants = await t.ok("grantex_grant_list", principalId="user_alice")
        assert {g["grantId"] for g in grants["grants"]} == {issued["grantId"], child["grantId"]}
        shown = await t.ok("grantex_grant_get", grantId=child["grantId"])
        assert shown["parentGrantId"] == issued["grantId"]
        tree = await t.ok("grantex_grant_tree", grantId=issued["grantId"])
        assert tree["tree"][0]["children"][0]["grantId"] == child["grantId"]
        assert tree["blastRadius"]["descendants"] == 1

        # destructive tools change nothing without confirm, and say what they would touch
        before = dump(ledger)
        preview = await t.ok("grantex_grant_revoke", grantId=issued["grantId"])
        assert preview["revoked"] is False and "confirm=true" in preview["confirm"]
        assert preview["blastRadius"]["grantIds"]["count"] == 2
        assert preview["blastRadius"]["agents"] == ["booking", "helper"]
        token_preview = await t.ok("grantex_token_revoke", tokenId=issued["tokenId"])
        assert token_preview["revoked"] is False
        assert token_preview["blastRadius"]["delegatedGrants"]["ids"] == [child["grantId"]]
        assert dump(ledger) == before
        assert (await t.ok("grantex_token_verify", token=child["grantToken"]))["valid"] is True

        done = await t.ok("grantex_grant_revoke", grantId=issued["grantId"], confirm=True)
        assert done["revoked"] is True and done["revokedGrantIds"]["count"] == 2
        assert (await t.ok("grantex_token_verify", token=child["grantToken"]))["valid"] is False
        assert (await t.ok("grantex_grant_get", grantId=child["grantId"]))["status"] == "revoked"

        entry = await t.ok("grantex_audit_log", agentId=root["agentId"], grantId=issued["grantId"],
                           action="calendar.read", metadata={"event": "evt_1"}, status="blocked")
        assert entry["status"] == "blocked"
        page = await t.ok("grantex_audit_list", action="calendar.read")
        assert [e["entryId"] for e in page["entries"]] == [entry["entryId"]]

        # every state change left an entry naming the channel, without tokens or codes in it
        called = await t.ok("grantex_audit_list", action="grantex.mcp.tool_called", pageSize=100)
        tools_called = [e["metadata"]["tool"] for e in called["entries"]]
        assert tools_called == ["grantex_agent_register", "grantex_agent_register", "grantex_authorize",
                                "grantex_token_exchange", "grantex_grant_delegate",
                                "grantex_grant_revoke", "grantex_audit_log"]
        assert all(e["metadata"]["channel"] == "mcp" for e in called["entries"])
        secrets = (issued["grantToken"], issued["refreshToken"], child["grantToken"], auth["code"])
        assert not any(s in json.dumps(called) for s in secrets)

        await t.ok("grantex_audit_checkpoint_create")
        assert (await t.ok("grantex_audit_checkpoint_list"))["total"] == 1
        chain = await t.ok("grantex_audit_verify")
        assert chain["valid"] is True and chain["entries"] > 10
        summary = await t.ok("grantex_compliance_summary")
        assert len(summary["checks"]) == 12 and {"id", "name", "passed"} <= set(summary["checks"][0])

    drive(ledger, body)


def test_refusals(ledger: Path) -> None:
    with Grantex(ledger) as gx:
        from grantex_local.developers import create_developer

        careful = create_developer(gx.ledger, "careful", sandbox=False).id

    async def body(t: Tools) -> None:
        for tool in (await t.session.list_tools()).tools:
            assert "approve" not in tool.name and "consent" not in tool.name
            assert "never widen" in (tool.description or "")
        agent = await t.ok("grantex_agent_register", name="a", description="", scopes=["files:read"])
        pending = await t.ok("grantex_authorize", agentId=agent["agentId"], userId="user_bob",
                             scopes=["files:read"])
        assert pending["status"] == "pending" and "code" not in pending and pending["consentUrl"]
        assert (await t.ok("grantex_grant_list"))["grants"] == []

        assert "agentId" in await t.fail("grantex_agent_get")
        assert "pageSize" in await t.fail("grantex_grant_list", pageSize=0)
        assert "since" in await t.fail("grantex_audit_list", since="yesterday")
        assert "ag_nope" in await t.fail("grantex_agent_get", agentId="ag_nope")
        assert "status" in await t.fail("grantex_grant_list", status="everything")
        before = dump(ledger)
        assert "grnt_nope" in await t.fail("grantex_grant_revoke", grantId="grnt_nope", confirm=True)
        assert "tok_nope" in await t.fail("grantex_token_revoke", tokenId="tok_nope", confirm=True)
        assert dump(ledger) == before

    drive(ledger, body, "--developer", careful)


def test_cli_refuses_a_missing_ledger_or_developer(ledger: Path, tmp_path: Path) -> None:
    runner = CliRunner()
    missing = runner.invoke(cli, ["mcp", "--ledger", str(tmp_path / "nope.db")])
    assert missing.exit_code == 2 and missing.output.startswith("error: ")
    unknown = runner.invoke(cli, ["mcp", "--ledger", str(ledger), "--developer", "dev_nope"])
    assert unknown.exit_code == 2 and "dev_nope" in unknown.output
