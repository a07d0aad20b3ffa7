"""The demo ledger: every state it promises is really in the file, and a seed repeats it."""

from __future__ import annotations

import json
import re
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from grantex_local import Ledger, agents, authorization, developers, errors, grants, policies, tokens
from grantex_local.cli import cli
from grantex_local.clock import parse_iso
from grantex_local.demo import choose_cast, run_demo


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[str]]:
    path = tmp_path_factory.mktemp("demo") / "demo.db"
    return path, run_demo(path, seed=7)


def structure(path: Path) -> dict[str, Any]:
    """Everything the seed fixes, with ids replaced by agent names."""
    with Ledger(path, create=False) as ledger:
        all_agents = agents.list_agents(ledger, None, include_deleted=True)
        names = {a.id: a.name for a in all_agents}
        by_id = {g.id: g for g in grants.list_grants(ledger, None)}
        devs = {d.id: d.name for d in developers.list_developers(ledger)}
        return {
            "agents": sorted((a.name, a.status, devs[a.developer_id], a.scopes) for a in all_agents),
            "grants": sorted(
                (names[g.agent_id], g.principal_id, g.scopes, g.delegation_depth, g.status,
                 names[by_id[g.parent_grant_id].agent_id] if g.parent_grant_id else None)
                for g in by_id.values()),
            "requests": sorted((names[r.agent_id], r.principal_id, r.scopes, r.status)
                               for r in authorization.list_requests(ledger, None, status=None)),
            "policies": sorted(
                (p.name, p.effect, p.priority, p.scopes, names.get(p.agent_id or ""), p.principal_id)
                for d in devs for p in policies.list_policies(ledger, d)),
        }


def test_demo_has_every_state(demo: tuple[Path, list[str]]) -> None:
    path, _ = demo
    with Ledger(path, create=False) as ledger:
        every = grants.list_grants(ledger, None)
        by_id = {g.id: g for g in every}
        status = Counter(g.status for g in every)
        assert status["active"] and status["revoked"] and status["expired"]

        depth_two = [g for g in every if g.delegation_depth == 2]
        assert {g.status for g in depth_two} == {"active", "revoked"}

        revoked = [g for g in every if g.status == "revoked"]
        top = [g for g in revoked if by_id[g.parent_grant_id].status != "revoked"]  # the subtree's root
        assert len(top) == 1 and top[0].delegation_depth == 1
        assert {g.revoked_at for g in revoked} == {top[0].revoked_at}  # one revocation, one instant
        assert len(revoked) == 2

        pending = authorization.list_requests(ledger, None)
        assert len(pending) == 1
        # long enough to try after the demo (a real request waits 10 minutes)
        assert parse_iso(pending[0].expires_at) - ledger.now() > 6 * 86400
        partner = developers.get_developer(ledger, pending[0].developer_id)
        assert (partner.name, partner.sandbox) == ("acme-labs", False)

        suspended = agents.list_agents(ledger, None, status="suspended")
        assert [a.name for a in suspended] == ["inbox-triage"]
        assert any(g.agent_id == suspended[0].id for g in every)

        default = developers.default_developer(ledger).id
        assert {p.effect for p in policies.list_policies(ledger, default)} == {"allow", "deny"}
        denied = authorization.list_requests(ledger, None, status="denied")
        assert [r.scopes for r in denied] == [("email:read", "email:delete")]


def test_demo_walkthrough_uses_the_real_path_and_a_live_token(demo: tuple[Path, list[str]]) -> None:
    path, lines = demo
    text = "\n".join(lines)
    assert str(path) in lines[0]
    assert re.search(r"\d+ grants \(\d+ active, 2 revoked, 2 expired; delegated up to depth 2\)", text)
    for command in ("grants tree", "consent list", "tokens verify", "grants revoke", "info"):
        assert f"grantex-local --ledger {path} {command}" in text
    token = next(line.split()[-1] for line in lines if " tokens verify " in line)
    with Ledger(path, create=False) as ledger:
        answer = tokens.verify_online(ledger, token)
    assert answer.valid and answer.grant_id in text


def test_a_seed_repeats_the_structure(tmp_path: Path, demo: tuple[Path, list[str]]) -> None:
    run_demo(tmp_path / "again.db", seed=7)
    assert structure(tmp_path / "again.db") == structure(demo[0])


def test_seeds_change_the_cast() -> None:
    assert len({choose_cast(seed) for seed in range(20)}) > 1
    assert choose_cast(3) == choose_cast(3)


def test_demo_refuses_an_existing_ledger_unless_forced(tmp_path: Path) -> None:
    path = tmp_path / "d.db"
    run_demo(path, seed=1)
    before = path.read_bytes()
    with pytest.raises(errors.InvalidInput, match="--force"):
        run_demo(path, seed=1)
    assert path.read_bytes() == before
    Path(f"{path}-shm").write_bytes(b"stale")
    run_demo(path, seed=2, force=True)
    assert not Path(f"{path}-shm").exists()
    assert structure(path) != {}


def test_force_never_deletes_a_file_that_is_not_a_ledger(tmp_path: Path) -> None:
    precious = tmp_path / "thesis.txt"
    precious.write_text("years of work\n" * 100)
    with pytest.raises(errors.NotALedger):
        run_demo(precious, force=True)
    assert precious.read_text().startswith("years of work")


def test_demo_command_then_grants_tree(tmp_path: Path) -> None:
    path = tmp_path / "cli-demo.db"
    runner = CliRunner()
    made = runner.invoke(cli, ["--ledger", str(path), "demo", "--seed", "4"])
    assert made.exit_code == 0, made.output
    assert "Try next:" in made.stdout
    tree = runner.invoke(cli, ["grants", "tree", "--ledger", str(path)])
    assert tree.exit_code == 0, tree.output
    for expected in ("travel-booker [active]", "[expired]", "citation-checker [revoked]", "depth 2",
                     "(agent suspended)", "`-- "):
        assert expected in tree.stdout
    roots = json.loads(runner.invoke(cli, ["--ledger", str(path), "grants", "tree", "--json"]).stdout)
    assert len(roots) == 5  # two trips (one expired), two research trees, the inbox

    again = runner.invoke(cli, ["--ledger", str(path), "demo"])
    assert again.exit_code == 2 and again.stderr.startswith("error: ") and "--force" in again.stderr
    assert runner.invoke(cli, ["--ledger", str(path), "demo", "--force"]).exit_code == 0
