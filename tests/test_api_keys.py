"""API keys can be listed (never their secrets) and revoked, and a revoked key stops at once.

Revocation is only worth something if the server notices it without a restart: the server
looks every request's key up in the file, so a key revoked by another process (the CLI here)
is refused from the very next request. That is tested over real HTTP on loopback.
"""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest
from cli_helpers import fails, ok, ok_json

from grantex_local import Grantex, InvalidState, Ledger, NotFound, developers
from grantex_local.audit import trail
from grantex_local.server.testing import running_server


@pytest.fixture
def path(tmp_path: Path) -> Path:
    path = tmp_path / "ledger.db"
    ok("--ledger", path, "init")
    return path


def test_listing_shows_ids_prefixes_and_dates_never_the_secret(path: Path) -> None:
    with Ledger(path, create=False) as ledger:
        default = developers.default_developer(ledger).id
        partner = developers.create_developer(ledger, "acme").id
        ci = developers.create_api_key(ledger, default, "ci")
        other = developers.create_api_key(ledger, partner)
        assert [k.id for k in developers.list_api_keys(ledger, default)] == [ci.id]
        assert [k.id for k in developers.list_api_keys(ledger)] == [ci.id, other.id]
        listed = developers.list_api_keys(ledger, partner)[0]
        assert (listed.prefix, listed.revoked_at, listed.name) == (other.prefix, None, "")
        with pytest.raises(NotFound):
            developers.list_api_keys(ledger, "dev_nope")
    shown = ok_json("--ledger", path, "developers", "list-keys")["keys"]
    assert [(k["id"], k["developerId"], k["name"], k["revoked"]) for k in shown] == [
        (ci.id, default, "ci", False), (other.id, partner, "", False)]
    text = ok("--ledger", path, "developers", "list-keys", "--developer", partner).stdout
    assert other.id in text and other.prefix in text and ci.id not in text
    everything = json.dumps(shown) + text + ok("--ledger", path, "developers", "list-keys").stdout
    for secret in (ci.key, other.key):
        assert secret not in everything and secret[8:] not in everything


def test_revoking_is_recorded_once_and_refused_twice(path: Path) -> None:
    with Ledger(path, create=False) as ledger:
        dev = developers.default_developer(ledger).id
        key = developers.create_api_key(ledger, dev, "laptop")
        revoked = developers.revoke_api_key(ledger, key.id)
        assert revoked.revoked and revoked.revoked_at == developers.list_api_keys(ledger, dev)[0].revoked_at
        with pytest.raises(NotFound):
            developers.developer_for_api_key(ledger, key.key)
        with pytest.raises(InvalidState, match="already revoked"):
            developers.revoke_api_key(ledger, key.id)
        with pytest.raises(NotFound):
            developers.revoke_api_key(ledger, "key_01ZZZZZZZZZZZZZZZZZZZZZZZZ")
        events = trail.list_entries(ledger, dev, action="grantex.api_key.revoked")
        assert [e.metadata for e in events] == [{"keyId": key.id, "name": "laptop"}]
        assert key.key not in json.dumps([e.to_dict() for e in trail.list_entries(ledger, dev)])
    assert "already revoked" in fails(2, "--ledger", path, "developers", "revoke-key", key.id).stderr
    assert "not found" in fails(2, "--ledger", path, "developers", "revoke-key", "key_nope").stderr
    with Grantex(path, create=False) as gx:
        gx.audit.verify()


def test_a_key_revoked_with_the_cli_is_refused_by_the_running_server_at_once(path: Path) -> None:
    key = ok_json("--ledger", path, "developers", "create-key", "--name", "agent-box")
    spare = ok_json("--ledger", path, "developers", "create-key")
    with running_server(path) as server, httpx.Client(base_url=server.base_url, timeout=10) as http:
        def agents(secret: str) -> httpx.Response:
            return http.get("/v1/agents", headers={"Authorization": f"Bearer {secret}"})

        assert agents(key["key"]).status_code == 200
        said = ok("--ledger", path, "developers", "revoke-key", key["id"]).stdout
        assert key["id"] in said and "revoked" in said
        refused = agents(key["key"])  # the very next request
        assert refused.status_code == 401
        assert refused.json()["code"] == "UNAUTHORIZED" and "revoked" in refused.json()["message"]
        assert agents(spare["key"]).status_code == 200  # the developer's other keys still work
    listed = {k["id"]: k for k in ok_json("--ledger", path, "developers", "list-keys")["keys"]}
    assert listed[key["id"]]["revoked"] and not listed[spare["id"]]["revoked"]
