"""End to end: the real server on a free loopback port, driven ONLY by the official SDK.

The SDK is the PyPI package ``grantex`` pinned at 0.7.2 (the ``test`` extra). Nothing
here calls the server any other way: set-up (the ledger file and its API keys) is
what ``grantex-local init`` and ``developers create-key`` would do.
"""

from __future__ import annotations

import itertools
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import grantex
import pytest
from grantex import (
    AuthorizeParams,
    CreatePolicyParams,
    ExchangeTokenParams,
    GrantexApiError,
    GrantexAuthError,
    GrantexTokenError,
    ListAuditParams,
    ListGrantsParams,
    Permission,
    RefreshTokenParams,
    ToolManifest,
    UpdatePolicyParams,
    VerifyGrantTokenOptions,
    verify_grant_token,
)
from grantex._verify import clear_jwks_cache

from grantex_local import Ledger, developers
from grantex_local.server.testing import RunningServer, running_server

SDK_VERSION = "0.7.2"
SCOPES = ["calendar:read", "email:send", "tool:calendar:read"]


@dataclass(frozen=True)
class Setup:
    server: RunningServer
    sandbox_key: str  # the default developer: sandbox, codes straight from authorize
    live_key: str  # a non-sandbox developer: codes only from a person or a policy

    def client(self, key: str | None = None, **options: object) -> grantex.Grantex:
        return grantex.Grantex(api_key=key or self.sandbox_key, base_url=self.server.base_url,
                               max_retries=0, **options)  # type: ignore[arg-type]


@pytest.fixture
def setup(tmp_path: Path) -> Iterator[Setup]:
    path = tmp_path / "grantex.db"
    with Ledger(path) as ledger:
        sandbox_key = developers.create_api_key(ledger, developers.default_developer(ledger).id, "sdk").key
        live = developers.create_developer(ledger, "Acme Travel", sandbox=False)
        live_key = developers.create_api_key(ledger, live.id, "sdk").key
    clear_jwks_cache()
    with running_server(path) as server:
        yield Setup(server, sandbox_key, live_key)


def test_sdk_is_the_pinned_release() -> None:
    from importlib.metadata import version

    assert version("grantex") == SDK_VERSION


def test_full_flow_through_the_sdk(setup: Setup) -> None:
    gx = setup.client()
    base = setup.server.base_url

    # agents
    root = gx.agents.register(name="Travel planner", scopes=SCOPES, description="Plans trips")
    helper = gx.agents.register(name="Calendar helper", scopes=["calendar:read", "tool:calendar:read"])
    assert root.id.startswith("ag_") and root.did == f"did:grantex:{root.id}"
    assert {a.id for a in gx.agents.list().agents} >= {root.id, helper.id}
    assert gx.agents.get(root.id).name == "Travel planner"
    assert gx.agents.update(root.id, description="Plans trips, books nothing").description.endswith("nothing")
    assert gx.last_rate_limit is not None and gx.last_rate_limit.limit > 0

    # authorize: a sandbox developer gets a code at once
    auth = gx.authorize(AuthorizeParams(agent_id=root.id, user_id="user_alice", scopes=SCOPES))
    assert auth.sandbox is True and auth.code
    assert auth.consent_url == f"{base}/consent/{auth.request_id}"

    # exchange, verify online, verify offline against the server's JWKS URL
    token = gx.tokens.exchange(ExchangeTokenParams(code=auth.code, agent_id=root.id))
    assert token.grant_id.startswith("grnt_") and set(token.scopes) == set(SCOPES)
    online = gx.tokens.verify(token.grant_token)
    assert online.valid and online.grant_id == token.grant_id and online.principal == "user_alice"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # legacy-alias warnings are the SDK's business
        offline = verify_grant_token(token.grant_token, VerifyGrantTokenOptions(
            jwks_uri=f"{base}/.well-known/jwks.json", required_scopes=["calendar:read"]))
        strict = verify_grant_token(token.grant_token, VerifyGrantTokenOptions(
            jwks_uri=f"{base}/.well-known/jwks.json", legacy_claims=False))
    assert offline.grant_id == token.grant_id and offline.issuer == base
    assert strict.agent_did == root.did
    introspected = gx.grants.verify(token.grant_token)
    assert introspected.grant_id == token.grant_id and introspected.principal_id == "user_alice"

    # grants
    assert gx.grants.get(token.grant_id).status == "active"
    listed = gx.grants.list(ListGrantsParams(agent_id=root.id)).grants
    assert [g.id for g in listed] == [token.grant_id]

    # delegate
    child = gx.grants.delegate(parent_grant_token=token.grant_token, sub_agent_id=helper.id,
                               scopes=["calendar:read", "tool:calendar:read"], expires_in="1h")
    assert child["grantId"] != token.grant_id
    assert gx.tokens.verify(child["grantToken"]).valid

    # audit: each entry links to the one before it
    entries = [gx.audit.log(agent_id=root.id, agent_did=root.did, grant_id=token.grant_id,
                            principal_id="user_alice", action=f"calendar.read.{i}", metadata={"i": i})
               for i in range(3)]
    for before, after in itertools.pairwise(entries):
        assert after.prev_hash == before.hash
    page = gx.audit.list(ListAuditParams(grant_id=token.grant_id, action="calendar.read.1"))
    assert [e.entry_id for e in page.entries] == [entries[1].entry_id]
    mine = [e.entry_id for e in gx.audit.list(ListAuditParams(agent_id=root.id)).entries
            if e.action.startswith("calendar.read.")]
    assert mine == [e.entry_id for e in entries]  # oldest first
    fetched = gx.audit.get(entries[2].entry_id)
    assert fetched.hash == entries[2].hash and fetched.metadata == {"i": 2}
    checkpoint = gx.audit.checkpoint()
    assert checkpoint.entry_count >= 3 and checkpoint.signed_checkpoint.count("\n") >= 4
    assert checkpoint.head_hash == entries[2].hash and checkpoint.witness_required is False

    # refresh: same grant, a new token; the old refresh token is spent
    refreshed = gx.tokens.refresh(RefreshTokenParams(refresh_token=token.refresh_token, agent_id=root.id))
    assert refreshed.grant_id == token.grant_id and refreshed.grant_token != token.grant_token
    assert gx.tokens.verify(refreshed.grant_token).valid

    # enforce() with online revocation checks: allowed now, denied after the revocation
    enforcer = setup.client(revocation_check="online")
    enforcer.load_manifest(ToolManifest("calendar", {"list_events": Permission.READ}))
    assert enforcer.enforce(child["grantToken"], "calendar", "list_events").allowed

    # revoke the root: the delegated token is dead too, online and for enforce()
    gx.grants.revoke(token.grant_id)
    assert gx.grants.get(token.grant_id).status == "revoked"
    assert gx.grants.get(child["grantId"]).status == "revoked"
    dead = gx.tokens.verify(child["grantToken"])
    assert dead.valid is False
    with pytest.raises(GrantexTokenError):
        gx.grants.verify(child["grantToken"])
    denied = enforcer.enforce(child["grantToken"], "calendar", "list_events")
    assert denied.allowed is False and denied.reason_code == "grant_revoked"

    # the agent can still be deleted (204) and then is gone (404)
    gx.agents.delete(helper.id)
    with pytest.raises(GrantexApiError) as gone:
        gx.agents.get(helper.id)
    assert gone.value.status_code == 404


def test_allow_policy_issues_a_code_for_a_live_developer(setup: Setup) -> None:
    gx = setup.client(setup.live_key)
    agent = gx.agents.register(name="Mailer", scopes=["email:send", "calendar:read"])

    waiting = gx.authorize(AuthorizeParams(agent_id=agent.id, user_id="user_bob", scopes=["email:send"]))
    assert waiting.code is None and not waiting.sandbox and waiting.status == "pending"

    policy = gx.policies.create(CreatePolicyParams(name="mail for bob", effect="allow", agent_id=agent.id,
                                                   principal_id="user_bob", scopes=["email:send"],
                                                   priority=5))
    assert policy.effect == "allow" and gx.policies.get(policy.id).name == "mail for bob"
    assert gx.policies.list().total == 1
    approved = gx.authorize(AuthorizeParams(agent_id=agent.id, user_id="user_bob", scopes=["email:send"]))
    assert approved.policy_enforced is True and approved.effect == "allow" and approved.code
    token = gx.tokens.exchange(ExchangeTokenParams(code=approved.code, agent_id=agent.id))
    assert gx.tokens.verify(token.grant_token).valid

    gx.policies.update(policy.id, UpdatePolicyParams(effect="deny"))
    with pytest.raises(GrantexAuthError) as refused:  # 403 is an auth error to the SDK
        gx.authorize(AuthorizeParams(agent_id=agent.id, user_id="user_bob", scopes=["email:send"]))
    assert refused.value.status_code == 403 and refused.value.code == "POLICY_DENIED"
    gx.policies.delete(policy.id)
    assert gx.policies.list().total == 0

    # one developer cannot see another's objects
    with pytest.raises(GrantexApiError) as other:
        setup.client().agents.get(agent.id)
    assert other.value.status_code == 404


def test_errors_are_the_sdks_typed_errors(setup: Setup) -> None:
    with pytest.raises(GrantexAuthError) as unauthorized:
        setup.client("gxl_not-a-real-key").agents.list()
    assert unauthorized.value.status_code == 401 and unauthorized.value.code == "UNAUTHORIZED"
    assert unauthorized.value.request_id and unauthorized.value.request_id.startswith("req_")

    gx = setup.client()
    with pytest.raises(GrantexApiError) as missing:
        gx.agents.get("ag_01J0000000000000000000000")
    assert missing.value.status_code == 404 and missing.value.code == "NOT_FOUND"
    assert not isinstance(missing.value, GrantexAuthError)

    agent = gx.agents.register(name="a", scopes=["calendar:read"])
    with pytest.raises(GrantexApiError) as bad_code:
        gx.tokens.exchange(ExchangeTokenParams(code="not-a-code", agent_id=agent.id))
    assert bad_code.value.status_code == 400 and bad_code.value.code == "INVALID_CODE"
    with pytest.raises(GrantexApiError) as bad_scope:
        gx.authorize(AuthorizeParams(agent_id=agent.id, user_id="u", scopes=["not a scope"]))
    assert bad_scope.value.status_code == 400 and bad_scope.value.code == "INVALID_SCOPE"
    with pytest.raises(GrantexApiError) as unsupported:
        gx.authorize(AuthorizeParams(agent_id=agent.id, user_id="u", scopes=["calendar:read"],
                                     data_region="eu"))
    assert unsupported.value.status_code == 400 and "dataRegion" in str(unsupported.value)
    # a spent refresh token: 400, and the whole token family is revoked
    auth = gx.authorize(AuthorizeParams(agent_id=agent.id, user_id="u", scopes=["calendar:read"]))
    assert auth.code is not None
    token = gx.tokens.exchange(ExchangeTokenParams(code=auth.code, agent_id=agent.id))
    fresh = gx.tokens.refresh(RefreshTokenParams(refresh_token=token.refresh_token, agent_id=agent.id))
    with pytest.raises(GrantexApiError) as reused:
        gx.tokens.refresh(RefreshTokenParams(refresh_token=token.refresh_token, agent_id=agent.id))
    assert reused.value.status_code == 400 and reused.value.code == "REFRESH_TOKEN_REUSED"
    assert gx.tokens.verify(fresh.grant_token).valid is False
