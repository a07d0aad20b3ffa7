"""The pytest plugin (issue 19), run the way users run it: inner test files through ``pytester``.

The plugin arrives through its ``pytest11`` entry point (no ``-p`` here), so these tests also
check that the package registers it.
"""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from grantex_local import Ledger
from grantex_local.server.testing import running_server

pytest_plugins = ["pytester"]


def _run(pytester: pytest.Pytester, source: str, *args: str) -> pytest.RunResult:
    pytester.makepyfile(test_inner=source)
    return pytester.runpytest_subprocess("-p", "no:cacheprovider", *args)


ISOLATION = """
from grantex_local import grants

def test_a_makes_a_grant(grantex_ledger, grantex_grant):
    grantex_grant(["calendar:read"])
    assert len(grants.list_grants(grantex_ledger.ledger, grantex_ledger.gx.developer_id)) == 1

def test_b_sees_none(grantex_ledger):
    assert grants.list_grants(grantex_ledger.ledger, grantex_ledger.gx.developer_id) == []

def test_ledgers_differ_in_identity(grantex_ledger):
    other = grantex_ledger()
    assert other.path != grantex_ledger.path
    assert other.ledger.setting("ledger_id") != grantex_ledger.ledger.setting("ledger_id")

def test_session_server_is_reset_1(grantex_session_server):
    import httpx
    r = httpx.post(grantex_session_server.base_url + "/v1/agents", json={"name": "a", "scopes": ["x:y"]},
                   headers={"Authorization": "Bearer " + grantex_session_server.api_key})
    assert r.status_code in (200, 201), r.text

def test_session_server_is_reset_2(grantex_session_server):
    import httpx
    r = httpx.get(grantex_session_server.base_url + "/v1/agents",
                  headers={"Authorization": "Bearer " + grantex_session_server.api_key})
    assert r.status_code == 200 and r.json()["agents"] == [], r.text
"""


def test_fixtures_isolate_tests(pytester: pytest.Pytester) -> None:
    result = _run(pytester, ISOLATION)
    result.assert_outcomes(passed=5)


def test_fresh_keys_option_founds_each_ledger(pytester: pytest.Pytester) -> None:
    result = _run(pytester, ISOLATION, "--grantex-fresh-keys")
    result.assert_outcomes(passed=5)


CLOCK = """
import httpx, pytest
from grantex_local.errors import GrantexLocalError

def test_token_expires_in_library(grantex_ledger, grantex_grant, grantex_clock):
    token = grantex_grant(["calendar:read"], expires_in="1h")
    assert grantex_ledger.gx.tokens.verify_offline(token.grant_token)
    grantex_clock.advance(3600 + 120)  # past the expiry and the leeway
    with pytest.raises(GrantexLocalError):
        grantex_ledger.gx.tokens.verify_offline(token.grant_token)

def test_token_expires_over_http(grantex_server, grantex_grant, grantex_clock):
    token = grantex_grant(["calendar:read"], expires_in="1h")
    def verify():
        r = httpx.post(grantex_server.base_url + "/v1/tokens/verify", json={"token": token.grant_token},
                       headers={"Authorization": "Bearer " + grantex_server.api_key})
        assert r.status_code == 200, r.text
        return r.json()
    assert verify()["valid"] is True
    grantex_clock.advance(3600 + 120)  # past the expiry and the leeway
    answer = verify()
    assert answer["valid"] is False, answer

def test_clock_starts_at_real_time(grantex_clock):
    import time
    assert abs(grantex_clock.now() - time.time()) < 60
"""


def test_clock_expires_tokens_without_sleeping(pytester: pytest.Pytester) -> None:
    result = _run(pytester, CLOCK)
    result.assert_outcomes(passed=3)


TAMPER = """
import sqlite3

def test_tampers(grantex_ledger, grantex_grant):
    grantex_grant(["calendar:read"])
    conn = sqlite3.connect(grantex_ledger.path)
    conn.execute("DROP TRIGGER audit_entries_no_update")
    conn.execute("UPDATE audit_entries SET preimage = replace(preimage, 'calendar', 'kalendar')")
    conn.commit()
    conn.close()

def test_untouched(grantex_ledger, grantex_grant):
    grantex_grant(["calendar:read"])
"""


def test_a_tampered_chain_fails_the_test(pytester: pytest.Pytester) -> None:
    result = _run(pytester, TAMPER)
    result.assert_outcomes(passed=1, failed=1)  # failed, not errored at teardown
    result.stdout.fnmatch_lines(["*test_tampers*", "*audit chain broken at seq *"])


ASSERTIONS = """
def test_logged(grantex_ledger, grantex_grant):
    token = grantex_grant(["calendar:read"])
    grantex_ledger.gx.audit.log(agent_id=token.agent_id if hasattr(token, "agent_id") else
                                grantex_ledger.gx.grants.get(token.grant_id).agent_id,
                                grant_id=token.grant_id, action="calendar.read")
    grantex_ledger.audit.assert_logged(action="calendar.read", grant=token, status="success")
    grantex_ledger.audit.assert_no_action_after_revocation()

def test_not_logged(grantex_ledger, grantex_grant):
    token = grantex_grant(["calendar:read"])
    grantex_ledger.audit.assert_logged(action="calendar.write", grant=token.grant_id)

def test_after_revocation(grantex_ledger, grantex_grant):
    token = grantex_grant(["calendar:read"])
    agent_id = grantex_ledger.gx.grants.get(token.grant_id).agent_id
    grantex_ledger.gx.grants.revoke(token.grant_id)
    grantex_ledger.gx.audit.log(agent_id=agent_id, grant_id=token.grant_id, action="calendar.read")
    grantex_ledger.audit.assert_no_action_after_revocation()
"""


def test_audit_assertions_show_the_nearest_entries(pytester: pytest.Pytester) -> None:
    result = _run(pytester, ASSERTIONS)
    result.assert_outcomes(passed=1, failed=2)
    result.stdout.fnmatch_lines(["*no audit entry with action='calendar.write', grant_id=*; nearest:*",
                                 "*seq * action='grantex.*' grant=grnt_*"])
    result.stdout.fnmatch_lines(["*1 audit entry recorded after the grant was revoked*",
                                 "*action='calendar.read'*flags=after_revocation*"])


SDK = """
def test_sdk_against_the_server(grantex_sdk, grantex_server):
    agent = grantex_sdk.agents.register(name="sdk-agent", scopes=["calendar:read"], description="")
    assert agent.id
    grantex_server.ledger.audit.assert_logged(action="grantex.agent.registered", agent=agent.id)
"""


def test_sdk_fixture_talks_to_the_server(pytester: pytest.Pytester) -> None:
    result = _run(pytester, SDK)
    result.assert_outcomes(passed=1)


SEED = """
from grantex_local import grants

SEED = {"agents": [{"name": "booker", "scopes": ["flights:book"]}],
        "grants": [{"name": "trip", "agent": "booker", "principal": "user_alice",
                    "scopes": ["flights:book"]}]}

def test_seeded(grantex_ledger):
    seeded = grantex_ledger(seed=SEED)
    assert len(grants.list_grants(seeded.ledger, seeded.gx.developer_id)) == 1
    assert grants.list_grants(grantex_ledger.ledger, grantex_ledger.gx.developer_id) == []
    seeded.audit.assert_logged(action="grantex.agent.registered")

def test_delegated_grant(grantex_ledger, grantex_grant):
    root = grantex_grant(["flights:book", "hotels:search"], principal="user_bob")
    child = grantex_grant(["flights:book"], parent=root, agent_name="sub-agent")
    grant = grantex_ledger.gx.grants.get(child.grant_id)
    assert grant.parent_grant_id == root.grant_id and grant.principal_id == "user_bob"
"""


def test_a_seeded_ledger_is_another_ledger(pytester: pytest.Pytester) -> None:
    result = _run(pytester, SEED)
    result.assert_outcomes(passed=2)


def test_xdist_with_two_workers(pytester: pytest.Pytester) -> None:
    result = _run(pytester, ISOLATION + CLOCK, "-n", "2")
    result.assert_outcomes(passed=8)


def test_reset_route_only_in_test_mode(tmp_path: Path) -> None:
    path = tmp_path / "grantex.db"
    from grantex_local import developers

    with Ledger(path) as ledger:
        key = developers.create_api_key(ledger, developers.default_developer(ledger).id, "t").key
    headers = {"Authorization": "Bearer " + key}
    with running_server(path) as server:
        assert httpx.post(server.base_url + "/v1/testing/reset", headers=headers).status_code == 404
    with running_server(path, test_mode=True) as server:
        made = httpx.post(server.base_url + "/v1/agents", json={"name": "a", "scopes": ["x:y"]},
                          headers=headers)
        assert made.status_code in (200, 201), made.text
        assert httpx.get(server.base_url + "/v1/agents", headers=headers).json()["agents"]
        assert httpx.post(server.base_url + "/v1/testing/reset", headers=headers).status_code == 204
        assert httpx.get(server.base_url + "/v1/agents", headers=headers).json()["agents"] == []
