"""A realistic demo ledger, built only through the library's public API.

Why: a new user (and the TUI, the server and the notebooks) needs a ledger
that shows every state the protocol has: delegation two levels deep, a revoked
subtree, an expired grant, policies, a consent request waiting for a human, a
suspended agent. Building it through the same calls an application makes
(the ``Grantex`` facade) keeps the demo honest, since it cannot create a state
the library would refuse, and makes it a worked example of the API.

The seed fixes the structure (names, principals, scopes, tree shapes,
statuses); ids, keys and tokens are random on every run.
"""

from __future__ import annotations

import contextlib
import os
import random
import shlex
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from . import agents, authorization, developers, errors, grants
from .client import Grantex
from .clock import system_clock
from .founding import Ledger
from .models import Agent, ExchangeTokenResponse
from .progress import Progress, Tally

DAY = 86400
PRINCIPALS = ("user_alice", "user_bob", "user_carol")
TRAVEL = ("com.example.travel:search", "com.example.travel:book")
SEARCH = "com.example.search:query"

# name -> (description, the scopes it is registered for); all belong to the default developer.
AGENTS: dict[str, tuple[str, list[str]]] = {
    "travel-booker": ("Plans and books trips end to end",
                      ["calendar:read", *TRAVEL, "payments:initiate"]),
    "flight-finder": ("Searches and books flights for the travel booker", [*TRAVEL, "payments:initiate"]),
    "hotel-scout": ("Searches and books hotels for the travel booker", [*TRAVEL, "payments:initiate"]),
    "research-assistant": ("Answers research questions from your files and the web",
                           ["files:read", SEARCH, "email:send"]),
    "web-searcher": ("Runs web searches for the research assistant", [SEARCH]),
    "citation-checker": ("Checks the sources the web searcher found", [SEARCH]),
    "summariser": ("Summarises documents for the research assistant", ["files:read"]),
    "inbox-triage": ("Sorts and answers routine email", ["email:read", "email:send", "email:delete"]),
}
PARTNER = "acme-labs"
PARTNER_AGENT = ("acme-scheduler", "Schedules meetings with Acme Labs' customers",
                 ["calendar:read", "calendar:write"])


@dataclass(frozen=True)
class Cast:
    """What the seed decides: who plays which role, budgets, and one optional scope."""

    traveller: str
    researcher: str
    second_researcher: str
    lapsed_traveller: str
    inbox_owner: str
    partner_customer: str
    trip_budget: int
    flight_budget: int
    research_reports_by_email: bool

    @property
    def hotel_budget(self) -> int:
        return self.trip_budget - self.flight_budget


def choose_cast(seed: int) -> Cast:
    rng = random.Random(seed)
    people = list(PRINCIPALS)
    rng.shuffle(people)
    budget = rng.choice((3000, 5000, 8000))
    return Cast(
        traveller=people[0], researcher=people[1], second_researcher=people[2],
        lapsed_traveller=rng.choice(PRINCIPALS), inbox_owner=rng.choice(PRINCIPALS),
        partner_customer=rng.choice(PRINCIPALS), trip_budget=budget,
        flight_budget=budget * rng.choice((50, 60, 70)) // 100,
        research_reports_by_email=rng.random() < 0.5,
    )


def remove_ledger_files(path: str | os.PathLike[str]) -> None:
    """Delete a ledger and the -wal/-shm files SQLite keeps beside it."""
    for suffix in ("", "-wal", "-shm"):
        Path(f"{os.fspath(path)}{suffix}").unlink(missing_ok=True)


def _make_room(target: Path, force: bool) -> None:
    if not target.exists():
        return
    if not force:
        raise errors.InvalidInput(f"{target} already exists; pass --force to replace it with a demo ledger")
    if not target.is_file():
        raise errors.InvalidInput(f"{target} is not a file; refusing to replace it")
    if target.stat().st_size:
        Ledger(target, create=False).close()  # raises NotALedger: never delete someone else's file
    remove_ledger_files(target)


# ── the flows, as an application would run them ──────────────────────────────


def _grant(gx: Grantex, agent: Agent, principal: str, scopes: list[str],
           expires_in: str = "24h") -> ExchangeTokenResponse:
    request = gx.authorize(agent_id=agent.id, user_id=principal, scopes=scopes, expires_in=expires_in)
    if request.code is None:
        raise errors.InvalidState(f"demo expected an approved request, got {request.status}")
    return gx.tokens.exchange(code=request.code, agent_id=agent.id)


def _delegate(gx: Grantex, parent: ExchangeTokenResponse, agent: Agent, scopes: list[str],
              expires_in: str = "8h") -> ExchangeTokenResponse:
    return gx.grants.delegate(parent_grant_token=parent.grant_token, sub_agent_id=agent.id,
                              scopes=scopes, expires_in=expires_in)


def _trip(gx: Grantex, roster: dict[str, Agent], cast: Cast, principal: str,
          expires_in: str) -> ExchangeTokenResponse:
    """travel-booker for ``principal``, with flight-finder under it."""
    root = _grant(gx, roster["travel-booker"], principal,
                  ["calendar:read", *TRAVEL, f"payments:initiate:max_{cast.trip_budget}"], expires_in)
    _delegate(gx, root, roster["flight-finder"],
              [*TRAVEL, f"payments:initiate:max_{cast.flight_budget}"], "1h")
    return root


def _research(gx: Grantex, roster: dict[str, Agent], cast: Cast, principal: str) -> ExchangeTokenResponse:
    """research-assistant → web-searcher → citation-checker (depth 2), and → summariser.

    Returns the web searcher's grant: the branch the demo revokes in one tree.
    """
    scopes = ["files:read", SEARCH] + (["email:send"] if cast.research_reports_by_email else [])
    root = _grant(gx, roster["research-assistant"], principal, scopes)
    searcher = _delegate(gx, root, roster["web-searcher"], [SEARCH], "2h")
    _delegate(gx, searcher, roster["citation-checker"], [SEARCH], "1h")
    _delegate(gx, root, roster["summariser"], ["files:read"], "2h")
    return searcher


def _policies(gx: Grantex, roster: dict[str, Agent], cast: Cast) -> None:
    gx.policies.create(name="Agents never delete email", effect="deny", priority=100,
                       scopes=["email:delete"])
    gx.policies.create(name=f"Inbox triage may read and answer {cast.inbox_owner}'s mail",
                       effect="allow", priority=10, agent_id=roster["inbox-triage"].id,
                       principal_id=cast.inbox_owner, scopes=["email:read", "email:send"])


def _inbox(gx: Grantex, roster: dict[str, Agent], cast: Cast) -> None:
    """An allow policy approves one request, the deny policy refuses another, then the agent is suspended."""
    triage = roster["inbox-triage"]
    _grant(gx, triage, cast.inbox_owner, ["email:read", "email:send"])
    with contextlib.suppress(errors.PolicyDenied):
        gx.authorize(agent_id=triage.id, user_id=cast.inbox_owner, scopes=["email:read", "email:delete"])
    gx.agents.suspend(triage.id)


PENDING_REQUEST_TTL = 7 * DAY
"""The demo's consent request waits a week (a real one waits 10 minutes): long enough to try."""


def _partner(ledger: Ledger, cast: Cast) -> str:
    """A non-sandbox developer whose request waits for the local human; returns the request id."""
    partner = developers.create_developer(ledger, PARTNER, sandbox=False)
    gx = Grantex(ledger, developer_id=partner.id)
    name, description, scopes = PARTNER_AGENT
    agent = gx.agents.register(name=name, description=description, scopes=scopes)
    request = authorization.authorize(ledger, partner.id, agent_id=agent.id,
                                      principal_id=cast.partner_customer, scopes=scopes,
                                      expires_in="8h", request_ttl=PENDING_REQUEST_TTL)
    return request.request_id


DEMO_STEPS = 10
"""The steps :func:`run_demo` reports to its ``progress`` callback (the ledger, then each part)."""


def run_demo(path: str | os.PathLike[str], seed: int = 0, force: bool = False,
             program: str = "grantex-local", progress: Progress | None = None) -> list[str]:
    """Build the demo ledger at ``path`` and return a short walk-through to print.

    ``program`` is how the caller's shell runs the CLI (``grantex-local``, or a path to it when
    it is not on PATH): every command the walk-through prints must run verbatim. ``progress`` is
    told each of the :data:`DEMO_STEPS` steps done (key generation makes a few of them slow).
    """
    target = Path(path)
    _make_room(target, force)
    cast = choose_cast(seed)
    real_now = system_clock()
    steps = Tally(progress, DEMO_STEPS, step=1)
    # Three days ago: the ledger and its agents are made, and a short trip
    # grant is issued that has long expired by now.
    with Ledger(target, clock=lambda: real_now - 3 * DAY) as past:
        gx = Grantex(past)
        steps.advance()
        roster = {name: gx.agents.register(name=name, description=description, scopes=scopes)
                  for name, (description, scopes) in AGENTS.items()}
        steps.advance()
        _trip(gx, roster, cast, cast.lapsed_traveller, "2h")
        steps.advance()
    with Ledger(target, create=False) as ledger:
        gx = Grantex(ledger)
        _policies(gx, roster, cast)
        steps.advance()
        trip = _trip(gx, roster, cast, cast.traveller, "24h")
        steps.advance()
        _delegate(gx, trip, roster["hotel-scout"], [*TRAVEL, f"payments:initiate:max_{cast.hotel_budget}"])
        steps.advance()
        _research(gx, roster, cast, cast.researcher)
        steps.advance()
        gx.grants.revoke(_research(gx, roster, cast, cast.second_researcher).grant_id)
        steps.advance()
        _inbox(gx, roster, cast)
        steps.advance()
        request_id = _partner(ledger, cast)
        lines = walkthrough(ledger, seed, trip, len(gx.policies.list().policies), request_id, program)
        steps.finish()
        return lines


def walkthrough(ledger: Ledger, seed: int, trip: ExchangeTokenResponse, policy_count: int,
                request_id: str, program: str = "grantex-local") -> list[str]:
    """What was made, and commands to try on it (with this ledger's real path and a real token)."""
    all_grants = grants.list_grants(ledger, None)
    status = Counter(g.status for g in all_grants)
    all_agents = agents.list_agents(ledger, None)
    suspended = sum(a.status == "suspended" for a in all_agents)
    pending = len(authorization.list_requests(ledger, None))
    depth = max(g.delegation_depth for g in all_grants)
    cmd = f"{program} --ledger {shlex.quote(ledger.path)}"
    return [
        f"Demo ledger written to {ledger.path} (seed {seed}).",
        f"Created {len(all_agents)} agents ({suspended} suspended) for "
        f"{len(developers.list_developers(ledger))} developers; {len(all_grants)} grants "
        f"({status['active']} active, {status['revoked']} revoked, {status['expired']} expired; "
        f"delegated up to depth {depth}); {policy_count} policies; {pending} pending consent request(s).",
        "",
        "Try next:",
        "  # the delegation trees, with a revoked branch and an expired trip",
        f"  {cmd} grants tree",
        f"  # {PARTNER} is not a sandbox developer: its request waits for a person (this one for",
        "  # a week; real ones for 10 minutes). See it, then approve it: the code is single-use",
        f"  {cmd} consent list",
        f"  {cmd} consent approve {request_id}",
        "  # a live token the demo minted for the travel booker",
        f"  {cmd} tokens verify {trip.grant_token}",
        "  # the blast radius of revoking that trip, then a confirmation prompt",
        f"  {cmd} grants revoke {trip.grant_id}",
        f"  {cmd} policies list",
        f"  {cmd} info",
    ]
