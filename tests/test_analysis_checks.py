"""The auditor's checks on real ledgers: each planted problem is found by the right check with the
right seqs, and a clean ledger passes every check.

The ledgers are made with the library itself (``Grantex`` on a ``Ledger`` with a movable clock),
so every problem is one the library lets happen (it records what agents did, even under a revoked
or expired grant). What the library refuses to write (an orphan grant reference, a seq gap, an
action before its grant was issued) is planted by editing a loaded Dataset instead.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd
import pytest
from helpers import MovableClock

from grantex_local import Grantex, Ledger, PolicyDenied
from grantex_local.analysis import (
    CHECKS,
    Dataset,
    check_after_revocation,
    check_grant_hygiene,
    check_grant_window,
    check_integrity,
    check_provenance,
    check_retention,
    detect_anomalies,
    findings,
    load,
    oversight_evidence,
    revocation_latency,
    run_all,
    write_findings,
)
from grantex_local.developers import create_developer, set_sandbox

MONDAY_9AM = datetime(2026, 3, 2, 9, 0, tzinfo=UTC).timestamp()
PAY = "payments:initiate:max_500"
CAL = "calendar:read"


@dataclass
class Story:
    """A ledger built step by step, remembering the seqs of what was planted."""

    path: Path
    clock: MovableClock
    gx: Grantex
    seqs: dict[str, int] = field(default_factory=dict)
    many: dict[str, list[int]] = field(default_factory=dict)
    ids: dict[str, str] = field(default_factory=dict)

    def tick(self, seconds: float = 5) -> None:
        self.clock.advance(seconds)

    def act(
        self,
        who: str,
        grant: str,
        action: str = "work",
        *,
        status: str = "success",
        gx: Grantex | None = None,
        **metadata: object,
    ) -> int:
        self.tick(3)
        entry = (gx or self.gx).audit.log(
            agent_id=self.ids[who],
            grant_id=self.ids[grant],
            action=action,
            status=status,
            metadata=metadata or None,
        )
        return entry.seq

    def human_grant(
        self,
        agent: str,
        grant: str,
        scopes: list[str],
        *,
        principal: str = "user_alice",
        expires_in: str | None = None,
    ) -> str:
        """Register ``agent`` and give it a root grant a person approved; returns the grant token."""
        registered = self.gx.agents.register(name=agent, scopes=scopes)
        self.ids[agent] = registered.id
        return self.approve(agent, grant, scopes, principal=principal, expires_in=expires_in)

    def approve(
        self,
        agent: str,
        grant: str,
        scopes: list[str],
        *,
        principal: str = "user_alice",
        expires_in: str | None = None,
    ) -> str:
        self.tick()
        auth = self.gx.authorize(
            agent_id=self.ids[agent], user_id=principal, scopes=scopes, expires_in=expires_in
        )
        decision = self.gx.consent.approve(auth.request_id, decided_by="alice@example.com")
        issued = self.gx.tokens.exchange(code=decision.code, agent_id=self.ids[agent])
        self.ids[grant] = issued.grant_id
        return issued.grant_token

    def delegate(self, token: str, agent: str, grant: str, scopes: list[str]) -> str:
        self.tick()
        registered = self.gx.agents.register(name=agent, scopes=scopes)
        self.ids[agent] = registered.id
        issued = self.gx.grants.delegate(
            parent_grant_token=token, sub_agent_id=registered.id, scopes=scopes, expires_in="1h"
        )
        self.ids[grant] = issued.grant_id
        return issued.grant_token

    def last_seq(self, action: str, grant: str | None = None) -> int:
        entries = self.gx.audit.list(
            action=action, grant_id=self.ids[grant] if grant else None, page_size=10_000
        )
        return entries[-1].seq


def start(path: Path) -> Story:
    clock = MovableClock()
    clock.now = MONDAY_9AM
    gx = Grantex(Ledger(path, clock=clock))
    set_sandbox(gx.ledger, gx.developer_id, False)  # consent comes from a person, not the sandbox
    return Story(path, clock, gx)


def build_clean(path: Path) -> Story:
    """Human consent, actions within scope and amount, a delegation, a revocation nothing follows,
    a denial, all in office hours, and a checkpoint over the head."""
    s = start(path)
    token = s.human_grant("payer", "g_pay", [PAY, CAL])
    for amount in (100, 250, 500):
        s.act("payer", "g_pay", "payment", scope=PAY, amount=amount)
        s.tick(60)
    s.act("payer", "g_pay", "calendar.read", scope=CAL)
    s.delegate(token, "helper", "g_help", [CAL])
    s.act("helper", "g_help", "calendar.read", scope=CAL)
    s.act("helper", "g_help", "calendar.read", scope=CAL)
    s.tick(60)
    s.gx.grants.revoke(s.ids["g_help"])
    auth = s.gx.authorize(agent_id=s.ids["payer"], user_id="user_bob", scopes=[CAL])
    s.gx.consent.deny(auth.request_id, decided_by="bob@example.com")
    s.tick(60)
    s.act("payer", "g_pay", "payment", scope=PAY, amount=20)
    s.gx.audit.checkpoint()
    return s


def build_dirty(path: Path) -> Story:
    """One ledger with every problem the library lets happen, each seq remembered."""
    s = start(path)
    gx = s.gx
    gx.ledger.set_setting("max_expires_in", "7d")
    gx.policies.create(name="no mallory", effect="deny", principal_id="user_mallory")
    token = s.human_grant("payer", "g_pay", [PAY, CAL])
    s.seqs["ok_payment"] = s.act("payer", "g_pay", "payment", scope=PAY, amount=100)
    s.seqs["scope_outside"] = s.act("payer", "g_pay", "email.send", scope="email:send")
    s.seqs["amount_over"] = s.act("payer", "g_pay", "payment", scope=PAY, amount=900)
    s.seqs["blocked"] = s.act("payer", "g_pay", "payment", status="blocked", scope=PAY, amount=5000)
    with pytest.raises(PolicyDenied):
        gx.authorize(agent_id=s.ids["payer"], user_id="user_mallory", scopes=[CAL])
    auth = gx.authorize(agent_id=s.ids["payer"], user_id="user_bob", scopes=[CAL])
    gx.consent.deny(auth.request_id, decided_by="bob@example.com")
    s.seqs["human_denial"] = s.last_seq("grantex.consent.denied")
    gx.audit.checkpoint()
    s.seqs["checkpoint_size"] = s.last_seq("grantex.consent.denied")

    # a delegation chain two deep, then the middle revoked by a person
    help_token = s.delegate(token, "helper", "g_help", [CAL])
    s.delegate(help_token, "sub", "g_sub", [CAL])
    s.seqs["depth_two"] = s.last_seq("grantex.grant.delegated", "g_sub")
    s.act("helper", "g_help", "calendar.read", scope=CAL)
    s.act("sub", "g_sub", "calendar.read", scope=CAL)
    s.tick(60)
    gx.grants.revoke(s.ids["g_help"])
    s.seqs["revoked_help"] = s.last_seq("grantex.grant.revoked", "g_help")
    s.seqs["revoked_sub"] = s.last_seq("grantex.grant.revoked", "g_sub")
    s.tick(2)  # 3 more in act: 5 s after the revocation
    s.seqs["in_cache_window"] = s.act("helper", "g_help", "calendar.read", scope=CAL)
    s.tick(112)  # 120 s after
    s.seqs["after_ancestor"] = s.act("sub", "g_sub", "calendar.read", scope=CAL)
    s.tick(177)  # 300 s after
    s.seqs["after_revocation"] = s.act("helper", "g_help", "calendar.read", scope=CAL)
    s.seqs["blocked_after"] = s.act("helper", "g_help", "calendar.read", status="blocked", scope=CAL)

    # a short grant used after it expired; a grant never used; one that lives a week
    s.human_grant("shorty", "g_short", [CAL], expires_in="1h")
    s.tick(1800)
    s.act("shorty", "g_short", "calendar.read", scope=CAL)
    s.tick(3600)
    s.seqs["after_expiry"] = s.act("shorty", "g_short", "calendar.read", scope=CAL)
    s.human_grant("idle", "g_idle", [CAL])
    s.seqs["idle_issued"] = s.last_seq("grantex.grant.issued", "g_idle")
    s.human_grant("weekly", "g_week", [CAL], expires_in="7d")
    s.seqs["week_issued"] = s.last_seq("grantex.grant.issued", "g_week")
    s.act("weekly", "g_week", "calendar.read", scope=CAL)

    # a habit, then a new principal and a new scope
    s.human_grant("multi", "g_multi_alice", [CAL, "files:read"])
    for _ in range(20):
        s.tick(120)
        s.act("multi", "g_multi_alice", "calendar.read", scope=CAL)
    s.seqs["new_scope"] = s.act("multi", "g_multi_alice", "files.read", scope="files:read")
    s.approve("multi", "g_multi_bob", [CAL], principal="user_bob")
    s.seqs["new_principal"] = s.act("multi", "g_multi_bob", "calendar.read", scope=CAL)

    # a burst at three in the morning, answered by a person suspending the agent
    s.clock.now = datetime(2026, 3, 3, 3, 0, tzinfo=UTC).timestamp()
    s.human_grant("night", "g_night", [CAL])
    burst = []
    for _ in range(40):
        burst.append(s.act("night", "g_night", "calendar.read", scope=CAL))
        s.tick(-2)  # one action a second
    s.many["burst"] = burst
    s.tick(600)
    gx.agents.suspend(s.ids["night"])
    s.seqs["suspended"] = s.last_seq("grantex.agent.suspended")

    # another developer, in sandbox mode: its grants carry no one's consent
    s.clock.now = datetime(2026, 3, 3, 10, 0, tzinfo=UTC).timestamp()
    dev = create_developer(gx.ledger, "sandbox team", sandbox=True)
    sandbox = Grantex(gx.ledger, developer_id=dev.id)
    agent = sandbox.agents.register(name="sandy", scopes=[CAL])
    auth = sandbox.authorize(agent_id=agent.id, user_id="user_carol", scopes=[CAL])
    issued = sandbox.tokens.exchange(code=auth.code, agent_id=agent.id)
    s.ids.update(sandy=agent.id, g_sandy=issued.grant_id, dev_sandbox=dev.id, dev_main=gx.developer_id)
    s.seqs["sandbox_action"] = s.act("sandy", "g_sandy", "calendar.read", gx=sandbox, scope=CAL)
    return s


@pytest.fixture(scope="module")
def dirty(tmp_path_factory: pytest.TempPathFactory) -> tuple[Story, Dataset]:
    story = build_dirty(tmp_path_factory.mktemp("dirty") / "dirty.db")
    return story, load(story.path)


@pytest.fixture(scope="module")
def clean(tmp_path_factory: pytest.TempPathFactory) -> tuple[Story, Dataset]:
    story = build_clean(tmp_path_factory.mktemp("clean") / "clean.db")
    return story, load(story.path)


def cited(result: pd.DataFrame, problem: str | None = None, column: str = "problem") -> set[int]:
    rows = result if problem is None else result.loc[result[column] == problem]
    return {int(s) for s in rows["seq"].dropna()}


# ── a clean ledger ───────────────────────────────────────────────────────────


def test_clean_ledger_passes_every_check(clean: tuple[Story, Dataset]) -> None:
    story, ds = clean
    results = run_all(ds, review_end=pd.Timestamp(story.clock.now, unit="s", tz="UTC"))
    failed = {r.id: (r.summary, r.evidence.head()) for r in results if not r.passed}
    assert not failed
    assert [r.id for r in results] == list(range(1, 13))
    assert all(r.evidence.empty for r in results if r.id not in (6, 9))  # 6 and 9 also list what went well
    assert results[5].metrics["max_seconds"] == 0.0
    assert results[8].metrics["human_revocations"] == 1 and results[8].metrics["human_denials"] == 1
    assert results[1].metrics["actions_by_consent"] == {"human": 7}


def test_every_check_names_its_clauses(clean: tuple[Story, Dataset]) -> None:
    _, ds = clean
    results = run_all(ds)
    for result in results:
        assert result.clauses == CHECKS[result.id][1]
        assert any(c.startswith(("EU AI Act", "SOC 2")) for c in result.clauses)
    served = {clause for r in results for clause in r.clauses}
    assert {"EU AI Act Art. 12", "EU AI Act Art. 14", "EU AI Act Art. 19"} <= served
    assert any(c.startswith("SOC 2 CC6") for c in served) and any(c.startswith("SOC 2 CC7") for c in served)


# ── planted problems, each found by its check with its seqs ──────────────────


def test_integrity_reports_the_head_not_covered_by_a_checkpoint(dirty: tuple[Story, Dataset]) -> None:
    story, ds = dirty
    result = check_integrity(ds)
    assert not result.passed and ds.integrity.valid
    rows = result.evidence.set_index("developer_id")
    assert rows.loc[story.ids["dev_main"], "seq"] == story.seqs["checkpoint_size"] + 1
    assert rows.loc[story.ids["dev_sandbox"], "seq"] == 1  # that chain has no checkpoint at all
    assert set(result.evidence["problem"]) == {"head_not_checkpointed"}


def test_scope_outside_the_grant_and_amount_over_max_n(dirty: tuple[Story, Dataset]) -> None:
    from grantex_local.analysis import check_scope

    story, ds = dirty
    result = check_scope(ds)
    assert not result.passed
    assert cited(result.evidence, "scope_not_granted") == {story.seqs["scope_outside"]}
    over = result.evidence.loc[result.evidence["problem"] == "amount_over_limit"]
    assert cited(over) == {story.seqs["amount_over"]}
    assert over["limit"].tolist() == [500.0] and over["amount"].tolist() == [900.0]
    assert story.seqs["blocked"] not in cited(result.evidence)  # refused, so not held against the grant


def test_actions_after_revocation_of_the_grant_and_of_an_ancestor(dirty: tuple[Story, Dataset]) -> None:
    story, ds = dirty
    strict = check_after_revocation(ds)
    assert not strict.passed
    assert cited(strict.evidence, "action_after_revocation") == {
        story.seqs["in_cache_window"],
        story.seqs["after_revocation"],
    }
    assert cited(strict.evidence, "action_after_ancestor_revocation") == {story.seqs["after_ancestor"]}
    ancestor = strict.evidence.loc[strict.evidence["seq"] == story.seqs["after_ancestor"]].iloc[0]
    assert ancestor["revoked_by"] == story.ids["g_help"]
    assert ancestor["revocation_seq"] == story.seqs["revoked_help"]
    assert strict.metrics["blocked_after_revocation"] == 1

    cached = check_after_revocation(ds, cache_window="30s")
    assert cited(cached.evidence, "inside_cache_window") == {story.seqs["in_cache_window"]}
    failing = cached.evidence.loc[~cached.evidence["within_cache_window"]]
    assert cited(failing) == {story.seqs["after_ancestor"], story.seqs["after_revocation"]}
    assert not cached.passed


def test_revocation_missing_from_the_log_falls_back_to_the_grant(dirty: tuple[Story, Dataset]) -> None:
    """A grant revoked in the grants table with no revocation entry: said so, and judged by time."""
    story, ds = dirty
    audit = ds.audit.loc[
        ~((ds.audit["action"] == "grantex.grant.revoked") & (ds.audit["grant_id"] == story.ids["g_help"]))
    ]
    result = check_after_revocation(dataclasses.replace(ds, audit=audit))
    missing = result.evidence.loc[result.evidence["problem"] == "revocation_not_logged"]
    assert missing["grant_id"].tolist() == [story.ids["g_help"]] and missing["seq"].isna().all()
    late = cited(result.evidence, "action_after_revocation")
    assert late == {
        story.seqs["in_cache_window"],
        story.seqs["after_revocation"],
        story.seqs["after_ancestor"],
    }


def test_revocation_latency(dirty: tuple[Story, Dataset]) -> None:
    story, ds = dirty
    result = revocation_latency(ds, cache_window="30s")
    by_grant = result.evidence.set_index("grant_id")
    assert by_grant.loc[story.ids["g_help"], "latency_seconds"] == pytest.approx(300)
    assert by_grant.loc[story.ids["g_help"], "seq"] == story.seqs["after_revocation"]
    assert by_grant.loc[story.ids["g_sub"], "latency_seconds"] == pytest.approx(120)
    assert by_grant.loc[story.ids["g_sub"], "seq"] == story.seqs["after_ancestor"]
    assert result.metrics["max_seconds"] == pytest.approx(300)
    assert result.metrics["p50_seconds"] == pytest.approx(210)
    assert not result.passed


def test_grant_window_finds_expiry_and_revocation(dirty: tuple[Story, Dataset]) -> None:
    story, ds = dirty
    result = check_grant_window(ds, cache_window="30s")
    assert not result.passed
    assert cited(result.evidence, "after_expiry") == {story.seqs["after_expiry"]}
    late = result.evidence.loc[result.evidence["problem"] == "after_revocation"]
    assert cited(late) == {
        story.seqs["in_cache_window"],
        story.seqs["after_ancestor"],
        story.seqs["after_revocation"],
    }
    assert cited(late.loc[late["within_cache_window"]]) == {story.seqs["in_cache_window"]}


def test_action_before_its_grant_was_issued(dirty: tuple[Story, Dataset]) -> None:
    """The library cannot record it (time never goes backwards), so the grant's issue is moved."""
    story, ds = dirty
    grants = ds.grants.copy()
    moved = grants["grant_id"] == story.ids["g_pay"]
    grants.loc[moved, "issued_at"] = pd.Timestamp("2026-03-02T12:00:00Z")
    result = check_grant_window(dataclasses.replace(ds, grants=grants))
    assert story.seqs["ok_payment"] in cited(result.evidence, "before_issue")


def test_provenance_sandbox_consent_and_orphan_grants(dirty: tuple[Story, Dataset]) -> None:
    story, ds = dirty
    result = check_provenance(ds)
    assert not result.passed
    sandbox = result.evidence.loc[result.evidence["problem"] == "consent_by_sandbox"]
    assert sandbox[["developer_id", "seq"]].values.tolist() == [
        [story.ids["dev_sandbox"], story.seqs["sandbox_action"]]
    ]
    assert set(result.evidence["problem"]) == {"consent_by_sandbox"}  # every other action traces to a person

    orphaned = ds.grants.loc[ds.grants["grant_id"] != story.ids["g_pay"]]
    result = check_provenance(dataclasses.replace(ds, grants=orphaned))
    missing = result.evidence.loc[result.evidence["problem"] == "grant_missing"]
    pay_actions = ds.audit.loc[
        (ds.audit["grant_id"] == story.ids["g_pay"]) & ~ds.audit["action"].str.startswith("grantex."), "seq"
    ]
    assert cited(missing) == set(pay_actions)
    assert {story.seqs["ok_payment"], story.seqs["amount_over"]} <= cited(missing)


def test_provenance_counts_actions_per_chain_not_seq_numbers(dirty: tuple[Story, Dataset]) -> None:
    """Seqs count per developer's chain, so the same seq in two chains is two actions."""
    story, ds = dirty
    orphaned = ds.grants.loc[ds.grants["grant_id"] != story.ids["g_pay"]]
    pay = ds.audit.loc[
        (ds.audit["grant_id"] == story.ids["g_pay"]) & ~ds.audit["action"].str.startswith("grantex.")
    ]
    twin = pay.assign(developer_id="dev_twin")  # the same seqs, in a second chain
    audit = pd.concat([ds.audit, twin], ignore_index=True)
    result = check_provenance(dataclasses.replace(ds, grants=orphaned, audit=audit))
    flagged = result.evidence[["developer_id", "seq"]].drop_duplicates()
    assert len(flagged) >= 2 * len(pay) > 0
    assert result.summary.startswith(f"{len(flagged)} of ")


def test_delegation_rules(dirty: tuple[Story, Dataset]) -> None:
    """The library refuses to delegate wider, longer or deeper, so the grants are edited."""
    from grantex_local.analysis import check_delegation

    story, ds = dirty
    assert check_delegation(ds).passed
    grants = ds.grants.copy().set_index("grant_id")
    grants.at[story.ids["g_help"], "scopes"] = [CAL, "email:send"]
    grants.at[story.ids["g_help"], "expires_at"] += pd.Timedelta(days=2)
    grants = grants.reset_index()
    result = check_delegation(dataclasses.replace(ds, grants=grants, settings={"max_delegation_depth": 1}))
    assert not result.passed
    helper_seq = story.last_seq("grantex.grant.delegated", "g_help")
    assert cited(result.evidence, "scopes_not_covered") == {helper_seq}
    assert cited(result.evidence, "expires_after_parent") == {helper_seq}
    assert cited(result.evidence, "depth_over_limit") == {story.seqs["depth_two"]}


def test_grant_hygiene(dirty: tuple[Story, Dataset]) -> None:
    story, ds = dirty
    day_six = pd.Timestamp(MONDAY_9AM, unit="s", tz="UTC") + pd.Timedelta(days=6)
    result = check_grant_hygiene(ds, max_ttl="24h", unused_days=5, as_of=day_six)
    assert not result.passed
    assert cited(result.evidence, "ttl_over_max") == {story.seqs["week_issued"]}
    assert cited(result.evidence, "never_used") == {story.seqs["idle_issued"]}
    assert cited(result.evidence, "unused_for_days") == {story.seqs["week_issued"]}
    lenient = check_grant_hygiene(ds, max_ttl="7d", unused_days=30, as_of=day_six)
    assert set(lenient.evidence["problem"]) == {"never_used"}


def test_anomalies_of_the_five_types(dirty: tuple[Story, Dataset]) -> None:
    story, ds = dirty
    result = detect_anomalies(ds)
    assert not result.passed
    ev = result.evidence
    burst = set(story.many["burst"])
    assert cited(ev, "high_frequency", "type") == burst
    assert set(ev.loc[ev["type"] == "high_frequency", "severity"]) == {"medium"}  # 40 in a minute, limit 30
    off = ev.loc[ev["type"] == "off_hours_activity"]
    assert cited(off) == burst and set(off["severity"]) == {"medium"}
    unusual = ev.loc[ev["type"] == "unusual_scope_access"].set_index("seq")["severity"].to_dict()
    assert unusual == {story.seqs["scope_outside"]: "high", story.seqs["new_scope"]: "medium"}
    assert cited(ev, "new_principal", "type") == {story.seqs["new_principal"]}
    cascade = ev.loc[ev["type"] == "cascade_delegation"]
    assert cited(cascade) == {story.seqs["depth_two"]} and cascade["severity"].tolist() == ["medium"]
    assert result.metrics["by_type"]["high_frequency"] == 40

    quiet = detect_anomalies(ds, high_frequency_per_minute=100, off_hours=(0, 1))
    assert "high_frequency" not in set(quiet.evidence["type"])
    assert "off_hours_activity" not in set(quiet.evidence["type"])


def test_oversight_evidence(dirty: tuple[Story, Dataset]) -> None:
    story, ds = dirty
    result = oversight_evidence(ds)
    ev = result.evidence
    assert result.metrics["human_revocations"] == 1 and result.metrics["cascade_revocations"] == 1
    assert result.metrics["human_denials"] == 1 and result.metrics["policy_denials"] == 1
    assert result.metrics["agent_suspensions"] == 1
    assert cited(ev, "blocked_action", "kind") == {story.seqs["blocked"], story.seqs["blocked_after"]}
    assert cited(ev, "human_denial", "kind") == {story.seqs["human_denial"]}
    responses = ev.loc[ev["kind"] == "anomaly_response"].set_index("seq")
    night = responses.loc[story.many["burst"][0]]
    assert night["intervention_seq"] == story.seqs["suspended"] and night["intervention"] == "agent_suspended"
    assert night["response_seconds"] == pytest.approx(39 - 2 + 600)  # first of the burst to suspension
    cascade = responses.loc[story.seqs["depth_two"]]
    assert cascade["intervention_seq"] == story.seqs["revoked_sub"]
    assert responses.loc[story.seqs["scope_outside"], "intervention"] == "human_denial"
    unanswered = ev.loc[ev["kind"] == "anomaly_unanswered"]
    assert cited(unanswered) == {story.seqs["new_scope"]}  # nobody looked at the multi agent's new scope
    assert result.passed  # every high-severity anomaly was followed by a person's intervention
    assert not oversight_evidence(ds, answer_at_least="medium").passed


def test_retention_gap_and_missing_head(dirty: tuple[Story, Dataset]) -> None:
    story, ds = dirty
    assert check_retention(ds).passed
    main = ds.audit["developer_id"] == story.ids["dev_main"]
    gone = main & ds.audit["seq"].isin([1, 2, 10, 11, 12])
    result = check_retention(dataclasses.replace(ds, audit=ds.audit.loc[~gone]))
    assert not result.passed
    assert cited(result.evidence, "head_missing") == {3}
    assert cited(result.evidence, "seq_gap") == {10}
    assert (
        result.evidence.loc[result.evidence["problem"] == "seq_gap", "detail"].item().startswith("seq 10..12")
    )
    late = check_retention(ds, review_start="2026-01-01", review_end="2027-01-01")
    assert set(late.evidence["problem"]) == {"period_end_not_covered"}  # read before the period ended


def test_findings_json(dirty: tuple[Story, Dataset], tmp_path: Path) -> None:
    story, ds = dirty
    results = run_all(ds, cache_window="30s")
    data = write_findings(results, tmp_path)
    on_disk = json.loads((tmp_path / "findings.json").read_text())
    assert on_disk["checks"] == data["checks"]
    assert data["passed"] is False and data["source"] == {"kind": "ledger", "path": str(story.path)}
    by_id = {c["id"]: c for c in data["checks"]}
    assert set(by_id) == set(range(1, 13))
    assert story.seqs["after_ancestor"] in by_id[5]["citedSeqs"]
    assert by_id[5]["passed"] is False and by_id[10]["passed"] is True
    assert by_id[6]["metrics"]["max_seconds"] == pytest.approx(300)
    assert data["clauses"]["EU AI Act Art. 14"]["checks"] == [2, 5, 6, 9, 11]
    assert findings(results)["checks"][0]["clauses"] == list(CHECKS[1][1])
