"""The MCP tools: the hosted ``@grantex/mcp`` names and arguments, answered by the local library.

Every tool is a thin call into :class:`grantex_local.client.Grantex`; no rule of the protocol
lives here. What this layer adds is what a model driving a ledger needs and a library caller
does not:

- **Narrow, never widen.** A model may revoke (narrow authority); it can never approve consent
  (no tool does), so ``grantex_authorize`` hands back the consent URL for a person. Only a
  sandbox developer's own setting approves at once, as it would for any caller.
- **Destructive tools dry-run by default.** ``grantex_grant_revoke`` and ``grantex_token_revoke``
  change nothing unless ``confirm`` is true; either way the answer carries the blast radius.
- **Every state change names its channel.** A tool that writes does so inside one ledger
  transaction that also appends ``grantex.mcp.tool_called`` (``{"channel": "mcp", "tool": ...}``
  plus the ids involved; never a token or code), so the audit trail shows what an assistant did.
- **Small, structured answers.** The library's camelCase ``to_dict()`` shapes; lists take
  ``page``/``pageSize``; trees and blast radii are cut at :data:`MAX_ITEMS` with counts of what
  was left out. Library errors become MCP tool errors carrying the library's message.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any, Literal, TypeVar

from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ToolError

from .. import __version__, errors, paging
from ..audit.trail import record
from ..client import Grantex
from ..developers import get_developer
from ..founding import Ledger

T = TypeVar("T")

MAX_ITEMS = 50
"""The most ids or tree nodes one answer lists; the rest are counted, not listed."""
DEFAULT_PAGE_SIZE = 20
TOOL_CALLED = "grantex.mcp.tool_called"

_SAFETY = (" Safety: tools can narrow authority (revoke, suspend) but never widen it on a person's "
           "behalf; consent is approved only by a human.")
_WRITES = " Recorded in the audit trail as grantex.mcp.tool_called (channel mcp)."


class _DryRun(Exception):
    """Raised inside a write transaction to roll it back after the library computed the answer."""


@contextlib.contextmanager
def _tool_errors() -> Iterator[None]:
    """The library's typed errors become tool errors with its message (which names the argument)."""
    try:
        yield
    except errors.GrantexLocalError as exc:
        raise ToolError(exc.message) from None


def _window(page: int, page_size: int) -> tuple[int, int]:
    return paging.window(page, page_size)


def _paged(items: list[Any], page: int, page_size: int, key: str) -> dict[str, Any]:
    """One page of ``items`` (already the library's dicts) with where the next one starts."""
    limit, offset = _window(page, page_size)
    chunk = items[offset:offset + limit]
    out: dict[str, Any] = {key: chunk, "page": page, "pageSize": page_size, "total": len(items)}
    if offset + limit < len(items):
        out["nextPage"] = page + 1
    return out


def _capped(ids: list[str]) -> dict[str, Any]:
    out: dict[str, Any] = {"ids": ids[:MAX_ITEMS], "count": len(ids)}
    if len(ids) > MAX_ITEMS:
        out["omitted"] = len(ids) - MAX_ITEMS
    return out


def _slim_tree(node: dict[str, Any], budget: list[int]) -> dict[str, Any]:
    """A delegation tree with each node's essentials, cut after ``budget[0]`` nodes: the children
    past the cut are counted (``omittedDescendants``), so a deep chain stays one small answer."""
    budget[0] -= 1
    slim = {k: node.get(k) for k in ("grantId", "agentId", "agentName", "principalId", "scopes",
                                     "status", "delegationDepth", "expiresAt")}
    children: list[dict[str, Any]] = []
    omitted = 0
    for child in node.get("children", []):
        if budget[0] > 0:
            children.append(_slim_tree(child, budget))
        else:
            omitted += 1 + _count(child)
    slim["children"] = children
    if omitted:
        slim["omittedDescendants"] = omitted
    return slim


def _count(node: dict[str, Any]) -> int:
    return sum(1 + _count(c) for c in node.get("children", []))


def build_server(gx: Grantex) -> MCPServer:
    """The MCP server over one open ledger, acting as ``gx.developer_id``."""
    server = MCPServer(
        "grantex-local", version=__version__, log_level="WARNING",
        instructions=("Grantex authorization over a local ledger file: agents, consent, grant tokens, "
                      "delegation, revocation and a hash-chained audit trail." + _SAFETY),
    )
    ledger = gx.ledger

    def audited(tool: str, call: Callable[[], T], **ids: str | None) -> T:
        """Run a state-changing library call and its channel entry in one transaction."""
        with _tool_errors(), ledger.write() as conn:
            result = call()
            metadata = {"channel": "mcp", "tool": tool, **{k: v for k, v in ids.items() if v}}
            record(ledger, conn, gx.developer_id, TOOL_CALLED, metadata=metadata)
        return result

    # ── agents ───────────────────────────────────────────────────────────────

    @server.tool("grantex_agent_register",
                 description="Register a new AI agent with the local ledger." + _WRITES + _SAFETY)
    async def agent_register(name: str, description: str, scopes: list[str]) -> dict[str, Any]:
        agent = audited("grantex_agent_register",
                        lambda: gx.agents.register(name=name, description=description, scopes=scopes))
        return agent.to_dict()

    @server.tool("grantex_agent_list",
                 description="List registered agents (paginated: page, pageSize). Read-only." + _SAFETY)
    async def agent_list(page: int = 1, pageSize: int = DEFAULT_PAGE_SIZE) -> dict[str, Any]:
        with _tool_errors():
            found = [a.to_dict() for a in gx.agents.list().agents]
            return _paged(found, page, pageSize, "agents")

    @server.tool("grantex_agent_get", description="Get details for a specific agent. Read-only." + _SAFETY)
    async def agent_get(agentId: str) -> dict[str, Any]:
        with _tool_errors():
            return gx.agents.get(agentId).to_dict()

    # ── authorization and tokens ─────────────────────────────────────────────

    @server.tool("grantex_authorize", description=(
        "Start an authorization flow. Returns the consent URL for the user (a human) to approve; "
        "no tool approves consent. Only when the developer's own sandbox setting is on does the "
        "ledger approve at once and return a code." + _WRITES + _SAFETY))
    async def authorize(agentId: str, userId: str, scopes: list[str], expiresIn: str | None = None,
                        redirectUri: str | None = None) -> dict[str, Any]:
        request = audited("grantex_authorize",
                          lambda: gx.authorize(agent_id=agentId, user_id=userId, scopes=scopes,
                                               expires_in=expiresIn, redirect_uri=redirectUri),
                          agentId=agentId, principalId=userId)
        out = request.to_dict()
        if request.code is None:
            out["next"] = ("a person must open consentUrl (grantex-local serve) or run "
                           f"`grantex-local consent approve {request.request_id}`")
        return out

    @server.tool("grantex_token_exchange",
                 description="Exchange an authorization code for a grant token." + _WRITES + _SAFETY)
    async def token_exchange(code: str, agentId: str) -> dict[str, Any]:
        issued = audited("grantex_token_exchange",
                         lambda: gx.tokens.exchange(code=code, agent_id=agentId), agentId=agentId)
        return issued.to_dict()

    @server.tool("grantex_token_verify", description=(
        "Verify a grant token online (signature, expiry, revocation) and inspect its claims. "
        "Read-only." + _SAFETY))
    async def token_verify(token: str) -> dict[str, Any]:
        with _tool_errors():
            return gx.tokens.verify(token).to_dict()

    def _token_blast(tokenId: str) -> list[str]:
        """The grants revoking ``tokenId`` would cascade to, computed by the library's own revoke
        inside a transaction that is then rolled back."""
        cascaded: list[str] = []
        try:
            with ledger.write():
                cascaded.extend(_revoke_token(tokenId))
                raise _DryRun
        except _DryRun:
            pass
        return cascaded

    def _revoke_token(tokenId: str) -> list[str]:
        from .. import tokens

        return tokens.revoke(ledger, gx.developer_id, tokenId)

    @server.tool("grantex_token_revoke", description=(
        "Revoke a grant token by its id (JTI); grants delegated from it are revoked too. Destructive: "
        "without confirm=true nothing changes and the answer shows the blast radius." + _WRITES + _SAFETY))
    async def token_revoke(tokenId: str, confirm: bool = False) -> dict[str, Any]:
        with _tool_errors():
            blast = _token_blast(tokenId)
        radius = {"tokenId": tokenId, "delegatedGrants": _capped(blast)}
        if not confirm:
            return {"revoked": False, "blastRadius": radius,
                    "confirm": "call grantex_token_revoke again with confirm=true to revoke"}
        cascaded = audited("grantex_token_revoke", lambda: _revoke_token(tokenId), tokenId=tokenId)
        return {"revoked": True, "tokenId": tokenId, "blastRadius": radius,
                "revokedGrantIds": _capped(cascaded)}

    # ── grants ───────────────────────────────────────────────────────────────

    @server.tool("grantex_grant_list", description=(
        "List grants with optional filters (agentId, principalId, status), paginated (page, pageSize). "
        "Read-only." + _SAFETY))
    async def grant_list(agentId: str | None = None, principalId: str | None = None,
                         status: Literal["active", "revoked", "expired"] | None = None,
                         page: int = 1, pageSize: int = DEFAULT_PAGE_SIZE) -> dict[str, Any]:
        with _tool_errors():
            found = gx.grants.list(agent_id=agentId, principal_id=principalId, status=status)
            return _paged([g.to_dict() for g in found.grants], page, pageSize, "grants")

    @server.tool("grantex_grant_get", description="Get details for a specific grant. Read-only." + _SAFETY)
    async def grant_get(grantId: str) -> dict[str, Any]:
        with _tool_errors():
            return gx.grants.get(grantId).to_dict()

    def _grant_blast(grantId: str) -> dict[str, Any]:
        radius = gx.grants.blast_radius(grantId)
        radius["grantIds"] = _capped(list(radius["grantIds"]))
        return radius

    @server.tool("grantex_grant_revoke", description=(
        "Revoke an active grant and every grant delegated from it. Destructive: without confirm=true "
        "nothing changes and the answer shows the blast radius (grants, agents, live tokens)."
        + _WRITES + _SAFETY))
    async def grant_revoke(grantId: str, confirm: bool = False) -> dict[str, Any]:
        with _tool_errors():
            radius = _grant_blast(grantId)
        if not confirm:
            return {"revoked": False, "blastRadius": radius,
                    "confirm": "call grantex_grant_revoke again with confirm=true to revoke"}
        result = audited("grantex_grant_revoke", lambda: gx.grants.revoke(grantId), grantId=grantId)
        out = result.to_dict()
        out["revokedGrantIds"] = _capped(list(result.revoked_grant_ids))
        return {"revoked": True, **out, "blastRadius": radius}

    @server.tool("grantex_grant_delegate", description=(
        "Delegate a grant to a sub-agent with narrowed scopes (a subset of the parent's: delegation "
        "can never widen authority)." + _WRITES + _SAFETY))
    async def grant_delegate(parentGrantToken: str, subAgentId: str, scopes: list[str],
                             expiresIn: str | None = None) -> dict[str, Any]:
        issued = audited("grantex_grant_delegate",
                         lambda: gx.grants.delegate(parent_grant_token=parentGrantToken,
                                                    sub_agent_id=subAgentId, scopes=scopes,
                                                    expires_in=expiresIn),
                         agentId=subAgentId)
        return issued.to_dict()

    @server.tool("grantex_grant_tree", description=(
        "The delegation tree under a grant (essentials per node, cut after 50 nodes with counts) and "
        "its blast radius: what revoking it would touch. Read-only." + _SAFETY))
    async def grant_tree(grantId: str) -> dict[str, Any]:
        with _tool_errors():
            roots = gx.grants.tree(grantId)
            radius = _grant_blast(grantId)
        budget = [MAX_ITEMS]
        return {"tree": [_slim_tree(r, budget) for r in roots], "blastRadius": radius}

    # ── audit ────────────────────────────────────────────────────────────────

    @server.tool("grantex_audit_log", description=(
        "Log an audit entry for an agent action (status success, failure or blocked)."
        + _WRITES + _SAFETY))
    async def audit_log(agentId: str, grantId: str, action: str, metadata: dict[str, Any] | None = None,
                        status: Literal["success", "failure", "blocked"] | None = None) -> dict[str, Any]:
        entry = audited("grantex_audit_log",
                        lambda: gx.audit.log(agent_id=agentId, grant_id=grantId, action=action,
                                             metadata=metadata, status=status or "success"),
                        agentId=agentId, grantId=grantId)
        return entry.to_dict()

    @server.tool("grantex_audit_list", description=(
        "List audit entries with optional filters (agentId, grantId, action, since, until), oldest "
        "first, paginated (page, pageSize). Read-only." + _SAFETY))
    async def audit_list(agentId: str | None = None, grantId: str | None = None, action: str | None = None,
                         since: str | None = None, until: str | None = None, page: int = 1,
                         pageSize: int = DEFAULT_PAGE_SIZE) -> dict[str, Any]:
        with _tool_errors():
            entries = gx.audit.list(agent_id=agentId, grant_id=grantId, action=action, since=since,
                                    until=until, page=page, page_size=pageSize)
        out: dict[str, Any] = {"entries": [e.to_dict() for e in entries], "page": page, "pageSize": pageSize}
        if len(entries) == pageSize:
            out["nextPage"] = page + 1
        return out

    @server.tool("grantex_audit_verify", description=(
        "Verify the audit hash chain against every checkpoint stored in the ledger; names the first "
        "broken seq when it does not verify. Read-only." + _SAFETY))
    async def audit_verify() -> dict[str, Any]:
        try:
            report = gx.audit.verify()
        except errors.ChainBroken as exc:
            return {"valid": False, "firstBrokenSeq": exc.seq, "reason": exc.reason, "message": exc.message}
        except errors.GrantexLocalError as exc:
            raise ToolError(exc.message) from None
        return {"valid": True, **report.to_dict()}

    @server.tool("grantex_audit_checkpoint_create", description=(
        "Sign a checkpoint over the audit chain as it is now (a later rewrite of the file then shows)."
        + _WRITES + _SAFETY))
    async def checkpoint_create() -> dict[str, Any]:
        return audited("grantex_audit_checkpoint_create", gx.audit.checkpoint)

    @server.tool("grantex_audit_checkpoint_list",
                 description="List the signed audit checkpoints (paginated). Read-only." + _SAFETY)
    async def checkpoint_list(page: int = 1, pageSize: int = DEFAULT_PAGE_SIZE) -> dict[str, Any]:
        with _tool_errors():
            return _paged(gx.audit.checkpoints(), page, pageSize, "checkpoints")

    @server.tool("grantex_compliance_summary", description=(
        "Run the compliance checks (integrity, provenance, scope, revocation, delegation, hygiene, "
        "oversight, retention, anomalies, offline logs) over the ledger: one line per check. "
        "Read-only." + _SAFETY))
    async def compliance_summary() -> dict[str, Any]:
        with _tool_errors():
            from ..analysis.checks import run_all
            from ..analysis.load import load  # pandas: loaded only by this tool

            results = run_all(load(ledger))
        checks = [{"id": r.id, "name": r.name, "passed": r.passed, "summary": r.summary,
                   "evidenceRows": r.evidence_rows} for r in results]
        return {"passed": all(c["passed"] for c in checks), "checks": checks}

    return server


def run(ledger: Ledger, developer_id: str | None = None) -> None:
    """Serve an open ledger over stdio until the client closes the pipe. An unknown developer is
    refused here, before the protocol starts, so the CLI can say so in one line."""
    if developer_id is not None:
        get_developer(ledger, developer_id)
    build_server(Grantex(ledger, developer_id=developer_id)).run("stdio")
