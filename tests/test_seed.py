"""Seed files: YAML and JSON load through the library's own flows, all or nothing; the ``seed``
command; ``serve --ephemeral --seed`` as a real process whose directory is gone after it stops."""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from cli_helpers import fails, invoke, ok
from helpers import dump

from grantex_local import Ledger, agents, authorization, developers, errors, grants, policies, tokens
from grantex_local.seed import apply_seed

ROOT = Path(__file__).resolve().parent.parent

SEED_YAML = """\
developers:
  - name: acme
    sandbox: false
agents:
  - name: travel-booker
    developer: default
    scopes: [flights:book, hotels:search, read]
    description: Books trips
  - name: flight-finder
    scopes: [flights:book, read]
  - name: mailer
    developer: acme
    scopes: [email:read, email:delete]
policies:
  - name: never delete mail
    effect: deny
    developer: acme
    scopes: [email:delete]
grants:
  - name: alice-trip
    agent: travel-booker
    principal: user_alice
    scopes: [flights:book, read]
    expires_in: 24h
  - name: alice-flights
    parent: alice-trip
    agent: flight-finder
    scopes: [flights:book]
  - name: bob-mail
    agent: mailer
    principal: user_bob
    scopes: [email:read]
"""


def seed_document() -> dict[str, Any]:
    import yaml

    document: dict[str, Any] = yaml.safe_load(SEED_YAML)
    return document


@pytest.fixture
def ledger_path(tmp_path: Path) -> Path:
    path = tmp_path / "grantex.db"
    Ledger(path).close()
    return path


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def check_seeded(ledger: Ledger, result: Any) -> None:
    assert set(result.agents) == {"travel-booker", "flight-finder", "mailer"}
    assert set(result.grants) == {"alice-trip", "alice-flights", "bob-mail"}
    acme = developers.get_developer(ledger, result.developers["acme"])
    assert acme.name == "acme" and not acme.sandbox
    mailer = agents.get(ledger, None, result.agents["mailer"])
    assert mailer.developer_id == acme.id
    # every token verifies, offline and online, and says what the file said
    trip = ledger.verify_offline(result.token("alice-trip"))
    assert trip.principal_id == "user_alice" and set(trip.scopes) == {"flights:book", "read"}
    flights = ledger.verify_offline(result.token("alice-flights"))
    assert flights.principal_id == "user_alice" and list(flights.scopes) == ["flights:book"]
    assert flights.agent_did == "did:grantex:" + result.agents["flight-finder"]
    online = tokens.verify_online(ledger, result.token("bob-mail"), acme.id)
    assert online.valid, online
    # delegation: the child grant hangs under the parent
    child = grants.get(ledger, None, result.grants["alice-flights"].grant_id)
    assert child.parent_grant_id == result.grants["alice-trip"].grant_id
    assert child.delegation_depth == 1
    # bob's grant (a non-sandbox developer) was approved by the seed file, and says so
    request = [r for r in authorization.list_requests(ledger, acme.id, status=None)
               if r.principal_id == "user_bob"]
    assert len(request) == 1
    row = ledger.query_one("SELECT decided_by, decision_channel FROM auth_requests WHERE id = ?",
                           (request[0].request_id,))
    assert row is not None and tuple(row) == ("seed file", "seed")


def test_yaml_seed_loads_everything(tmp_path: Path, ledger_path: Path) -> None:
    seed_file = write(tmp_path, "seed.yaml", SEED_YAML)
    with Ledger(ledger_path, create=False) as ledger:
        result = apply_seed(ledger, seed_file)
        check_seeded(ledger, result)


def test_json_seed_loads_the_same(tmp_path: Path, ledger_path: Path) -> None:
    seed_file = write(tmp_path, "seed.json", json.dumps(seed_document()))
    with Ledger(ledger_path, create=False) as ledger:
        check_seeded(ledger, apply_seed(ledger, seed_file))


def test_a_mapping_seeds_too(ledger_path: Path) -> None:
    with Ledger(ledger_path, create=False) as ledger:
        check_seeded(ledger, apply_seed(ledger, seed_document()))


def test_policies_are_applied_and_authorize_obeys_them(ledger_path: Path) -> None:
    with Ledger(ledger_path, create=False) as ledger:
        result = apply_seed(ledger, seed_document())
        acme = result.developers["acme"]
        assert [p.name for p in policies.list_policies(ledger, acme)] == ["never delete mail"]
        with pytest.raises(errors.PolicyDenied):
            authorization.authorize(ledger, acme, agent_id=result.agents["mailer"],
                                    principal_id="user_carol", scopes=["email:delete"])


def test_a_grant_the_policy_denies_fails_the_whole_file(ledger_path: Path) -> None:
    document = seed_document()
    document["grants"].append({"name": "carol-delete", "agent": "mailer", "principal": "user_carol",
                               "scopes": ["email:delete"]})
    before = dump(ledger_path)
    with Ledger(ledger_path, create=False) as ledger, pytest.raises(errors.InvalidInput) as caught:
        apply_seed(ledger, document)
    assert caught.value.message.startswith("grants[3]: ")
    assert "never delete mail" in caught.value.message
    assert dump(ledger_path) == before


def test_references_to_what_the_ledger_already_holds(ledger_path: Path) -> None:
    with Ledger(ledger_path, create=False) as ledger:
        apply_seed(ledger, {"agents": [{"name": "old-agent", "scopes": ["read"]}]})
        result = apply_seed(ledger, {"grants": [
            {"name": "g", "agent": "old-agent", "principal": "user_dan", "scopes": ["read"]}]})
        assert ledger.verify_offline(result.token("g")).principal_id == "user_dan"


BAD_FILES = [
    ("unknown key", "agents:\n  - name: a\n    scopes: [read]\n    colour: red\n",
     "agents[0].colour: unknown key"),
    ("unknown section", "robots: []\n", "robots: unknown section"),
    ("bad reference", SEED_YAML + "  - name: orphan\n    parent: x\n    agent: flight-finder\n"
     "    scopes: [read]\n", "grants[3].parent: no grant named 'x'"),
    ("unknown agent", SEED_YAML.replace("agent: mailer", "agent: nobody"),
     "grants[2].agent: no agent named 'nobody'"),
    ("unknown developer", SEED_YAML.replace("developer: acme\n    scopes: [email:delete]",
                                            "developer: zeta\n    scopes: [email:delete]"),
     "policies[0].developer: no developer named 'zeta'"),
    ("bad scope", SEED_YAML.replace("[flights:book, hotels:search, read]", "[flights:book, 'bad scope!']"),
     "agents[0].scopes: "),
    ("scope beyond the agent's", SEED_YAML.replace("scopes: [email:read]\n", "scopes: [calendar:read]\n"),
     "grants[2]: "),
    ("delegation beyond the parent", SEED_YAML.replace("agent: flight-finder\n    scopes: [flights:book]",
                                                       "agent: flight-finder\n    scopes: [flights:book, "
                                                       "hotels:search]"),
     "grants[1]"),
    ("bad expiry", SEED_YAML.replace("expires_in: 24h", "expires_in: soon"), "grants[0].expires_in: "),
    ("missing principal", SEED_YAML.replace("    principal: user_bob\n", ""),
     "grants[2].principal: required"),
    ("duplicate name", SEED_YAML.replace("name: flight-finder", "name: travel-booker"),
     "agents[1].name: 'travel-booker' is named twice"),
    ("malformed YAML", "agents:\n  - name: [unclosed\n", "malformed YAML at line"),
    ("a key given twice", "agents:\n  - name: a\n    name: b\n    scopes: []\n", "key 'name' is given twice"),
    ("not a mapping", "- just\n- a list\n", "a seed file is a mapping"),
]


@pytest.mark.parametrize(("text", "expected"), [(t, e) for _, t, e in BAD_FILES],
                         ids=[name for name, _, _ in BAD_FILES])
def test_a_bad_file_names_the_place_and_writes_nothing(tmp_path: Path, ledger_path: Path,
                                                        text: str, expected: str) -> None:
    seed_file = write(tmp_path, "seed.yaml", text)
    before = dump(ledger_path)
    with Ledger(ledger_path, create=False) as ledger, pytest.raises(errors.InvalidInput) as caught:
        apply_seed(ledger, seed_file)
    assert expected in caught.value.message
    assert dump(ledger_path) == before


def test_malformed_json_and_unknown_extensions(tmp_path: Path, ledger_path: Path) -> None:
    with Ledger(ledger_path, create=False) as ledger:
        with pytest.raises(errors.InvalidInput, match="malformed JSON at line 1"):
            apply_seed(ledger, write(tmp_path, "seed.json", "{agents: ["))
        with pytest.raises(errors.InvalidInput, match=r"\.yaml, \.yml or \.json"):
            apply_seed(ledger, write(tmp_path, "seed.toml", "x = 1"))
        with pytest.raises(errors.InvalidInput, match="no seed file at"):
            apply_seed(ledger, tmp_path / "missing.yaml")


def test_the_example_seed_file_loads(ledger_path: Path) -> None:
    with Ledger(ledger_path, create=False) as ledger:
        result = apply_seed(ledger, ROOT / "examples" / "seed.yaml")
        for name in result.grants:
            ledger.verify_offline(result.token(name))


# ── the CLI ──────────────────────────────────────────────────────────────────


def test_cli_seed(tmp_path: Path, ledger_path: Path) -> None:
    seed_file = write(tmp_path, "seed.yaml", SEED_YAML)
    out = ok("seed", seed_file, "--ledger", ledger_path, "--json").stdout
    data = json.loads(out)
    assert set(data["grants"]) == {"alice-trip", "alice-flights", "bob-mail"}
    with Ledger(ledger_path, create=False) as ledger:
        flights = ledger.verify_offline(data["grants"]["alice-flights"]["grantToken"])
        assert flights.principal_id == "user_alice"
    text = ok("seed", seed_file, "--ledger", ledger_path).stdout
    assert "travel-booker" in text and "alice-flights" in text and "eyJ" not in text
    token = ok("seed", seed_file, "--ledger", ledger_path, "--get", "grants.bob-mail.grantToken").stdout
    assert token.startswith("eyJ")


def test_cli_seed_failures_are_one_line_and_write_nothing(tmp_path: Path, ledger_path: Path) -> None:
    bad = write(tmp_path, "seed.yaml", SEED_YAML.replace("agent: mailer", "agent: nobody"))
    before = dump(ledger_path)
    result = fails(2, "seed", bad, "--ledger", ledger_path)
    assert "grants[2].agent: no agent named 'nobody'" in result.stderr
    assert dump(ledger_path) == before
    fails(2, "seed", write(tmp_path, "broken.yaml", "agents: [\n"), "--ledger", ledger_path)
    missing = tmp_path / "new.db"
    fails(2, "seed", write(tmp_path, "ok.yaml", SEED_YAML), "--ledger", missing)
    assert not missing.exists()
    ok("seed", tmp_path / "ok.yaml", "--ledger", missing, "--create")
    assert missing.exists()


def test_serve_seed_needs_ephemeral_and_ephemeral_refuses_a_ledger(tmp_path: Path, ledger_path: Path) -> None:
    seed_file = write(tmp_path, "seed.yaml", SEED_YAML)
    fails(2, "serve", "--seed", seed_file, "--ledger", ledger_path)
    fails(2, "serve", "--ephemeral", "--ledger", ledger_path)
    result = invoke("serve", "--ephemeral", "--seed", tmp_path / "missing.yaml", "--port", "0")
    assert result.exit_code == 2 and "no seed file at" in result.stderr


# ── serve --ephemeral as a real process ──────────────────────────────────────


def start_ephemeral(*args: str) -> tuple[subprocess.Popen[str], list[str]]:
    proc = subprocess.Popen(
        [sys.executable, "-c", "from grantex_local.cli import main; main()", "serve", "--quiet",
         "--ephemeral", "--port", "0", *args],
        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        env={**os.environ, "GRANTEX_LEDGER": "/nonexistent/never-used.db"})
    lines: queue.Queue[str] = queue.Queue()
    assert proc.stdout is not None
    stdout = proc.stdout
    threading.Thread(target=lambda: [lines.put(line.rstrip("\n")) for line in stdout], daemon=True).start()
    banner: list[str] = []
    deadline = time.monotonic() + 60
    while not banner or not banner[-1].startswith("Press Ctrl+C"):
        if time.monotonic() > deadline or proc.poll() is not None:
            proc.kill()
            raise AssertionError(banner)
        try:
            banner.append(lines.get(timeout=0.5))
        except queue.Empty:
            continue
    return proc, banner


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def test_serve_ephemeral_seed_real_process(tmp_path: Path, sig: int) -> None:
    seed_file = write(tmp_path, "seed.yaml", SEED_YAML)
    proc, banner = start_ephemeral("--seed", str(seed_file))
    try:
        text = "\n".join(banner)
        assert "ephemeral" in text
        base = next(line for line in banner if line.startswith("grantex-local server on")).split(" on ", 1)[1]
        ledger_file = Path(next(line for line in banner if line.strip().startswith("ledger")).split()[1])
        directory = ledger_file.parent
        assert directory.is_dir() and (directory.stat().st_mode & 0o777) == 0o700
        assert f"issuer   {base}" in text  # the issuer is where it listens, so the SDK can use it
        with Ledger(ledger_file, create=False) as ledger:
            key = developers.create_api_key(ledger, developers.default_developer(ledger).id).key
        for _ in range(200):  # the banner precedes uvicorn's startup by a moment
            try:
                httpx.get(base + "/health", timeout=1)
                break
            except httpx.TransportError:
                time.sleep(0.05)
        answer = httpx.get(base + "/v1/agents", headers={"Authorization": f"Bearer {key}"}, timeout=10)
        assert answer.status_code == 200, answer.text
        names = {a["name"] for a in answer.json()["agents"]}
        assert {"travel-booker", "flight-finder"} <= names
        proc.send_signal(sig)
        assert proc.wait(30) == 0
        assert not directory.exists()
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(10)


def test_serve_ephemeral_with_a_bad_seed_fails_and_leaves_nothing(tmp_path: Path) -> None:
    temp = tmp_path / "temp"
    temp.mkdir()
    bad = write(tmp_path, "seed.yaml", SEED_YAML.replace("agent: mailer", "agent: nobody"))
    proc = subprocess.run(
        [sys.executable, "-c", "from grantex_local.cli import main; main()", "serve", "--quiet",
         "--ephemeral", "--port", "0", "--seed", str(bad)],
        stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=60,
        env={**os.environ, "TMPDIR": str(temp)})
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == ["error: grants[2].agent: no agent named 'nobody'"]
    assert list(temp.iterdir()) == []
