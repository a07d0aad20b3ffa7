"""The TUI's one door to the library.

Why a module of its own: the interface must hold no rules. Every read and
write the TUI makes is a method here that calls the library, returns plain
frozen data the widgets only render, and raises nothing but
:class:`~grantex_local.errors.GrantexLocalError`. Widgets never import the
library; tests can drive this class without a terminal.

It is also where threads are made safe. Textual runs these methods in worker
threads, and one SQLite connection must never be used by two threads at
once, so every method holds the lock of the connection it uses. Chain
verification and change polling get a second connection (and lock): a
verification of a long chain then never blocks browsing, and ``PRAGMA
data_version`` on that connection changes whenever any other connection
(another process, or this app's own writes) commits.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Generic, TypeVar

from .. import agents, anomalies, authorization, errors, grants, info, tokens, webhooks
from ..audit import chain as audit_chain
from ..audit import checkpoints as audit_checkpoints
from ..audit import trail as audit_trail
from ..clock import Clock, iso, parse_iso
from ..developers import list_developers
from ..founding import Ledger
from ..models import Agent, AuditEntry, AuthorizationRequest, ConsentDecision, Grant, RevokeResult
from ..scopes import describe

T = TypeVar("T")

PRINCIPAL_PAGE = 500
GRANT_PAGE = 200
AUDIT_PAGE = 200
DETAIL_AUDIT_LIMIT = 50
BLAST_TREE_LIMIT = 200


# ── what the widgets receive ─────────────────────────────────────────────────


@dataclass(frozen=True)
class Page(Generic[T]):
    """One page of a longer list: the items, where it starts, and how many there are in all."""

    items: tuple[T, ...]
    total: int
    offset: int = 0

    @property
    def remaining(self) -> int:
        return max(0, self.total - self.offset - len(self.items))


@dataclass(frozen=True)
class TreeFilter:
    """What the grant tree shows. Empty: every principal, roots under each, children on demand.

    With ``agent``, ``status`` or ``scope`` the tree lists the matching grants (at any
    depth) under each principal; with ``grant_id`` only the tree that grant is in.
    """

    principal: str | None = None
    agent: str | None = None
    status: str | None = None
    scope: str | None = None
    grant_id: str | None = None

    @property
    def narrows_grants(self) -> bool:
        return any(v is not None for v in (self.agent, self.status, self.scope))

    @property
    def empty(self) -> bool:
        return not self.narrows_grants and self.principal is None and self.grant_id is None


@dataclass(frozen=True)
class PrincipalNode:
    developer_id: str
    developer_name: str
    principal_id: str
    grants: int
    roots: int
    active: int
    several_developers: bool = False


@dataclass(frozen=True)
class GrantNode:
    id: str
    agent_id: str
    agent_name: str
    principal_id: str
    developer_id: str
    scopes: tuple[str, ...]
    depth: int
    status: str
    """The browse status: active, revoked, expired, suspended (agent) or deleted (agent)."""
    children: int
    expires_at: str
    revoked_at: str | None
    parent_grant_id: str | None

    @classmethod
    def from_browse(cls, item: dict[str, Any]) -> GrantNode:
        return cls(id=item["id"], agent_id=item["agentId"], agent_name=item["agentName"],
                   principal_id=item["principalId"], developer_id=item["developerId"],
                   scopes=tuple(item["scopes"]), depth=item["delegationDepth"],
                   status=item["browseStatus"], children=item["children"],
                   expires_at=item["expiresAt"], revoked_at=item.get("revokedAt"),
                   parent_grant_id=item.get("parentGrantId"))


@dataclass(frozen=True)
class LinkInChain:
    """One ancestor of a grant, as the detail pane lists it."""

    grant_id: str
    agent_name: str
    depth: int
    status: str


@dataclass(frozen=True)
class TokenInfo:
    jti: str
    issued_at: str
    expires_at: str
    delegated_grants: int


@dataclass(frozen=True)
class GrantDetail:
    grant: Grant
    agent: Agent
    developer_name: str
    status: str
    scopes: tuple[tuple[str, str], ...]
    """(scope, human-readable description)."""
    chain: tuple[LinkInChain, ...]
    """Parent first, root last."""
    tokens: tuple[TokenInfo, ...]
    audit: tuple[AuditEntry, ...]
    """Newest first, at most DETAIL_AUDIT_LIMIT."""
    more_audit: bool
    """There are older entries than those shown (the audit view lists them all)."""
    now: float
    budget: dict[str, Any] | None = None
    """The grant's own budget allocation (decimal strings, as :func:`budgets.balance` answers), or None."""
    bundles: tuple[ConsentBundleRow, ...] = ()
    """The consent bundles issued under the grant for offline devices, newest first."""


@dataclass(frozen=True)
class ConsentBundleRow:
    """One consent bundle of a grant: when its device may act offline until, and how far its
    offline log has come home (the last sync and the entries merged so far)."""

    id: str
    created_at: str
    offline_expires_at: str
    revoked_at: str | None
    replaced_by: str | None
    last_sync_at: str | None
    synced_entries: int


@dataclass(frozen=True)
class BlastRadius:
    """What revoking one grant would touch, computed by the library before anything happens."""

    grant_id: str
    agent_name: str
    principal_id: str
    descendants: int
    agents: tuple[str, ...]
    live_tokens: int
    tree: dict[str, Any]
    """The subtree as :func:`grants.tree` nests it (``children`` lists, any status)."""


@dataclass(frozen=True)
class AgentImpact:
    """An agent and how many of its grants are active (what suspending it would stop)."""

    agent: Agent
    active_grants: int


@dataclass(frozen=True)
class RequestRow:
    request: AuthorizationRequest
    agent_name: str
    developer_name: str


@dataclass(frozen=True)
class DecisionRow:
    """A decision request waiting for a person (issue 13), listed in the inbox next to consent."""

    request_id: str
    tool: str
    decision: str
    case_id: str
    subject: str
    approvals: str
    agent_name: str
    developer_name: str
    expires_at: str


@dataclass(frozen=True)
class AuditFilter:
    agent: str | None = None
    grant: str | None = None
    principal: str | None = None
    action: str | None = None
    status: str | None = None
    since: str | None = None
    until: str | None = None
    developer: str | None = None


@dataclass(frozen=True)
class AuditRow:
    entry: AuditEntry
    agent_name: str | None
    chain_name: str


@dataclass(frozen=True)
class ChainState:
    """The verifier's answer over every chain, and how much of it no checkpoint covers yet."""

    ok: bool
    chains: int
    entries: int
    uncovered: int
    broken_chain: str | None = None
    broken_seq: int | None = None
    reason: str | None = None
    message: str | None = None


@dataclass(frozen=True)
class Overview:
    file_name: str
    agents: int
    suspended_agents: int
    grants: int
    active_grants: int
    live_tokens: int
    pending_requests: int
    audit_entries: int
    as_of: str | None = None
    """Auditor mode: the instant statuses are judged at (``as of … UTC (export time)``)."""
    failed_deliveries: int = 0
    """Webhook deliveries that gave up after their last retry: events a receiver never got."""
    open_anomalies: int = 0
    """Stored anomalies nobody acknowledged (detection is never run by the TUI, only read)."""
    worst_anomalies: tuple[OpenAnomaly, ...] = ()
    """The few most severe of them, most severe first."""


@dataclass(frozen=True)
class OpenAnomaly:
    """An unacknowledged anomaly as the overview names it."""

    id: str
    severity: str
    type: str
    agent_id: str | None
    description: str


@dataclass(frozen=True)
class BundleInfo:
    """The verification summary of an export bundle opened in auditor mode."""

    name: str
    summary: dict[str, Any] = field(default_factory=dict)

    @property
    def exported_at(self) -> str | None:
        """When the bundle was written (its signed manifest's ``createdAt``), if it says."""
        value = self.summary.get("createdAt")
        return value if isinstance(value, str) else None


# ── the data layer ───────────────────────────────────────────────────────────


class TuiData:
    """Every library call the TUI makes, serialised per connection, errors as GrantexLocalError."""

    def __init__(self, ledger: Ledger, *, read_only: bool = False, bundle: BundleInfo | None = None,
                 cleanup: Callable[[], None] | None = None) -> None:
        self.ledger = ledger
        self.read_only = read_only or ledger.readonly
        self.bundle = bundle
        self._cleanup = cleanup
        self._lock = threading.RLock()
        self._watch: Ledger | None = None
        self._watch_lock = threading.Lock()
        self._data_version: int | None = None
        self.changed()  # the baseline: later calls report commits made after this point

    # ── opening and closing ──────────────────────────────────────────────

    @classmethod
    def open(cls, path: str | os.PathLike[str] | None, *, clock: Clock | None = None) -> TuiData:
        """Open an existing ledger file (never create one: a typo must not make an empty ledger)."""
        return cls(Ledger(path, create=False, clock=clock))

    @classmethod
    def open_bundle(cls, bundle: str | os.PathLike[str], *, clock: Clock | None = None,
                    verifier_key: str | None = None) -> TuiData:
        """Auditor mode: verify an export bundle, load it into a scratch ledger, open that read-only.

        Without ``clock`` the ledger's clock stands still at the bundle's export time: a
        historical export judged by today's clock would show every grant expired, which is not
        what the auditor is looking at. The status bar says which instant it judges at.
        """
        from .. import export

        to_ledger = getattr(export, "bundle_to_ledger", None)
        if to_ledger is None:
            raise errors.GrantexLocalError(
                "this version of grantex-local cannot open export bundles (no export.bundle_to_ledger)")
        workdir = Path(tempfile.mkdtemp(prefix="grantex-audit-"))
        target = workdir / "bundle.db"
        try:
            summary = to_ledger(bundle, target, verifier_key=verifier_key)
            ledger = Ledger(target, create=False, clock=clock or _export_time_clock(summary))
        except BaseException:
            shutil.rmtree(workdir, ignore_errors=True)
            raise
        return cls(ledger, read_only=True, bundle=BundleInfo(Path(bundle).name, dict(summary or {})),
                   cleanup=lambda: shutil.rmtree(workdir, ignore_errors=True))

    def close(self) -> None:
        with self._lock:
            self.ledger.close()
        with self._watch_lock:
            if self._watch is not None:
                self._watch.close()
                self._watch = None
        if self._cleanup is not None:
            self._cleanup()
            self._cleanup = None

    @property
    def file_name(self) -> str:
        """What the header names: the ledger file, or in auditor mode the bundle."""
        return self.bundle.name if self.bundle is not None else Path(self.ledger.path).name

    def now(self) -> float:
        return self.ledger.now()

    @contextlib.contextmanager
    def _watcher(self) -> Iterator[Ledger]:
        with self._watch_lock:
            if self._watch is None:
                self._watch = Ledger(self.ledger.path, create=False, clock=self.ledger.clock)
            yield self._watch

    def _writable(self, what: str) -> None:
        if self.read_only:
            raise errors.LedgerReadOnly(f"auditor mode is read-only: cannot {what}")

    # ── change detection ─────────────────────────────────────────────────

    def changed(self) -> bool:
        """Has anyone committed to the file since the last call? Never waits for a busy watcher."""
        if not self._watch_lock.acquire(blocking=False):
            return False
        try:
            if self._watch is None:
                self._watch = Ledger(self.ledger.path, create=False, clock=self.ledger.clock)
            row = self._watch.query_one("PRAGMA data_version")
        finally:
            self._watch_lock.release()
        version = int(row[0]) if row is not None else 0
        before, self._data_version = self._data_version, version
        return before is not None and version != before

    # ── overview ─────────────────────────────────────────────────────────

    def overview(self) -> Overview:
        with self._lock:
            counts = info.summary(self.ledger)["counts"]
            suspended = len(agents.list_agents(self.ledger, None, status="suspended"))
            failed = webhooks.failed_count(self.ledger)
            open_count, worst = self.open_anomalies()
            now = iso(self.ledger.now())
        as_of = None
        if self.bundle is not None:
            as_of = f"{now[:10]} {now[11:19]} UTC"
            if now == self.bundle.exported_at:
                as_of += " (export time)"
        return Overview(self.file_name, counts["agents"], suspended, counts["grants"],
                        counts["activeGrants"], counts["liveTokens"], counts["pendingRequests"],
                        counts["auditEntries"], as_of, failed, open_count, worst)

    def open_anomalies(self, limit: int = 3) -> tuple[int, tuple[OpenAnomaly, ...]]:
        """How many stored anomalies are open in the whole file, and the ``limit`` most severe."""
        with self._lock:
            count, top = anomalies.most_severe_open(self.ledger, None, limit)
        return count, tuple(OpenAnomaly(a.id, a.severity, a.type, a.agent_id, a.description) for a in top)

    # ── the delegation tree ──────────────────────────────────────────────

    def _agent_filter(self, value: str | None) -> str | None:
        """An agent id, or the id of the one agent with that exact name."""
        if value is None or value.startswith("ag_"):
            return value
        found = [a for a in agents.list_agents(self.ledger, None, include_deleted=True) if a.name == value]
        if not found:
            raise errors.NotFound(f"no agent named {value!r}")
        if len(found) > 1:
            raise errors.InvalidInput(f"{len(found)} agents are named {value!r}; filter by agent id")
        return found[0].id

    def principals(self, flt: TreeFilter, offset: int = 0,
                   limit: int = PRINCIPAL_PAGE) -> Page[PrincipalNode]:
        """The tree's first level: who holds grants that match."""
        with self._lock:
            names = {d.id: d.name for d in list_developers(self.ledger)}
            if flt.grant_id is not None:
                grant = grants.get(self.ledger, None, flt.grant_id)
                items, total = grants.principal_summaries(
                    self.ledger, grant.developer_id, principal_id=grant.principal_id)
            else:
                items, total = grants.principal_summaries(
                    self.ledger, principal_id=flt.principal, agent_id=self._agent_filter(flt.agent),
                    status=flt.status, scope=flt.scope, limit=limit, offset=offset)
        several = len({i["developerId"] for i in items}) > 1
        nodes = tuple(PrincipalNode(i["developerId"], names.get(i["developerId"], i["developerId"]),
                                    i["principalId"], i["grants"], i["roots"], i["active"], several)
                      for i in items)
        return Page(nodes, total, offset)

    def principal_grants(self, principal: PrincipalNode, flt: TreeFilter, offset: int = 0,
                         limit: int = GRANT_PAGE) -> Page[GrantNode]:
        """Under a principal: its root grants, the matching grants when filtered, or one tree."""
        with self._lock:
            if flt.grant_id is not None:
                target = grants.get(self.ledger, None, flt.grant_id)
                chain = grants.ancestors(self.ledger, target.id)
                root = chain[-1].id if chain else target.id
                items, total = grants.browse_grants(self.ledger, principal.developer_id, grant_id=root)
            else:
                items, total = grants.browse_grants(
                    self.ledger, principal.developer_id, principal_id=principal.principal_id,
                    roots_only=not flt.narrows_grants, agent_id=self._agent_filter(flt.agent),
                    status=flt.status, scope=flt.scope, limit=limit, offset=offset)
        return Page(tuple(GrantNode.from_browse(i) for i in items), total, offset)

    def child_grants(self, parent_id: str, offset: int = 0, limit: int = GRANT_PAGE) -> Page[GrantNode]:
        """Grants delegated directly from ``parent_id`` (every status: the tree shows what happened)."""
        with self._lock:
            items, total = grants.browse_grants(self.ledger, parent_grant_id=parent_id, limit=limit,
                                                offset=offset)
        return Page(tuple(GrantNode.from_browse(i) for i in items), total, offset)

    def path_to(self, grant_id: str) -> tuple[str, ...]:
        """Grant ids from the root down to ``grant_id`` (for opening the tree at a found grant)."""
        with self._lock:
            grant = grants.get(self.ledger, None, grant_id)
            chain = grants.ancestors(self.ledger, grant.id)
        return (*(g.id for g in reversed(chain)), grant.id)

    # ── one grant ────────────────────────────────────────────────────────

    def grant_detail(self, grant_id: str) -> GrantDetail:
        with self._lock:
            now = self.ledger.now()
            grant = grants.get(self.ledger, None, grant_id)
            agent = agents.get(self.ledger, None, grant.agent_id, include_deleted=True)
            names = {d.id: d.name for d in list_developers(self.ledger)}
            chain = []
            for parent in grants.ancestors(self.ledger, grant.id):
                parent_agent = agents.get(self.ledger, None, parent.agent_id, include_deleted=True)
                chain.append(LinkInChain(parent.id, parent_agent.name, parent.delegation_depth,
                                         grants.browse_status(parent.status, parent_agent.status)))
            live = tokens.live_tokens(self.ledger, grant.id)
            # Naming the chain lets SQLite use the (grant_id, seq) index (ms instead of a scan).
            entries = audit_trail.list_entries(self.ledger, grant.developer_id, grant_id=grant.id,
                                               newest_first=True, page_size=DETAIL_AUDIT_LIMIT + 1)
            from .. import budgets

            budget = budgets.summary(self.ledger, grant.id)
            bundles = self.grant_bundles(grant.id)
        return GrantDetail(
            grant=grant, agent=agent, developer_name=names.get(grant.developer_id, grant.developer_id),
            status=grants.browse_status(grant.status, agent.status),
            scopes=tuple((s, _describe(s)) for s in grant.scopes), chain=tuple(chain),
            tokens=tuple(TokenInfo(t["jti"], t["issuedAt"], t["expiresAt"], t["delegatedGrants"])
                         for t in live),
            audit=tuple(entries[:DETAIL_AUDIT_LIMIT]), more_audit=len(entries) > DETAIL_AUDIT_LIMIT,
            now=now, budget=budget, bundles=bundles)

    def grant_bundles(self, grant_id: str) -> tuple[ConsentBundleRow, ...]:
        """The grant's consent bundles, newest first (``bundles.list_bundles``: a bundle counts as
        revoked also when its grant was revoked another way)."""
        from .. import bundles as consent_bundles

        with self._lock:
            found = consent_bundles.list_bundles(self.ledger, grant_id=grant_id)
        return tuple(ConsentBundleRow(b["id"], b["createdAt"], b["offlineExpiresAt"], b["revokedAt"],
                                      b["replacedBy"], b["lastSyncAt"], int(b["syncedEntries"] or 0))
                     for b in reversed(found))

    def blast_radius(self, grant_id: str) -> BlastRadius:
        with self._lock:
            grant = grants.get(self.ledger, None, grant_id)
            agent = agents.get(self.ledger, None, grant.agent_id, include_deleted=True)
            radius = grants.blast_radius(self.ledger, grant.id)
            forest = grants.tree(self.ledger, None, grant.id)
        return BlastRadius(grant.id, agent.name, grant.principal_id, radius["descendants"],
                           tuple(radius["agents"]), radius["liveTokens"], forest[0] if forest else {})

    def revoke_grant(self, grant_id: str) -> RevokeResult:
        """Revoke the grant and its whole subtree, in one library transaction."""
        self._writable("revoke a grant")
        with self._lock:
            return grants.revoke(self.ledger, None, grant_id)

    def live_tokens(self, grant_id: str) -> tuple[TokenInfo, ...]:
        with self._lock:
            found = tokens.live_tokens(self.ledger, grant_id)
        return tuple(TokenInfo(t["jti"], t["issuedAt"], t["expiresAt"], t["delegatedGrants"])
                     for t in found)

    def revoke_token(self, jti: str) -> list[str]:
        """Revoke one token; returns the grants revoked with it (those delegated from it)."""
        self._writable("revoke a token")
        with self._lock:
            return tokens.revoke(self.ledger, None, jti)

    def agent_impact(self, agent_id: str) -> AgentImpact:
        with self._lock:
            agent = agents.get(self.ledger, None, agent_id, include_deleted=True)
            active = grants.list_grants(self.ledger, None, agent_id=agent_id, status="active")
        return AgentImpact(agent, len(active))

    def suspend_agent(self, agent_id: str) -> Agent:
        self._writable("suspend an agent")
        with self._lock:
            return agents.suspend(self.ledger, None, agent_id)

    def reactivate_agent(self, agent_id: str) -> Agent:
        self._writable("reactivate an agent")
        with self._lock:
            return agents.reactivate(self.ledger, None, agent_id)

    # ── the consent inbox ────────────────────────────────────────────────

    def pending_requests(self) -> tuple[RequestRow, ...]:
        """Requests waiting for a human, of every developer, oldest first."""
        with self._lock:
            names = {d.id: d.name for d in list_developers(self.ledger)}
            agent_names = {a.id: a.name for a in agents.list_agents(self.ledger, None, include_deleted=True)}
            pending = authorization.list_requests(self.ledger, None)
        return tuple(RequestRow(r, agent_names.get(r.agent_id, r.agent_id),
                                names.get(r.developer_id, r.developer_id)) for r in pending)

    def consent_details(self, request_id: str) -> dict[str, Any]:
        """What the spec requires a consent screen to show (agent, developer, described scopes, expiry),
        and for a waiting request of a writable ledger the approval code that decides it on the
        consent page (``approvalCode``): the person at the TUI holds the file, so they may see it."""
        from .. import approval

        with self._lock:
            details = authorization.consent_details(self.ledger, request_id)
            if not self.read_only and details["request"]["status"] == "pending":
                details["approvalCode"] = approval.approval_code(self.ledger, request_id)
            return details

    def approve(self, request_id: str) -> ConsentDecision:
        """Approve: the decision carries the single-use code (the only place it ever appears)."""
        self._writable("approve a request")
        with self._lock:
            return authorization.approve(self.ledger, request_id, decided_by=authorization.os_user(),
                                         channel="tui")

    def deny(self, request_id: str) -> ConsentDecision:
        self._writable("deny a request")
        with self._lock:
            return authorization.deny(self.ledger, request_id, decided_by=authorization.os_user(),
                                      channel="tui")

    # ── decision requests, in the same inbox ─────────────────────────────

    def pending_decisions(self) -> tuple[DecisionRow, ...]:
        """Decision requests waiting for an approval, of every developer, oldest first."""
        from .. import decisions

        with self._lock:
            names = {d.id: d.name for d in list_developers(self.ledger)}
            agent_names = {a.id: a.name for a in agents.list_agents(self.ledger, None, include_deleted=True)}
            found = decisions.list_requests(self.ledger, None, open_only=True)
        return tuple(DecisionRow(
            r.id, r.action["action"], r.action["decision"], r.case_id, r.action["subject"],
            f"{len(r.approvals)}/{r.approvals_required}",
            agent_names.get(r.agent_id, r.agent_id) if r.agent_id else "",
            names.get(r.developer_id, r.developer_id), r.expires_at) for r in reversed(found))

    def decision_details(self, request_id: str) -> dict[str, Any]:
        """The request as the approver reviews it (never its grants), the approval code for its
        page, and ``shownAt``: the moment it was shown here, from which the approver's dwell time
        is measured when they approve in the TUI."""
        from .. import approval, decisions

        with self._lock:
            found = decisions.get_request(self.ledger, None, request_id)
            details = found.to_dict(with_grants=False)
            if not self.read_only and found.status == "pending":
                details["approvalCode"] = approval.approval_code(self.ledger, request_id)
            details["shownAt"] = self.ledger.now()
            return details

    def approve_decision(self, request_id: str, shown_at: float) -> Any:
        """Approve as the OS user; the decision grant goes to the requester, never to the screen."""
        from .. import decisions

        self._writable("approve a decision")
        with self._lock:
            return decisions.approve(self.ledger, request_id, approver=authorization.os_user(),
                                     channel="tui", shown_at=shown_at)

    # ── the audit trail ──────────────────────────────────────────────────

    def audit_page(self, flt: AuditFilter, limit: int = AUDIT_PAGE) -> tuple[AuditRow, ...]:
        """The newest ``limit`` entries matching, across every chain (merged by time, then seq)."""
        with self._lock:
            developers = list_developers(self.ledger)
            names = {d.id: d.name for d in developers}
            agent_names = {a.id: a.name for a in agents.list_agents(self.ledger, None, include_deleted=True)}
            agent_id = self._agent_filter(flt.agent)
            chains = [d.id for d in developers]
            if flt.developer is not None:
                chains = [d.id for d in developers if flt.developer in (d.id, d.name)]
                if not chains:
                    raise errors.NotFound(f"no developer {flt.developer!r}")
            found: list[AuditEntry] = []
            for developer_id in chains:
                found += audit_trail.list_entries(
                    self.ledger, developer_id, agent_id=agent_id, grant_id=flt.grant,
                    principal_id=flt.principal, action=flt.action, status=flt.status, since=flt.since,
                    until=flt.until, page_size=limit, newest_first=True)
        found.sort(key=lambda e: (e.timestamp, e.entry_id), reverse=True)
        return tuple(AuditRow(e, agent_names.get(e.agent_id) if e.agent_id else None,
                              names.get(e.developer_id, e.developer_id)) for e in found[:limit])

    def chain_state(self) -> ChainState:
        """Verify every chain from the stored bytes and against every checkpoint stored for it.

        Runs on the watcher connection: a long walk never holds up browsing.
        """
        with self._watcher() as ledger:
            names = {d.id: d.name for d in list_developers(ledger)}
            entries = uncovered = 0
            developer_ids = audit_chain.chain_developers(ledger)
            for developer_id in developer_ids:
                latest = audit_checkpoints.latest(ledger, developer_id)
                try:  # against every checkpoint stored for the chain (auditor mode too)
                    report = audit_chain.verify_chain(ledger, developer_id)
                except errors.ChainBroken as exc:
                    return ChainState(False, len(developer_ids), entries, uncovered,
                                      names.get(developer_id, developer_id), exc.seq, exc.reason, exc.message)
                except errors.InvalidInput as exc:  # a stored checkpoint whose signature fails
                    return ChainState(False, len(developer_ids), entries, uncovered,
                                      names.get(developer_id, developer_id), None, "checkpoint_invalid",
                                      exc.message)
                entries += report.entries
                uncovered += max(0, report.entries - (latest["size"] if latest is not None else 0))
        return ChainState(True, len(developer_ids), entries, uncovered)

    def write_checkpoints(self) -> list[dict[str, Any]]:
        """Sign a checkpoint for every chain that has entries no checkpoint covers yet."""
        self._writable("write a checkpoint")
        written = []
        with self._lock:
            for developer_id in audit_chain.chain_developers(self.ledger):
                latest = audit_checkpoints.latest(self.ledger, developer_id)
                size = audit_trail.count_entries(self.ledger, developer_id)
                if size and (latest is None or latest["size"] < size):
                    written.append(audit_checkpoints.create(self.ledger, developer_id))
        return written


def _export_time_clock(summary: dict[str, Any] | None) -> Clock | None:
    """A clock stopped at the bundle's export time; None (today's clock) if the manifest has none."""
    try:
        exported = parse_iso(str((summary or {}).get("createdAt")))
    except ValueError:
        return None
    return lambda: exported


def _describe(scope: str) -> str:
    try:
        return describe(scope)
    except errors.GrantexLocalError:
        return "(not a valid scope)"
