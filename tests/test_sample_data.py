"""The sample data generator and the committed sample bundle (issue 5, part B).

Why these tests: the notebooks and the compliance checks are judged on this data, so it must
be what it claims. The generator must be deterministic (the planted seqs are test fixtures),
the committed bundle must verify and be exactly what the generator makes today, every planted
problem must really be there, and everything else must be clean, which is checked here with
the library's own rules (scope coverage, grant windows), independently of the analysis package.
Once ``grantex_local.analysis`` exists, each planted problem must be found by the right check
with exactly the planted seqs, on the bundle and on a ledger file, while every other check passes.
"""

from __future__ import annotations

import json
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from grantex_local import InvalidInput, Ledger
from grantex_local.audit.trail import count_entries
from grantex_local.export import verify_bundle
from grantex_local.sample import (
    MAX_PER_AGENT_MINUTE,
    WEEKDAY_HOURS,
    generate,
    write_sample_data,
)
from grantex_local.scopes import covers, parse_scope

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "sample_data"
BUNDLE = SAMPLE / "bundle"
PLANTED = json.loads((SAMPLE / "planted.json").read_text())
PLANTED_CHECKS = {"after_revocation": 5, "off_hours_burst": 11, "scope_outside_grant": 3}
MAX_BUNDLE_BYTES = 6_000_000


def jsonl(name: str) -> list[dict[str, Any]]:
    with open(BUNDLE / f"{name}.jsonl", encoding="utf-8") as handle:
        return [json.loads(line) for line in handle]


def stamp(text: str) -> datetime:
    return datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)


def chain_facts(path: Path) -> list[tuple[Any, ...]]:
    """What a seed must reproduce of every entry (hashes are not: agent key thumbprints are random)."""
    with Ledger(path, create=False) as ledger:
        rows = ledger.query("SELECT seq, id, agent_id, grant_id, action, status, timestamp "
                            "FROM audit_entries ORDER BY seq")
    return [tuple(r) for r in rows]


@pytest.fixture(scope="module")
def fresh(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    """A ledger generated now with the committed sample's settings."""
    path = tmp_path_factory.mktemp("sample") / "sample.db"
    manifest = generate(path, seed=PLANTED["seed"], months=PLANTED["months"], size=PLANTED["size"])
    return path, manifest


# ── the generator ────────────────────────────────────────────────────────────


def test_same_seed_same_data(tmp_path: Path, fresh: tuple[Path, dict[str, Any]]) -> None:
    """Names, principals, trees, statuses, counts, ids and planted seqs all repeat for a seed."""
    path, manifest = fresh
    again = generate(tmp_path / "again.db", seed=PLANTED["seed"])
    assert again == manifest
    assert chain_facts(tmp_path / "again.db") == chain_facts(path)


def test_another_seed_other_data_same_guarantees(tmp_path: Path, fresh: tuple[Path, dict[str, Any]]) -> None:
    other = generate(tmp_path / "other.db", seed=7)
    assert other["principals"] != fresh[1]["principals"] or other["planted"] != fresh[1]["planted"]
    assert other["counts"]["auditEntries"] == 2_000
    assert {name: p["check"] for name, p in other["planted"].items()} == PLANTED_CHECKS


def test_what_the_sample_contains(fresh: tuple[Path, dict[str, Any]]) -> None:
    """The issue's list: several principals, dozens of agents, depth 3, thousands of entries,
    revocations, expired grants, denials by policy and by a person, failures, checkpoints."""
    _, manifest = fresh
    c = manifest["counts"]
    assert c["auditEntries"] == 2_000 and c["actions"] > 1_000
    assert c["principals"] >= 5 and c["agents"] >= 24
    assert c["maxDelegationDepth"] == 3
    assert c["grantStatuses"]["revoked"] >= 10 and c["grantStatuses"]["expired"] >= 1
    assert c["grantStatuses"]["active"] >= 1
    assert c["authRequests"]["denied"] >= 2 and c["agentsSuspended"] == 1
    assert c["actionStatuses"]["failure"] > 0 and c["actionStatuses"]["blocked"] > 0
    assert c["checkpoints"] >= 12
    assert manifest["period"]["start"] < manifest["period"]["end"]


def test_large_size_batches_and_hits_the_exact_count(tmp_path: Path) -> None:
    """``size="large"`` logs a batch per minute with ``log_many``; the total is still exact."""
    manifest = generate(tmp_path / "large.db", size="large", entries=8_000, months=2, seed=3)
    assert manifest["counts"]["auditEntries"] == 8_000
    with Ledger(tmp_path / "large.db", create=False) as ledger:
        assert count_entries(ledger) == 8_000
        shared = ledger.query_one(
            "SELECT max(n) FROM (SELECT count(*) AS n FROM audit_entries WHERE action NOT LIKE 'grantex.%' "
            "GROUP BY timestamp)")
    assert shared is not None and shared[0] > 1, "actions of one minute share one append"
    assert {name: p["check"] for name, p in manifest["planted"].items()} == PLANTED_CHECKS


def test_bad_arguments(tmp_path: Path) -> None:
    with pytest.raises(InvalidInput, match="size"):
        generate(tmp_path / "a.db", size="huge")
    with pytest.raises(InvalidInput, match="entries"):
        generate(tmp_path / "a.db", entries=10)
    with pytest.raises(InvalidInput, match="months"):
        generate(tmp_path / "a.db", months=0)
    (tmp_path / "taken.db").write_text("not a ledger")
    with pytest.raises(InvalidInput, match="already exists"):
        generate(tmp_path / "taken.db")


def test_cli_demo_size_builds_the_sample(tmp_path: Path) -> None:
    """``grantex-local demo --size`` (once wired into the CLI) prints the planted seqs."""
    from click.testing import CliRunner

    from grantex_local.cli import cli

    if not any("--size" in p.opts for p in cli.commands["demo"].params):
        pytest.skip("demo --size is not wired into the CLI yet")
    path = tmp_path / "s.db"
    result = CliRunner().invoke(cli, ["--ledger", str(path), "demo", "--size", "large", "--entries", "5000",
                                      "--months", "1"])
    assert result.exit_code == 0, result.output
    assert "5,000 audit entries" in result.output and "check  5 after_revocation" in result.output
    with Ledger(path, create=False) as ledger:
        assert count_entries(ledger) == 5_000


# ── the committed bundle ─────────────────────────────────────────────────────


def test_committed_bundle_verifies_and_is_small() -> None:
    summary = verify_bundle(BUNDLE)
    assert summary["valid"] and summary["entries"] == PLANTED["counts"]["auditEntries"]
    size = sum(p.stat().st_size for p in BUNDLE.iterdir())
    assert size < MAX_BUNDLE_BYTES, f"the committed bundle is {size:,} bytes"


def test_committed_bundle_is_what_the_generator_makes(fresh: tuple[Path, dict[str, Any]]) -> None:
    """A stale bundle (the generator changed, the data was not regenerated) fails here:
    run ``python sample_data/generate.py``."""
    path, manifest = fresh
    assert manifest == PLANTED
    committed = [(e["seq"], e["entryId"], e["agentId"], e["grantId"], e["action"], e["status"],
                  e["timestamp"]) for e in jsonl("audit_entries")]
    assert committed == chain_facts(path)
    rows = json.loads((BUNDLE / "manifest.json").read_text())["files"]
    assert rows["grants.jsonl"]["rows"] == manifest["counts"]["grants"]
    assert rows["agents.jsonl"]["rows"] == manifest["counts"]["agents"]
    assert rows["checkpoints.jsonl"]["rows"] == manifest["counts"]["checkpoints"]


def test_write_sample_data_regenerates_the_directory(tmp_path: Path) -> None:
    manifest = write_sample_data(tmp_path)
    assert json.loads((tmp_path / "planted.json").read_text()) == manifest == PLANTED
    assert verify_bundle(tmp_path / "bundle")["entries"] == 2_000


# ── planted problems are there, and nothing else is wrong ────────────────────


def _grants() -> dict[str, dict[str, Any]]:
    return {g["grantId"]: g for g in jsonl("grants")}


def _revocations(entries: list[dict[str, Any]]) -> dict[str, int]:
    return {e["grantId"]: e["seq"] for e in entries if e["action"] == "grantex.grant.revoked"}


def _outside_grant(entry: dict[str, Any], grant: dict[str, Any]) -> bool:
    used = entry["metadata"].get("scope")
    held = [parse_scope(s) for s in grant["scopes"]]
    if used is None or not any(covers(h, parse_scope(used)) for h in held):
        return True
    amount = entry["metadata"].get("amount")
    caps = [h.max_amount for h in held if h.max_amount is not None and covers(h, parse_scope(used))]
    return amount is not None and bool(caps) and amount > max(caps)


def test_planted_problems_are_where_the_manifest_says() -> None:
    entries = {e["seq"]: e for e in jsonl("audit_entries")}
    grants = _grants()
    revoked_at_seq = _revocations(list(entries.values()))
    planted = PLANTED["planted"]
    assert {name: p["check"] for name, p in planted.items()} == PLANTED_CHECKS
    for name, p in planted.items():
        assert [entries[s]["entryId"] for s in p["seqs"]] == p["entryIds"], name
    for seq in planted["after_revocation"]["seqs"]:
        entry = entries[seq]
        assert revoked_at_seq[entry["grantId"]] < seq
        assert stamp(entry["timestamp"]) < stamp(grants[entry["grantId"]]["expiresAt"]), "not merely expired"
    burst = [stamp(entries[s]["timestamp"]) for s in planted["off_hours_burst"]["seqs"]]
    assert len(burst) == 40 and all(t.hour == 3 for t in burst)
    assert (max(burst) - min(burst)).total_seconds() < 60
    assert len({entries[s]["agentId"] for s in planted["off_hours_burst"]["seqs"]}) == 1
    for seq in planted["scope_outside_grant"]["seqs"]:
        assert _outside_grant(entries[seq], grants[entries[seq]["grantId"]])


def test_everything_else_is_clean() -> None:
    """No other action breaks a rule the checks apply, so only the planted problems fail."""
    entries = jsonl("audit_entries")
    grants = _grants()
    revoked_at_seq = _revocations(entries)
    suspended = {e["agentId"]: e["seq"] for e in entries if e["action"] == "grantex.agent.suspended"}
    planted = {s for p in PLANTED["planted"].values() for s in p["seqs"]}
    per_minute: Counter[tuple[str, str]] = Counter()
    actions = [e for e in entries if not e["action"].startswith("grantex.") and e["seq"] not in planted]
    assert len(actions) == PLANTED["counts"]["actions"] - len(planted)
    for e in actions:
        grant, at = grants[e["grantId"]], stamp(e["timestamp"])
        assert not _outside_grant(e, grant), e
        assert stamp(grant["issuedAt"]) <= at < stamp(grant["expiresAt"]), e
        assert e["grantId"] not in revoked_at_seq or e["seq"] < revoked_at_seq[e["grantId"]], e
        assert e["agentId"] not in suspended or e["seq"] < suspended[e["agentId"]], e
        assert WEEKDAY_HOURS[0] <= at.hour < WEEKDAY_HOURS[1], e
        per_minute[(e["agentId"], e["timestamp"][:16])] += 1
    assert max(per_minute.values()) <= MAX_PER_AGENT_MINUTE
    lifecycle = [e for e in entries if e["action"].startswith("grantex.")]
    assert all(6 <= stamp(e["timestamp"]).hour < 22 for e in lifecycle)


# ── the analysis package finds exactly the planted problems ─────────────────


def _run_checks(source: Path) -> dict[int, Any]:
    pytest.importorskip("grantex_local.analysis.checks")
    from grantex_local.analysis import load
    from grantex_local.analysis.checks import run_all

    review = dict(PLANTED["reviewParameters"], off_hours=tuple(PLANTED["reviewParameters"]["off_hours"]))
    results = run_all(load(source, as_of=PLANTED["period"]["end"]), **review)
    assert sorted(r.id for r in results) == list(range(1, 13))
    return {r.id: r for r in results}


def _cited(result: Any) -> list[int]:
    """The seqs a failing check holds against the log: for anomalies, those of medium severity or
    above (low ones, such as an agent's first action for a new principal, are noted, not failed)."""
    evidence = result.evidence
    if "severity" in evidence.columns:
        evidence = evidence.loc[evidence["severity"].isin(("medium", "high", "critical"))]
    return sorted({int(s) for s in evidence["seq"].dropna()})


def _assert_only_planted_fail(results: dict[int, Any]) -> None:
    """Each planted problem fails its check and the checks whose definition covers it too (the
    manifest's ``foundBy``: an action after revocation is also outside the grant's lifetime (4) and
    a revocation that did not take effect (6); a scope outside the grant is also an anomaly (11)),
    citing exactly the planted seqs; every other check passes."""
    expected: dict[int, list[int]] = {}
    for p in PLANTED["planted"].values():
        for check, seqs in p["foundBy"].items():
            expected.setdefault(int(check), []).extend(seqs)
    assert {p["check"] for p in PLANTED["planted"].values()} <= set(expected)
    for check_id, result in results.items():
        if check_id in expected:
            assert not result.passed, f"check {check_id} ({result.name}) missed its planted problem"
            assert _cited(result) == sorted(expected[check_id]), f"check {check_id} ({result.name})"
        else:
            assert result.passed, f"check {check_id} ({result.name}) failed on clean data: {result.summary}"
def test_checks_find_exactly_the_planted_problems_in_the_bundle() -> None:
    _assert_only_planted_fail(_run_checks(BUNDLE))


def test_checks_find_exactly_the_planted_problems_in_a_ledger_file(
        fresh: tuple[Path, dict[str, Any]]) -> None:
    path, _ = fresh
    _assert_only_planted_fail(_run_checks(path))
