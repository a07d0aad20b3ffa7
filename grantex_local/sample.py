"""Sample data for the analysis notebooks: months of realistic activity with planted problems.

Why: the compliance checks (``grantex_local.analysis``) are only worth
something if they find real problems and stay quiet on clean data, and the
notebooks need a ledger that looks like a deployment after a few months, not
like a unit-test fixture. This module builds one: several principals, dozens
of agents in seven families, delegation trees three levels deep, sessions
that expire, standing grants that are renewed, revocations of whole subtrees,
a deny policy and a person's refusals, failures and blocked actions, an agent
suspended after an incident, a signed checkpoint every week, and three planted
problems (an action after its grant was revoked, a 3 a.m. burst, a scope and
an amount outside the grant) whose entry ids and seqs are returned, with the
checks that must cite them (``foundBy``), so tests can hold the checks to them.

Everything else is clean on purpose, against the checks' own rules: actions
only in working hours and never faster than 20 a minute per agent, each
within its grant's lifetime and scopes (a payment cites its grant's
``payments:initiate:max_N`` and stays under N), every agent using all its
scopes within its first actions (a scope first used late is an anomaly),
every grant used, consent by a person or an allow policy, and a delegation
limit of 5 so that trees of depth 3 are not "near the limit" anomalies.

It is built only through the public library (the ``Grantex`` facade on a
``Ledger`` whose clock this module moves forward), so it cannot contain a
state the library would refuse. A seed fixes everything that matters: names,
principals, tree shapes, times, statuses, counts, ids and the planted seqs
(ids come from :func:`grantex_local.ids.deterministic`). Keys, signatures and
token secrets stay random, and so do entry hashes (an agent's registration
records its key's thumbprint).

The total number of audit entries is exact: the plan is made first, the
lifecycle entries it will write are counted, and agent actions fill the rest.
``size="large"`` scales principals (not agents) with ``entries`` and logs
actions with ``audit.log_many``, one batch per minute of simulated time, so a
million entries take about three minutes and little memory: actions are
streamed in time order from one small generator per grant.
"""

from __future__ import annotations

import heapq
import itertools
import json
import math
import os
import random
import tempfile
from collections import Counter, deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from . import agents, authorization, developers, errors, grants, ids
from .audit.trail import count_entries
from .client import Grantex
from .clock import iso, parse_expires_in, parse_iso
from .demo import _make_room
from .export import export_bundle
from .founding import Ledger
from .models import ExchangeTokenResponse
from .progress import Progress, Tally

FORMAT = "grantex-local-sample"
VERSION = 1
DAY = 86_400
HOUR = 3_600
DAY0 = int(datetime(2026, 3, 2, tzinfo=UTC).timestamp())
"""Midnight UTC of day 0, a Monday. Fixed, so a seed gives the same ledger on any date."""
WEEKDAY_HOURS = (7, 21)
WEEKEND_HOURS = (10, 16)
"""When agents act (UTC). Nothing but the planted burst happens between 22:00 and 06:00."""
SIZES = {"small": 2_000, "large": 100_000}
"""Default total of audit entries per size. Small keeps the committed bundle under 5 MB."""
MAX_ENTRIES = 10_000_000
MAX_PER_AGENT_MINUTE = 20
"""Normal traffic never has more actions per agent per minute (the checks' default limit is 30)."""
MAX_BATCH = 5_000
STANDING_TTL = "30d"
MAX_EXPIRES_IN = "30d"
MAX_DELEGATION_DEPTH = 5
"""Trees go three levels deep; the limit is set above that because the protocol's
``cascade_delegation`` anomaly flags any grant within one level of the limit (depth 2 and 3 under
the default limit of 3), which would make every deep tree an anomaly instead of the planted ones."""
BUNDLE_DIR = "bundle"
PLANTED_FILE = "planted.json"

REVIEW_PARAMETERS: dict[str, Any] = {
    "max_ttl": STANDING_TTL, "unused_days": 30, "cache_window": "0s", "off_hours": [22, 6],
    "high_frequency_per_minute": 30,
}
"""The review settings this data is made for: grants up to 30 days are policy here, and with
these settings every check except the planted problems' must pass."""

PRINCIPAL_NAMES = ("user_alice", "user_bob", "user_carol", "user_dave", "user_erin", "user_frank",
                   "user_grace", "user_heidi", "user_ivan", "user_judy", "user_mallory", "user_niaj")

# ── the catalog: agents, what they are granted and what they do ─────────────

TRAVEL_SEARCH = "com.example.travel:search"
TRAVEL_BOOK = "com.example.travel:book"
WEB_SEARCH = "com.example.search:query"
CODE_READ, CODE_WRITE, CI_RUN = "com.example.code:read", "com.example.code:write", "com.example.ci:run"
SHOP_SEARCH, SHOP_ORDER = "com.example.shop:search", "com.example.shop:order"
SHOP_TRACK = "com.example.shop:track"
CRM_READ, CRM_WRITE = "com.example.crm:read", "com.example.crm:write"
PAY, PAY_READ = "payments:initiate", "payments:read"


@dataclass(frozen=True)
class Act:
    """One kind of action an agent logs: its name, the scope it uses, how common it is."""

    action: str
    scope: str
    weight: float = 1.0
    payment: bool = False  # metadata carries an amount, kept under the grant's max_N


@dataclass(frozen=True)
class Role:
    """An agent and its place in a family's delegation tree."""

    name: str
    description: str
    scopes: tuple[str, ...]  # what it is granted; PAY gets the budget share as max_N
    acts: tuple[Act, ...]
    children: tuple[Role, ...] = ()
    chance: float = 1.0  # how often a session delegates to it
    ttl: str = "8h"  # its delegation's expiresIn in a session (standing children live with the root)
    share: float = 1.0  # of the family budget, for PAY
    registered: tuple[str, ...] = ()  # registered scopes when wider than the granted ones

    def walk(self) -> Iterator[Role]:
        yield self
        for child in self.children:
            yield from child.walk()


@dataclass(frozen=True)
class Family:
    """A root agent and its sub-agents, and how principals use them."""

    name: str
    kind: str  # "session": short grants on weekdays; "standing": 30-day grants, renewed
    root: Role
    ttl: str = STANDING_TTL
    per_week: float = 0.0  # sessions per principal per week
    budgets: tuple[int, ...] = (0,)
    deny_rate: float = 0.0  # share of requests the principal refuses
    revoke_rate: float = 0.0  # share of sessions the principal revokes early (whole tree)
    branch_rate: float = 0.0  # share of sessions where one branch is revoked
    approval: str = "human"  # or "policy": an allow policy approves without a human


TRAVEL = Family("travel", "session", ttl="24h", per_week=0.25, budgets=(5000,),
                deny_rate=0.08, revoke_rate=0.12, branch_rate=0.15, root=Role(
    "travel-booker", "Plans and books trips end to end",
    ("calendar:read", TRAVEL_SEARCH, TRAVEL_BOOK, PAY),
    (Act("calendar.read", "calendar:read", 2), Act("trip.plan", TRAVEL_SEARCH, 3)),
    children=(
        Role("flight-finder", "Searches and books flights for the travel booker",
             (TRAVEL_SEARCH, TRAVEL_BOOK, PAY),
             (Act("flights.search", TRAVEL_SEARCH, 5), Act("flights.book", TRAVEL_BOOK),
              Act("payments.initiate", PAY, 0.8, payment=True)),
             chance=0.9, share=0.6, ttl="12h", children=(
                 Role("fare-watcher", "Watches fares for the flight finder", (TRAVEL_SEARCH,),
                      (Act("fares.check", TRAVEL_SEARCH),), chance=0.6, ttl="8h", children=(
                          Role("price-alerter", "Sends fare alerts found by the fare watcher",
                               (TRAVEL_SEARCH,), (Act("fares.alert", TRAVEL_SEARCH),),
                               chance=0.6, ttl="6h"),
                      )),
             )),
        Role("hotel-scout", "Searches and books hotels for the travel booker",
             (TRAVEL_SEARCH, TRAVEL_BOOK, PAY),
             (Act("hotels.search", TRAVEL_SEARCH, 4), Act("hotels.book", TRAVEL_BOOK),
              Act("payments.initiate", PAY, 0.8, payment=True)),
             chance=0.75, share=0.4, ttl="12h", children=(
                 Role("review-reader", "Reads hotel reviews for the hotel scout", (TRAVEL_SEARCH,),
                      (Act("reviews.read", TRAVEL_SEARCH),), chance=0.5, ttl="6h"),
             )),
        Role("car-rental-finder", "Finds rental cars at the destination", (TRAVEL_SEARCH, TRAVEL_BOOK),
             (Act("cars.search", TRAVEL_SEARCH, 3), Act("cars.book", TRAVEL_BOOK)), chance=0.3, ttl="8h"),
    )))

RESEARCH_ROOT = Role(
    "research-assistant", "Answers research questions from your files and the web",
    ("files:read", WEB_SEARCH, "email:send"),
    (Act("files.read", "files:read", 3), Act("report.send", "email:send", 0.5)),
    children=(
        Role("web-searcher", "Runs web searches for the research assistant", (WEB_SEARCH,),
             (Act("web.search", WEB_SEARCH),), chance=0.9, ttl="8h", children=(
                 Role("citation-checker", "Checks the sources the web searcher found", (WEB_SEARCH,),
                      (Act("citations.check", WEB_SEARCH),), chance=0.6, ttl="6h", children=(
                          Role("archive-fetcher", "Fetches archived copies of cited pages", (WEB_SEARCH,),
                               (Act("archive.fetch", WEB_SEARCH),), chance=0.5, ttl="4h"),
                      )),
             )),
        Role("summariser", "Summarises documents for the research assistant", ("files:read",),
             (Act("documents.summarise", "files:read"),), chance=0.7, ttl="6h"),
        Role("translator", "Translates documents for the research assistant", ("files:read",),
             (Act("documents.translate", "files:read"),), chance=0.3, ttl="4h"),
    ))
RESEARCH = Family("research", "session", ttl="12h", per_week=0.4, revoke_rate=0.1, branch_rate=0.15,
                  root=RESEARCH_ROOT)

CODE = Family("code", "session", ttl="10h", per_week=0.4, revoke_rate=0.08, branch_rate=0.1, root=Role(
    "coding-assistant", "Reads, edits and tests code in your repositories", (CODE_READ, CODE_WRITE, CI_RUN),
    (Act("code.read", CODE_READ, 4), Act("code.edit", CODE_WRITE, 2)),
    children=(
        Role("test-runner", "Runs the test suite for the coding assistant", (CODE_READ, CI_RUN),
             (Act("ci.run", CI_RUN, 2), Act("code.read", CODE_READ)), chance=0.8, ttl="8h", children=(
                 Role("flaky-test-detector", "Re-runs failing tests to spot flaky ones", (CI_RUN,),
                      (Act("tests.rerun", CI_RUN),), chance=0.4, ttl="4h"),
             )),
        Role("code-reviewer", "Reviews changes before they are merged", (CODE_READ,),
             (Act("review.read", CODE_READ),), chance=0.7, ttl="8h", children=(
                 Role("security-scanner", "Scans changes for security problems", (CODE_READ,),
                      (Act("security.scan", CODE_READ),), chance=0.5, ttl="6h", children=(
                          Role("dependency-auditor", "Audits the dependencies a change adds", (CODE_READ,),
                               (Act("dependencies.audit", CODE_READ),), chance=0.5, ttl="4h"),
                      )),
             )),
        Role("docs-writer", "Updates documentation to match code changes", (CODE_READ, CODE_WRITE),
             (Act("docs.read", CODE_READ), Act("docs.write", CODE_WRITE)), chance=0.3, ttl="6h"),
    )))

SHOPPING = Family("shopping", "session", ttl="24h", per_week=0.2, budgets=(500,),
                  deny_rate=0.15, revoke_rate=0.1, root=Role(
    "shopping-assistant", "Finds and orders products within a budget",
    (SHOP_SEARCH, SHOP_ORDER, SHOP_TRACK, PAY),
    (Act("products.search", SHOP_SEARCH, 4),),
    children=(
        Role("price-comparer", "Compares prices across shops", (SHOP_SEARCH,),
             (Act("prices.compare", SHOP_SEARCH),), chance=0.8, ttl="8h"),
        Role("checkout-agent", "Places orders and pays for them", (SHOP_ORDER, SHOP_TRACK, PAY),
             (Act("orders.place", SHOP_ORDER), Act("payments.initiate", PAY, payment=True)),
             chance=0.7, share=1.0, ttl="12h", children=(
                 Role("delivery-tracker", "Tracks deliveries of placed orders", (SHOP_TRACK,),
                      (Act("deliveries.track", SHOP_TRACK),), chance=0.6, ttl="12h"),
             )),
    )))

FINANCE = Family("finance", "standing", budgets=(2000,), root=Role(
    "expense-manager", "Keeps track of expenses and pays approved invoices",
    (PAY_READ, "files:read", PAY),
    (Act("expenses.list", PAY_READ, 2), Act("receipts.read", "files:read")),
    children=(
        Role("receipt-reader", "Reads receipts into expense lines", ("files:read",),
             (Act("receipts.parse", "files:read"),)),
        Role("invoice-payer", "Pays approved invoices", (PAY, PAY_READ),
             (Act("invoices.list", PAY_READ, 2), Act("invoices.pay", PAY, payment=True)), share=0.25,
             children=(
                 Role("payment-reconciler", "Matches payments with bank statements", (PAY_READ,),
                      (Act("payments.reconcile", PAY_READ),)),
             )),
        Role("budget-forecaster", "Forecasts the month's spending", (PAY_READ,),
             (Act("budget.forecast", PAY_READ),), chance=0.6),
    )))

INBOX = Family("inbox", "standing", root=Role(
    "inbox-triage", "Sorts and answers routine email",
    ("email:read", "email:send", "calendar:read", "calendar:write", "contacts:read"),
    (Act("email.read", "email:read", 4), Act("email.reply", "email:send"), Act("email.label", "email:read")),
    children=(
        Role("calendar-scheduler", "Schedules meetings requested by email",
             ("calendar:read", "calendar:write"),
             (Act("calendar.read", "calendar:read", 2), Act("calendar.schedule", "calendar:write")),
             children=(
                 Role("room-booker", "Books meeting rooms for scheduled meetings", ("calendar:write",),
                      (Act("rooms.book", "calendar:write"),), chance=0.7),
             )),
        Role("newsletter-filter", "Files newsletters away from the inbox", ("email:read",),
             (Act("email.filter", "email:read"),), registered=("email:read", "email:send")),
        Role("contact-enricher", "Adds details to contacts from signatures", ("contacts:read",),
             (Act("contacts.enrich", "contacts:read"),), chance=0.6),
    )))

CRM = Family("crm", "standing", root=Role(
    "sales-assistant", "Keeps the CRM up to date and drafts outreach",
    (CRM_READ, CRM_WRITE, "email:send"),
    (Act("crm.read", CRM_READ, 3), Act("crm.update", CRM_WRITE)),
    children=(
        Role("lead-scorer", "Scores new leads", (CRM_READ,), (Act("leads.score", CRM_READ),)),
        Role("outreach-writer", "Drafts and sends outreach email", (CRM_READ, "email:send"),
             (Act("outreach.draft", CRM_READ, 2), Act("outreach.send", "email:send")), children=(
                 Role("followup-scheduler", "Sends follow-ups to unanswered outreach", ("email:send",),
                      (Act("followups.send", "email:send"),), chance=0.7),
             )),
    )))

CALENDAR = Family("calendar", "standing", approval="policy", root=Role(
    "calendar-assistant", "Reads your calendar to prepare a daily agenda", ("calendar:read",),
    (Act("agenda.prepare", "calendar:read"), Act("calendar.read", "calendar:read", 3))))

SESSION_FAMILIES = (TRAVEL, RESEARCH, CODE, SHOPPING)
STANDING_FAMILIES = (FINANCE, INBOX, CRM, CALENDAR)
FAMILIES = (*SESSION_FAMILIES, *STANDING_FAMILIES)
EMAIL_CLEANER = ("email-cleaner", "Deletes old email to free space", ("email:read", "email:delete"))
"""Registered, but the deny policy refuses every request it makes: it never gets a grant."""

DENY_POLICY = "Agents never delete email"
FAILURES = ("timeout", "upstream_error", "not_found")
BLOCKS = ("rate_limited", "needs_confirmation")


def _act_scope(act: Act, node: Node) -> str:
    """The scope an action records: a payment cites its grant's ``payments:initiate:max_N``
    (an unconstrained ``payments:initiate`` would not be covered by it)."""
    if act.payment:
        return next(s for s in node.scopes if s.startswith(PAY + ":max_"))
    return act.scope


def _roles() -> list[Role]:
    return [role for family in FAMILIES for role in family.root.walk()]


# ── time ─────────────────────────────────────────────────────────────────────


def _day_start(day: int) -> int:
    return DAY0 + day * DAY


def _weekday(day: int) -> bool:
    return day % 7 < 5


def _business_segments(start: int, end: int) -> list[tuple[int, int]]:
    """The parts of [start, end) inside the hours agents act in."""
    out: list[tuple[int, int]] = []
    day = max(0, (start - DAY0) // DAY)
    while _day_start(day) < end:
        lo, hi = WEEKDAY_HOURS if _weekday(day) else WEEKEND_HOURS
        s, e = max(start, _day_start(day) + lo * HOUR), min(end, _day_start(day) + hi * HOUR)
        if e > s:
            out.append((s, e))
        day += 1
    return out


def _seconds(ttl: str) -> int:
    return parse_expires_in(ttl, maximum=365 * DAY)


# ── the plan ─────────────────────────────────────────────────────────────────


@dataclass(eq=False)
class Node:
    """One grant of the plan: who holds it, when it lives, how many actions it logs."""

    key: int
    role: Role
    family: Family
    principal: str
    parent: Node | None
    start: int  # issued (root: the moment the human approved)
    expires: int
    scopes: list[str]
    budget: int = 0
    children: list[Node] = field(default_factory=list)
    revoked_at: int | None = None
    cut: int | None = None  # no actions from here on (revoked, or the agent suspended)
    actions: int = 0
    segments: list[tuple[int, int]] = field(default_factory=list)

    @property
    def depth(self) -> int:
        return 0 if self.parent is None else self.parent.depth + 1

    def subtree(self) -> Iterator[Node]:
        yield self
        for child in self.children:
            yield from child.subtree()

    def max_amount(self) -> int:
        for scope in self.scopes:
            if scope.startswith(PAY + ":max_"):
                return int(scope.rsplit("_", 1)[1])
        return 0

    def stop(self, at: int) -> None:
        self.cut = at if self.cut is None else min(self.cut, at)


@dataclass(order=True)
class Event:
    """Something other than an agent action, at a moment of the plan."""

    time: int
    order: int
    kind: str = field(compare=False)
    node: Node | None = field(compare=False, default=None)
    data: dict[str, Any] = field(compare=False, default_factory=dict)
    entries: int = field(compare=False, default=0)  # audit entries it writes


class Planner:
    """Decides every grant, revocation and planted problem before anything is written."""

    def __init__(self, seed: int, days: int, principals: int) -> None:
        self.rng = random.Random(seed)
        self.seed = seed
        self.days = days
        self.end = _day_start(days - 1) + 21 * HOUR + 30 * 60
        self.nodes: list[Node] = []
        self.events: list[Event] = []
        self.principals = self._principals(principals)
        self.uses = self._uses()
        self.planted: dict[str, dict[str, Any]] = {}
        self.stops: dict[tuple[str, str], int] = {}  # (family, principal) -> no renewal from here on
        self._keys = itertools.count()  # node keys stay unique when dropped nodes leave gaps

    # principals and what they use

    def _principals(self, count: int) -> list[str]:
        names = list(PRINCIPAL_NAMES)
        self.rng.shuffle(names)
        extra = [f"user_{i:04d}" for i in range(1, max(0, count - len(names)) + 1)]
        return (names + extra)[:count]

    def _uses(self) -> dict[str, list[str]]:
        """Family name -> the principals who use it (every family has at least two)."""
        uses: dict[str, list[str]] = {f.name: [] for f in FAMILIES}
        for who in self.principals:
            for family in self.rng.sample(SESSION_FAMILIES, 2):
                uses[family.name].append(who)
            for family in STANDING_FAMILIES:
                if self.rng.random() < 0.6:
                    uses[family.name].append(who)
        for family in FAMILIES:
            while len(uses[family.name]) < 2:
                spare = [p for p in self.principals if p not in uses[family.name]]
                uses[family.name].append(self.rng.choice(spare))
        return uses

    # events

    def event(self, time: int, kind: str, node: Node | None = None, entries: int = 0, **data: Any) -> None:
        self.events.append(Event(time, len(self.events), kind, node, data, entries))

    def _node(self, role: Role, family: Family, principal: str, parent: Node | None, start: int,
              ttl: int, budget: int) -> Node:
        expires = start + ttl if parent is None else min(parent.expires, start + ttl)
        scopes = [f"{s}:max_{int(budget * role.share)}" if s == PAY else s for s in role.scopes]
        node = Node(next(self._keys), role, family, principal, parent, start, expires, scopes, budget)
        self.nodes.append(node)
        if parent is not None:
            parent.children.append(node)
        return node

    def _request(self, family: Family, principal: str, at: int, budget: int, *,
                 deny: bool = False) -> Node | None:
        """A root authorization: requested at ``at``, decided by the principal a little later."""
        role = family.root
        if family.approval == "policy":
            node = self._node(role, family, principal, None, at, _seconds(family.ttl), budget)
            self.event(at, "authorize", node, entries=3, ttl=family.ttl)  # requested, approved, issued
            return node
        decided = at + self.rng.randrange(20, 300)
        if deny:
            scopes = [f"{s}:max_{budget}" if s == PAY else s for s in role.scopes]
            self.event(at, "authorize", None, entries=1, agent=role.name, principal=principal,
                       scopes=scopes, ttl=family.ttl, key=("deny", at, principal))
            self.event(decided, "deny", None, entries=1, principal=principal, key=("deny", at, principal))
            return None
        node = self._node(role, family, principal, None, decided, _seconds(family.ttl), budget)
        self.event(at, "authorize", node, entries=1, ttl=family.ttl)
        self.event(decided, "approve", node, entries=2)  # approved, issued
        return node

    def _delegate(self, parent: Node, role: Role, at: int, ttl: int, *, grow: bool = True,
                  chance: bool = True) -> Node | None:
        if at >= parent.expires - HOUR or (chance and self.rng.random() >= role.chance):
            return None
        node = self._node(role, parent.family, parent.principal, parent, at, ttl, parent.budget)
        if grow:
            for child in role.children:
                self._delegate(node, child, at + self.rng.randrange(120, 1200), ttl)
        return node

    def revoke(self, node: Node, at: int, cause: str = "") -> None:
        """Revoke ``node``'s subtree at ``at``; delegations planned for later are dropped."""
        for n in list(node.subtree()):
            for child in list(n.children):
                if child.start >= at - 600:
                    self._drop(child)
        revoked = 0
        for n in node.subtree():
            if n.revoked_at is None:
                n.revoked_at = at
                revoked += 1
            n.stop(at)
        self.event(at, "revoke", node, entries=revoked, cause=cause)

    def _drop(self, node: Node) -> None:
        assert node.parent is not None
        node.parent.children.remove(node)
        dropped = set(node.subtree())
        self.nodes = [n for n in self.nodes if n not in dropped]

    # sessions

    def sessions(self) -> None:
        for family in SESSION_FAMILIES:
            for principal in self.uses[family.name]:
                busy_until = 0
                for day in range(self.days):
                    if not _weekday(day) or self.rng.random() >= family.per_week / 5:
                        continue
                    at = _day_start(day) + 8 * HOUR + self.rng.randrange(0, 8 * HOUR)
                    if at < busy_until + HOUR:
                        continue
                    node = self.session(family, principal, at)
                    busy_until = node.expires if node else at

    def session(self, family: Family, principal: str, at: int) -> Node | None:
        budget = self.rng.choice(family.budgets)
        root = self._request(family, principal, at, budget, deny=self.rng.random() < family.deny_rate)
        if root is None:
            return None
        for role in family.root.children:
            self._delegate(root, role, root.start + self.rng.randrange(120, 1800), _seconds(role.ttl))
        self._maybe_revoke_session(root)
        return root

    def _maybe_revoke_session(self, root: Node) -> None:
        family = root.family
        draw = self.rng.random()
        if draw < family.revoke_rate:
            target = root
        elif draw < family.revoke_rate + family.branch_rate and root.children:
            target = self.rng.choice(root.children)
        else:
            return
        segments = _business_segments(target.start + HOUR, min(target.expires, self.end) - HOUR)
        if segments:
            s, e = self.rng.choice(segments)
            self.revoke(target, self.rng.randrange(s, e), cause="principal")

    # standing grants

    def standing(self, suspended: dict[str, int]) -> None:
        for family in STANDING_FAMILIES:
            for principal in self.uses[family.name]:
                stop = self.stops.get((family.name, principal), self.end - DAY)
                at = _day_start(self.rng.randrange(0, 4)) + 9 * HOUR + self.rng.randrange(0, 2 * HOUR)
                while at < stop:
                    root = self._request(family, principal, at, family.budgets[0])
                    assert root is not None
                    for role in family.root.children:
                        when = root.start + self.rng.randrange(300, 3600)
                        if when >= suspended.get(role.name, self.end) - 2 * HOUR:
                            continue  # the agent is suspended by then
                        self._delegate(root, role, when, _seconds(family.ttl), chance=role.chance < 1)
                    at = root.start + _seconds(family.ttl) - DAY  # renewed a day before it runs out

    def find(self, role: str, principal: str, at: int) -> Node:
        """The grant of ``role`` for ``principal`` live at ``at`` (the plan guarantees one)."""
        for node in self.nodes:
            if (node.role.name == role and node.principal == principal and node.start + 60 < at
                    and at < node.expires and (node.cut is None or at < node.cut)):
                return node
        raise AssertionError(f"no live {role} grant for {principal} at {iso(at)}")

    # planted problems and the incidents that follow them

    def plan(self) -> None:
        d = self.days
        pick = self.rng.choice
        research = pick(self.uses["research"])
        finance, inbox = pick(self.uses["finance"]), pick(self.uses["inbox"])
        crm_burst, crm_leaver = self.rng.sample(self.uses["crm"], 2)
        day_revoked = self._weekday_near(round(d * 0.33))
        day_amount = self._weekday_near(round(d * 0.42))
        day_burst = self._weekday_near(round(d * 0.5))
        day_scope = self._weekday_near(round(d * 0.58))
        day_leave = self._weekday_near(round(d * 0.67))
        suspend_at = _day_start(self._weekday_near(day_scope + 1)) + 9 * HOUR + 35 * 60
        # the principal who leaves the CRM: their grants are revoked and not renewed
        leave_at = _day_start(day_leave) + 10 * HOUR + self.rng.randrange(0, 3600)
        self.stops[("crm", crm_leaver)] = leave_at - HOUR
        self.policy_denials()
        self.human_denial(pick(self.uses["shopping"]), self._weekday_near(round(d * 0.25)))
        self.sessions()
        self.after_revocation_session(research, day_revoked)
        self.standing({"newsletter-filter": suspend_at})
        for node in list(self.nodes):
            if (node.role is CRM.root and node.principal == crm_leaver and node.start < leave_at
                    < node.expires):
                self.revoke(node, leave_at, cause="offboarding")
        self.amount_over_budget(finance, day_amount)
        self.off_hours_burst(crm_burst, day_burst)
        self.scope_not_granted(inbox, day_scope, suspend_at)
        self.checkpoints()
        for node in self.nodes:  # delegations last: revocations above may have dropped some
            if node.parent is not None:
                self.event(node.start, "delegate", node, entries=1)

    def _weekday_near(self, day: int) -> int:
        while not _weekday(day):
            day += 1
        return min(day, self.days - 2)

    def policy_denials(self) -> None:
        for day in sorted(self.rng.sample(range(1, self.days - 1), 3)):
            at = _day_start(day) + 10 * HOUR + self.rng.randrange(0, 6 * HOUR)
            self.event(at, "authorize", None, entries=2, agent=EMAIL_CLEANER[0],
                       principal=self.rng.choice(self.principals), scopes=list(EMAIL_CLEANER[2]),
                       ttl="8h", denied=True)

    def human_denial(self, principal: str, day: int) -> None:
        """A shopping assistant asks for a budget of 5,000 and the principal says no (besides the
        refusals the deny rates draw, so every seed has at least one)."""
        at = _day_start(day) + 15 * HOUR + self.rng.randrange(0, HOUR)
        self._request(SHOPPING, principal, at, 5_000, deny=True)

    def after_revocation_session(self, principal: str, day: int) -> None:
        """A research session whose whole tree is revoked at 11:30; the archive fetcher, three
        levels down, keeps using its cached token 90 minutes later."""
        at = _day_start(day) + 9 * HOUR
        root = self._request(RESEARCH, principal, at, 0)
        assert root is not None
        searcher_role = RESEARCH_ROOT.children[0]
        checker_role = searcher_role.children[0]
        fetcher_role = checker_role.children[0]
        t = root.start + 8 * 60
        searcher = self._delegate(root, searcher_role, t, _seconds("8h"), grow=False, chance=False)
        assert searcher is not None
        checker = self._delegate(searcher, checker_role, t + 300, _seconds("8h"), grow=False, chance=False)
        assert checker is not None
        fetcher = self._delegate(checker, fetcher_role, t + 600, _seconds("8h"), grow=False, chance=False)
        assert fetcher is not None
        self._delegate(root, RESEARCH_ROOT.children[1], t + 120, _seconds("6h"), chance=False)
        revoked = _day_start(day) + 11 * HOUR + 30 * 60
        self.revoke(root, revoked, cause="principal")
        item = self._item(fetcher, "archive.fetch", WEB_SEARCH, {"url": "https://example.org/a"})
        self.plant("after_revocation", 5, revoked + 90 * 60, fetcher, [[item]],
                   f"{fetcher.role.name} acted 90 minutes after its grant was revoked (with its "
                   f"whole tree, at {iso(revoked)})", also=(4, 6))

    def amount_over_budget(self, principal: str, day: int) -> Node:
        """invoice-payer pays 900 under payments:initiate:max_500; its grant is revoked the next
        business morning and a fresh one delegated."""
        at = _day_start(day) + 11 * HOUR + self.rng.randrange(0, HOUR)
        payer = self.find("invoice-payer", principal, at)
        item = self._item(payer, "invoices.pay", payer.scopes[0], {"amount": 900, "invoice": "INV-7731"})
        self.plant("scope_outside_grant", 3, at, payer, [[item]],
                   f"{payer.role.name} paid 900 under {payer.scopes[0]}")
        revoke_at = _day_start(self._weekday_near(day + 1)) + 10 * HOUR
        self.revoke(payer, revoke_at, cause="incident")
        assert payer.parent is not None
        # a fresh grant for the payer, unless the parent is about to be renewed anyway
        self._delegate(payer.parent, payer.role, revoke_at + 30 * 60, _seconds(STANDING_TTL), chance=False)
        return payer

    def scope_not_granted(self, principal: str, day: int, suspend_at: int) -> None:
        """newsletter-filter, granted email:read only, sends an email (email:send); its grant is
        revoked the next morning and the agent suspended."""
        at = _day_start(day) + 14 * HOUR + self.rng.randrange(0, HOUR)
        node = self.find("newsletter-filter", principal, at)
        item = self._item(node, "email.unsubscribe", "email:send", {"list": "weekly-deals"})
        self.plant("scope_outside_grant", 3, at, node, [[item]],
                   f"{node.role.name} used email:send, which its grant ({', '.join(node.scopes)}) lacks",
                   also=(11,))
        self.revoke(node, suspend_at - 5 * 60, cause="incident")
        for n in self.nodes:
            if n.role.name == node.role.name:
                n.stop(suspend_at)
        self.event(suspend_at, "suspend", None, entries=1, agent=node.role.name)

    def off_hours_burst(self, principal: str, day: int) -> None:
        """lead-scorer scores 40 leads at 3 a.m. UTC within one minute."""
        at = _day_start(day) + 3 * HOUR + 5
        node = self.find("lead-scorer", principal, at)
        batches = [[self._item(node, "leads.score", CRM_READ, {"lead": f"L-{4000 + 10 * b + i}"})
                    for i in range(10)] for b in range(4)]
        self.plant("off_hours_burst", 11, at, node, batches,
                   f"{node.role.name} logged 40 actions within one minute at 03:00 UTC", spacing=15)

    def _item(self, node: Node, action: str, scope: str, extra: dict[str, Any]) -> dict[str, Any]:
        return {"node": node, "action": action, "metadata": {"scope": scope, **extra}}

    def plant(self, name: str, check: int, at: int, node: Node, batches: list[list[dict[str, Any]]],
              description: str, spacing: int = 0, also: tuple[int, ...] = ()) -> None:
        """Plant a problem for ``check``; ``also`` are the other checks that, by their definition,
        must cite these same entries (recorded per batch in the manifest's ``foundBy``)."""
        entry = self.planted.setdefault(name, {"check": check, "descriptions": [], "count": 0})
        entry["descriptions"].append(description)
        for i, batch in enumerate(batches):
            self.event(at + i * spacing, "planted", node, entries=len(batch), name=name, items=batch,
                       checks=(check, *also))
            entry["count"] += len(batch)

    def checkpoints(self) -> None:
        for day in range(7, self.days, 7):
            self.event(_day_start(day) + 7 * HOUR - 60, "checkpoint")
        self.event(self.end, "checkpoint")

    # actions

    def allocate(self, actions: int) -> None:
        """Share ``actions`` among the grants: every grant acts at least once, and sessions (an
        agent at work) act about twenty times as often per hour as standing grants."""
        weights = []
        for node in self.nodes:
            end = min(node.expires, self.end if node.cut is None else min(node.cut, self.end))
            node.segments = _business_segments(node.start + 60, end - 60)
            length = sum(e - s for s, e in node.segments)
            if length <= 0:
                raise AssertionError(f"grant {node.key} ({node.role.name}) has no time to act")
            weights.append(length * (1.0 if node.family.kind == "session" else 0.05))
        if actions < len(self.nodes):
            raise errors.InvalidInput(
                f"entries is too small for this plan: its {len(self.nodes)} grants need at least one action "
                "each; give more entries or fewer months")
        total = sum(weights)
        spare = actions - len(self.nodes)
        shares = [spare * w / total for w in weights]
        for node, share in zip(self.nodes, shares, strict=True):
            node.actions = 1 + int(share)
        left = actions - sum(n.actions for n in self.nodes)
        order = sorted(range(len(self.nodes)), key=lambda i: (-(shares[i] % 1), i))
        for i in order[:left]:
            self.nodes[i].actions += 1

    def node_actions(self, node: Node) -> Iterator[tuple[int, int, int, float, float, float, int]]:
        """The node's actions in time order, spread evenly (with jitter) over its business hours.

        Yields ``(time, node key, index, act draw, amount draw, status draw, reason draw)``: the
        runner turns the draws into an action (it knows which scopes the agent has used so far).
        """
        rng = random.Random(f"{self.seed}:{node.key}")
        length = sum(e - s for s, e in node.segments)
        step = length / node.actions
        seg, before = 0, 0
        for k in range(node.actions):
            offset = (k + rng.uniform(0.05, 0.95)) * step
            while offset >= before + node.segments[seg][1] - node.segments[seg][0]:
                before += node.segments[seg][1] - node.segments[seg][0]
                seg += 1
            at = node.segments[seg][0] + int(offset - before)
            yield at, node.key, k, rng.random(), rng.uniform(0.03, 0.9), rng.random(), rng.randrange(6)


# ── running the plan through the library ─────────────────────────────────────


class _Clock:
    def __init__(self, now: int) -> None:
        self.now = float(now)

    def __call__(self) -> float:
        return self.now


class Runner:
    """Executes the plan in time order through the ``Grantex`` facade."""

    def __init__(self, gx: Grantex, plan: Planner, clock: _Clock, batch_by_minute: bool,
                 tally: Tally | None = None) -> None:
        self.gx = gx
        self.tally = tally if tally is not None else Tally(None, None)
        self.plan = plan
        self.clock = clock
        self.by_minute = batch_by_minute
        self.nodes = {n.key: n for n in plan.nodes}
        self.agents: dict[str, str] = {}
        self.requests: dict[Any, str] = {}
        self.tokens: dict[int, ExchangeTokenResponse] = {}
        self.planted: dict[str, dict[str, Any]] = {}
        self.statuses: Counter[str] = Counter()
        self.actions = 0
        self._recent: dict[str, deque[int]] = {}
        self._seen: dict[str, set[str]] = {}

    def setup(self, at: int) -> None:
        self.clock.now = at
        ledger = self.gx.ledger
        ledger.set_setting("max_expires_in", MAX_EXPIRES_IN)
        ledger.set_setting("max_delegation_depth", str(MAX_DELEGATION_DEPTH))
        developers.set_sandbox(ledger, self.gx.developer_id, False)  # a human decides every request
        for role in _roles():
            registered = sorted({s.split(":max_")[0] for s in (role.registered or role.scopes)})
            if role.name not in self.agents:
                self.agents[role.name] = self.gx.agents.register(
                    name=role.name, description=role.description, scopes=registered).id
        name, description, scopes = EMAIL_CLEANER
        self.agents[name] = self.gx.agents.register(name=name, description=description,
                                                    scopes=list(scopes)).id
        self.gx.policies.create(name=DENY_POLICY, effect="deny", priority=100, scopes=["email:delete"])
        self.gx.policies.create(name="The calendar assistant may read calendars", effect="allow",
                                priority=10, agent_id=self.agents[CALENDAR.root.name],
                                scopes=["calendar:read"])

    def run(self, events: list[Event]) -> None:
        streams = [self.plan.node_actions(n) for n in self.plan.nodes]
        actions = heapq.merge(*streams)
        pending = next(actions, None)
        batch: list[dict[str, Any]] = []
        batch_key: int | None = None
        batch_time = 0
        for event in [*sorted(events), None]:
            horizon = math.inf if event is None else event.time
            while pending is not None and pending[0] < horizon:
                at, key, *draws = pending
                this_key = at // 60 if self.by_minute else at
                if batch and (this_key != batch_key or len(batch) >= MAX_BATCH):
                    self._log(batch_time, batch)
                    batch = []
                if not batch:
                    batch_key, batch_time = this_key, at
                batch.append(self._action(at, self.nodes[key], draws[1:]))
                pending = next(actions, None)
            if batch:
                self._log(batch_time, batch)
                batch = []
            if event is not None:
                self.clock.now = event.time
                self._event(event)
                self.tally.advance(event.entries)  # the entries the plan counted for it

    def _action(self, at: int, node: Node, draws: list[Any]) -> dict[str, Any]:
        """One action of ``node`` at ``at`` from its draws.

        An agent's first actions use each of its scopes once, so none is first used after the
        anomaly check's baseline of 20 actions (which would flag a legitimate scope as unusual).
        """
        act_draw, amount_draw, status_draw, reason_draw = draws
        name = node.role.name
        recent = self._recent.setdefault(name, deque())
        recent.append(at)
        while recent[0] <= at - 60:
            recent.popleft()
        if len(recent) > MAX_PER_AGENT_MINUTE:
            raise AssertionError(f"{name} is over {MAX_PER_AGENT_MINUTE} actions a minute at {iso(at)}")
        hour = (at - DAY0) % DAY // HOUR
        if not WEEKDAY_HOURS[0] <= hour < WEEKDAY_HOURS[1]:
            raise AssertionError(f"an action outside business hours at {iso(at)}")
        seen = self._seen.setdefault(name, set())
        acts = node.role.acts
        unseen = [a for a in acts if _act_scope(a, node) not in seen]
        if unseen:
            act = unseen[0]
        else:
            total, pick = sum(a.weight for a in acts), act_draw
            act = acts[-1]
            for candidate in acts:
                pick -= candidate.weight / total
                if pick < 0:
                    act = candidate
                    break
        scope = _act_scope(act, node)
        seen.add(scope)
        metadata: dict[str, Any] = {"scope": scope}
        if act.payment:
            metadata["amount"] = round(amount_draw * node.max_amount(), 2)
        status = "success"
        if status_draw < 0.03:
            status, metadata["error"] = "failure", FAILURES[reason_draw % len(FAILURES)]
        elif status_draw < 0.04:
            status, metadata["reason"] = "blocked", BLOCKS[reason_draw % len(BLOCKS)]
        self.statuses[status] += 1
        return {"agent_id": self.agents[name], "grant_id": self.tokens[node.key].grant_id,
                "action": act.action, "status": status, "metadata": metadata}

    def _log(self, at: int, batch: list[dict[str, Any]]) -> None:
        self.clock.now = at
        self.gx.audit.log_many(batch)
        self.actions += len(batch)
        self.tally.advance(len(batch))

    def _event(self, event: Event) -> None:
        gx, node, data = self.gx, event.node, event.data
        if event.kind == "authorize" and node is not None:
            request = gx.authorize(agent_id=self.agents[node.role.name], user_id=node.principal,
                                   scopes=node.scopes, expires_in=data["ttl"])
            if node.family.approval == "policy":
                assert request.code is not None, "the allow policy should have approved"
                self.tokens[node.key] = gx.tokens.exchange(code=request.code,
                                                           agent_id=self.agents[node.role.name])
            else:
                self.requests[node.key] = request.request_id
        elif event.kind == "authorize":
            try:
                request = gx.authorize(agent_id=self.agents[data["agent"]], user_id=data["principal"],
                                       scopes=data["scopes"], expires_in=data["ttl"])
            except errors.PolicyDenied:
                assert data.get("denied"), "only the email cleaner is refused by policy"
            else:
                self.requests[data["key"]] = request.request_id
        elif event.kind == "approve" and node is not None:
            decision = gx.consent.approve(self.requests.pop(node.key), decided_by=node.principal)
            assert decision.code is not None
            self.tokens[node.key] = gx.tokens.exchange(code=decision.code,
                                                       agent_id=self.agents[node.role.name])
        elif event.kind == "deny":
            gx.consent.deny(self.requests.pop(data["key"]), decided_by=data["principal"])
        elif event.kind == "delegate" and node is not None and node.parent is not None:
            self.tokens[node.key] = gx.grants.delegate(
                parent_grant_token=self.tokens[node.parent.key].grant_token,
                sub_agent_id=self.agents[node.role.name], scopes=node.scopes,
                expires_in=f"{node.expires - event.time}s")
        elif event.kind == "revoke" and node is not None:
            gx.grants.revoke(self.tokens[node.key].grant_id)
        elif event.kind == "suspend":
            gx.agents.suspend(self.agents[data["agent"]])
        elif event.kind == "checkpoint":
            gx.audit.checkpoint()
        elif event.kind == "planted" and node is not None:
            items = [{"agent_id": self.agents[node.role.name], "grant_id": self.tokens[node.key].grant_id,
                      "action": i["action"], "metadata": i["metadata"]} for i in data["items"]]
            logged = gx.audit.log_many(items)
            entry = self.planted.setdefault(data["name"], {"seqs": [], "entryIds": [], "grantIds": [],
                                                           "foundBy": {}})
            entry["seqs"] += [e.seq for e in logged]
            for check in data["checks"]:
                entry["foundBy"].setdefault(str(check), []).extend(e.seq for e in logged)
            entry["entryIds"] += [e.entry_id for e in logged]
            if logged[0].grant_id not in entry["grantIds"]:
                entry["grantIds"].append(logged[0].grant_id)
        else:
            raise AssertionError(f"unknown event {event.kind}")


# ── the public entry points ──────────────────────────────────────────────────


def generate(path: str | os.PathLike[str], *, seed: int = 0, months: int = 3, size: str = "small",
             entries: int | None = None, force: bool = False,
             progress: Progress | None = None) -> dict[str, Any]:
    """Build the sample ledger at ``path`` and return its manifest (see the module docstring).

    ``entries`` is the exact number of audit entries (default: :data:`SIZES` of ``size`` for three
    months, in proportion for other lengths).
    ``size="large"`` batches actions per minute and has more principals; ``force`` replaces an
    existing ledger file. ``progress`` is told the audit entries written, of ``entries``.
    """
    if size not in SIZES:
        raise errors.InvalidInput(f"size must be one of {', '.join(SIZES)}, not {size!r}")
    if isinstance(months, bool) or not isinstance(months, int) or not 1 <= months <= 24:
        raise errors.InvalidInput("months must be a whole number from 1 to 24")
    total = max(1_000, SIZES[size] * months // 3) if entries is None else entries
    if isinstance(total, bool) or not isinstance(total, int) or not 1_000 <= total <= MAX_ENTRIES:
        raise errors.InvalidInput(f"entries must be a whole number from 1000 to {MAX_ENTRIES:,}")
    target = Path(path)
    _make_room(target, force)
    principals = max(6, min(250, total // 4_000))
    plan = Planner(seed, months * 30, principals)
    plan.plan()
    roles = _roles()
    setup_entries = 3 + len({r.name for r in roles}) + 1 + 2  # settings (2), developer, agents, policies
    lifecycle = setup_entries + sum(e.entries for e in plan.events if e.kind != "planted")
    planted = sum(e.entries for e in plan.events if e.kind == "planted")
    plan.allocate(total - lifecycle - planted)
    clock = _Clock(DAY0 + 8 * HOUR)
    with ids.deterministic(seed, (DAY0 + 8 * HOUR) * 1000), Ledger(target, clock=clock) as ledger:
        gx = Grantex(ledger)
        tally = Tally(progress, total)
        runner = Runner(gx, plan, clock, batch_by_minute=size == "large", tally=tally)
        runner.setup(DAY0 + 8 * HOUR)
        tally.reach(setup_entries)
        runner.run(plan.events)
        clock.now = plan.end
        written = count_entries(ledger)
        if written != total:
            raise AssertionError(f"the plan promised {total} audit entries but wrote {written}")
        manifest = _manifest(gx, plan, runner, seed=seed, months=months, size=size, entries=total)
        tally.finish()
        return manifest


def _manifest(gx: Grantex, plan: Planner, runner: Runner, **settings: Any) -> dict[str, Any]:
    ledger = gx.ledger
    all_grants = grants.list_grants(ledger, None)
    all_agents = agents.list_agents(ledger, None)
    requests = authorization.list_requests(ledger, None, status=None)
    grant_status = Counter(g.status for g in all_grants)
    planted = {}
    for name, facts in sorted(runner.planted.items()):
        planned = plan.planted[name]
        planted[name] = {"check": planned["check"], "seqs": facts["seqs"], "entryIds": facts["entryIds"],
                         "grantIds": facts["grantIds"],
                         "foundBy": dict(sorted(facts["foundBy"].items(), key=lambda kv: int(kv[0]))),
                         "description": "; ".join(planned["descriptions"])}
    return {
        "format": FORMAT, "version": VERSION, **settings,
        "developerId": gx.developer_id,
        "period": {"start": iso(DAY0 + 8 * HOUR), "end": iso(plan.end)},
        "reviewParameters": dict(REVIEW_PARAMETERS, review_start=iso(DAY0), review_end=iso(plan.end)),
        "principals": sorted(plan.principals),
        "counts": {
            "auditEntries": count_entries(ledger),
            "actions": runner.actions + sum(p["count"] for p in plan.planted.values()),
            "actionStatuses": dict(sorted(runner.statuses.items())),
            "agents": len(all_agents),
            "agentsSuspended": sum(a.status == "suspended" for a in all_agents),
            "principals": len(plan.principals),
            "grants": len(all_grants),
            "rootGrants": sum(g.parent_grant_id is None for g in all_grants),
            "grantStatuses": dict(sorted(grant_status.items())),
            "maxDelegationDepth": max(g.delegation_depth for g in all_grants),
            "policies": len(gx.policies.list().policies),
            "authRequests": dict(sorted(Counter(r.status for r in requests).items())),
            "checkpoints": len(gx.audit.checkpoints()),
        },
        "planted": planted,
    }


def export_sample(ledger_path: str | os.PathLike[str], out_dir: str | os.PathLike[str],
                  manifest: dict[str, Any], *, force: bool = False) -> dict[str, Any]:
    """Export a sample ledger as a bundle as of the end of its period (returns the bundle manifest).

    The clock is the period's end so that grant statuses in the bundle (active, expired,
    revoked) are the ones the notebooks and checks reason about, whatever today's date is.
    """
    end = parse_iso(manifest["period"]["end"])
    with Ledger(ledger_path, create=False, clock=lambda: end) as ledger:
        return export_bundle(ledger, out_dir, force=force)


def write_sample_data(out_dir: str | os.PathLike[str], *, seed: int = 0, months: int = 3) -> dict[str, Any]:
    """Regenerate a ``sample_data`` directory: ``bundle/`` and ``planted.json`` (the manifest).

    The ledger itself is not kept: the bundle is what is committed (it verifies offline and loads
    without the library writing anything), and a ledger is a minute away with :func:`generate`.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="grantex-sample-") as tmp:
        ledger = Path(tmp) / "sample.db"
        manifest = generate(ledger, seed=seed, months=months, size="small")
        export_sample(ledger, out / BUNDLE_DIR, manifest, force=True)
    (out / PLANTED_FILE).write_text(json.dumps(manifest, indent=2) + "\n")
    return manifest


def summary_lines(manifest: dict[str, Any], path: str) -> list[str]:
    """What ``grantex-local demo --size`` prints after building a sample."""
    c = manifest["counts"]
    lines = [
        f"Sample written to {path} (seed {manifest['seed']}, {manifest['months']} months, "
        f"{manifest['period']['start']} to {manifest['period']['end']}).",
        f"{c['auditEntries']:,} audit entries ({c['actions']:,} agent actions); {c['agents']} agents for "
        f"{c['principals']} principals; {c['grants']:,} grants ({c['rootGrants']:,} roots, delegated up to "
        f"depth {c['maxDelegationDepth']}; " + ", ".join(f"{v:,} {k}" for k, v in c["grantStatuses"].items())
        + f"); {c['checkpoints']} checkpoints.",
        "Planted problems the compliance checks must find:",
    ]
    for name, p in manifest["planted"].items():
        also = [c for c in p["foundBy"] if int(c) != p["check"]]
        cited = f" (also cited by check{'s' if len(also) > 1 else ''} {', '.join(also)})" if also else ""
        lines.append(f"  check {p['check']:>2} {name}: seqs {', '.join(map(str, p['seqs'][:6]))}"
                     + (" ..." if len(p["seqs"]) > 6 else "") + cited)
    return lines
