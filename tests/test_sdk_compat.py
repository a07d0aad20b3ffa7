"""The official SDK (grantex 0.7.2) accepts what the ledger issues.

The ledger's JWKS is served by a real HTTP server on loopback, and tokens are
verified by ``grantex.verify_grant_token`` exactly as a relying party would,
in the default (legacy-aliases-read) and the standard-claims-only modes.
"""

from __future__ import annotations

import json
import threading
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import grantex
import jwt
import pytest
from grantex import GrantexTokenError, LegacyClaimsWarning, VerifyGrantTokenOptions
from grantex._verify import clear_jwks_cache  # not re-exported at the package top level in 0.7.2

from grantex_local import ExchangeTokenResponse, Grantex, Ledger
from grantex_local import developers as developers_mod
from grantex_local import keys as keys_mod

GRANT = "urn:grantex:grant"
JWKS_PATH = "/.well-known/jwks.json"
ROOT_SCOPES = ["hotels:search", "flights:book", "calendar:read"]  # deliberately not sorted
CHILD_SCOPES = ["flights:book", "calendar:read"]
GRANDCHILD_SCOPES = ["calendar:read"]
AUDIENCE = "https://api.travel.test"

# ── a real JWKS endpoint on loopback ────────────────────────────────────────


class JwksServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, provider: Callable[[], dict[str, Any]]) -> None:
        super().__init__(("127.0.0.1", 0), JwksHandler)
        self.provider = provider
        self.hits = 0

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class JwksHandler(BaseHTTPRequestHandler):
    server: JwksServer

    def do_GET(self) -> None:
        if self.path != JWKS_PATH:
            self.send_error(404)
            return
        self.server.hits += 1
        body = json.dumps(self.server.provider()).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


def ledger_jwks(path: Path) -> Callable[[], dict[str, Any]]:
    """Read the public JWKS from the file on every request, like a separate server process."""

    def provide() -> dict[str, Any]:
        with Ledger(path, create=False) as reader:
            return keys_mod.jwks(reader)

    return provide


@pytest.fixture(autouse=True)
def _fresh_sdk_cache() -> Iterator[None]:
    clear_jwks_cache()
    yield
    clear_jwks_cache()


@dataclass
class Served:
    client: Grantex
    server: JwksServer

    @property
    def base(self) -> str:
        return self.server.base

    @property
    def jwks_uri(self) -> str:
        return self.base + JWKS_PATH


@pytest.fixture
def served(tmp_path: Path) -> Iterator[Served]:
    path = tmp_path / "sdk.db"
    client = Grantex(ledger=path)
    server = JwksServer(ledger_jwks(path))
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        client.ledger.set_setting("issuer", server.base)  # BEFORE any token is minted
        yield Served(client, server)
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)
        client.close()


# ── helpers ─────────────────────────────────────────────────────────────────


def mint(client: Grantex, agent_id: str, scopes: list[str], *,
         audience: str | None = None) -> ExchangeTokenResponse:
    auth = client.authorize(agent_id=agent_id, user_id="user_alice", scopes=scopes, audience=audience)
    assert auth.code is not None
    return client.tokens.exchange(code=auth.code, agent_id=agent_id)


def sdk_verify(token: str, jwks_uri: str, **options: Any) -> grantex.VerifiedGrant:
    """grantex.verify_grant_token, failing the test on any LegacyClaimsWarning."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        grant = grantex.verify_grant_token(token, VerifyGrantTokenOptions(jwks_uri=jwks_uri, **options))
    legacy = [w for w in caught if issubclass(w.category, LegacyClaimsWarning)]
    assert not legacy, [str(w.message) for w in legacy]
    assert grant.legacy_claims_used == ()
    return grant


@dataclass
class Chain:
    """A root grant delegated twice: root agent → child agent → grandchild agent."""

    tokens: dict[int, ExchangeTokenResponse]
    dids: dict[int, str]
    scopes: dict[int, list[str]]
    developer_id: str


@pytest.fixture
def chain(served: Served) -> Chain:
    client = served.client
    agents = [client.agents.register(name=f"agent-{depth}", scopes=ROOT_SCOPES) for depth in range(3)]
    root = mint(client, agents[0].id, ROOT_SCOPES)
    child = client.grants.delegate(parent_grant_token=root.grant_token, sub_agent_id=agents[1].id,
                                   scopes=CHILD_SCOPES)
    grandchild = client.grants.delegate(parent_grant_token=child.grant_token, sub_agent_id=agents[2].id,
                                        scopes=GRANDCHILD_SCOPES)
    return Chain(
        tokens={0: root, 1: child, 2: grandchild},
        dids={d: a.did for d, a in enumerate(agents)},
        scopes={0: ROOT_SCOPES, 1: CHILD_SCOPES, 2: GRANDCHILD_SCOPES},
        developer_id=client.developer_id,
    )


MODES = [
    pytest.param({}, id="default-legacy-claims"),
    pytest.param({"legacy_claims": False}, id="standard-claims-only"),
    pytest.param({"bounded_jwks_fetch": True}, id="bounded-fetch"),
    pytest.param({"legacy_claims": False, "bounded_jwks_fetch": True}, id="standard-bounded"),
]

# ── the SDK verifies every token the ledger issues ─────────────────────────


@pytest.mark.parametrize("depth", [0, 1, 2])
@pytest.mark.parametrize("mode", MODES)
def test_sdk_verifies_ledger_tokens(served: Served, chain: Chain, depth: int, mode: dict[str, Any]) -> None:
    issued = chain.tokens[depth]
    grant = sdk_verify(issued.grant_token, served.jwks_uri, **mode)
    assert served.server.hits >= 1, "the SDK fetched the JWKS over HTTP"
    assert grant.grant_id == issued.grant_id
    assert grant.token_id == issued.token_id
    assert grant.principal_id == "user_alice"
    assert grant.agent_did == chain.dids[depth]
    assert grant.client_id == chain.dids[depth].removeprefix("did:grantex:")
    assert grant.developer_id == chain.developer_id
    assert grant.scopes == tuple(chain.scopes[depth])  # same order as granted
    assert grant.issuer == served.base
    if depth == 0:
        assert (grant.parent_grant_id, grant.delegation_depth, grant.parent_agent_did) == (None, None, None)
    else:
        assert grant.parent_grant_id == chain.tokens[depth - 1].grant_id
        assert grant.delegation_depth == depth
        assert grant.parent_agent_did == chain.dids[depth - 1]
        assert grant.act == {"sub": chain.dids[depth - 1]}


@pytest.mark.parametrize("mode", MODES)
def test_sdk_required_scopes(served: Served, chain: Chain, mode: dict[str, Any]) -> None:
    token = chain.tokens[1].grant_token
    grant = sdk_verify(token, served.jwks_uri, required_scopes=list(CHILD_SCOPES), **mode)
    assert grant.scopes == tuple(CHILD_SCOPES)
    with pytest.raises(GrantexTokenError, match="missing required scopes"):
        sdk_verify(token, served.jwks_uri, required_scopes=["hotels:search"], **mode)


@pytest.mark.parametrize("depth", [0, 1, 2])
def test_tokens_carry_agreeing_legacy_aliases(served: Served, chain: Chain, depth: int) -> None:
    token = chain.tokens[depth].grant_token
    assert jwt.get_unverified_header(token) == {
        "alg": "RS256", "kid": served.client.ledger.signing_key()[0], "typ": "at+jwt"}
    claims = jwt.decode(token, options={"verify_signature": False})
    grant = claims[GRANT]
    assert claims["iss"] == served.base
    assert claims["agt"] == grant["agent_did"] == chain.dids[depth]
    assert claims["dev"] == grant["developer_id"] == chain.developer_id
    assert claims["grnt"] == grant["grant_id"] == chain.tokens[depth].grant_id
    assert claims["scp"] == claims["scope"].split(" ") == chain.scopes[depth]
    assert isinstance(claims["scope"], str)
    assert "did:grantex:" + claims["client_id"] == grant["agent_did"]
    if depth == 0:
        delegated = {"act", "parentAgt", "parentGrnt", "delegationDepth"}
        assert not delegated & set(claims)
        assert set(grant) == {"agent_did", "developer_id", "grant_id"}
    else:
        assert claims["parentAgt"] == claims["act"]["sub"] == chain.dids[depth - 1]
        assert claims["parentGrnt"] == grant["parent_grant_id"] == chain.tokens[depth - 1].grant_id
        assert claims["delegationDepth"] == grant["delegation_depth"] == depth
        assert isinstance(claims["delegationDepth"], int)
    assert token.isascii()


def test_sdk_refuses_issuer_spelled_differently(served: Served) -> None:
    """localhost is not 127.0.0.1: the issuer setting must match the JWKS URL byte for byte."""
    port = served.server.server_address[1]
    served.client.ledger.set_setting("issuer", f"http://localhost:{port}")
    agent = served.client.agents.register(name="misconfigured", scopes=ROOT_SCOPES)
    token = mint(served.client, agent.id, ["flights:book"]).grant_token
    for mode in ({}, {"legacy_claims": False}):
        with pytest.raises(GrantexTokenError, match=r"(?i)issuer"):
            grantex.verify_grant_token(token, VerifyGrantTokenOptions(jwks_uri=served.jwks_uri, **mode))
    # Set back, newly minted tokens verify again against the same JWKS URL.
    served.client.ledger.set_setting("issuer", served.base)
    fixed = mint(served.client, agent.id, ["flights:book"]).grant_token
    assert sdk_verify(fixed, served.jwks_uri).scopes == ("flights:book",)


def test_sdk_audience(served: Served) -> None:
    agent = served.client.agents.register(name="aud", scopes=ROOT_SCOPES)
    token = mint(served.client, agent.id, ["flights:book"], audience=AUDIENCE).grant_token
    grant = sdk_verify(token, served.jwks_uri, audience=AUDIENCE, legacy_claims=False)
    assert grant.audience == AUDIENCE
    with pytest.raises(GrantexTokenError):
        sdk_verify(token, served.jwks_uri, audience="https://other.test")
    # A delegated token keeps the parent's audience (PROTOCOL §8).
    sub = served.client.agents.register(name="aud-sub", scopes=ROOT_SCOPES)
    child = served.client.grants.delegate(parent_grant_token=token, sub_agent_id=sub.id,
                                          scopes=["flights:book"]).grant_token
    assert sdk_verify(child, served.jwks_uri, audience=AUDIENCE).delegation_depth == 1
    with pytest.raises(GrantexTokenError):
        sdk_verify(child, served.jwks_uri, audience="https://other.test")


def test_sdk_after_key_rotation(served: Served) -> None:
    agent = served.client.agents.register(name="rotating", scopes=ROOT_SCOPES)
    before = mint(served.client, agent.id, ["flights:book"]).grant_token
    assert sdk_verify(before, served.jwks_uri).scopes == ("flights:book",)
    new_kid = served.client.keys.rotate()["kid"]
    after = mint(served.client, agent.id, ["flights:book"]).grant_token
    assert jwt.get_unverified_header(after)["kid"] == new_kid
    clear_jwks_cache()  # the SDK re-fetches an unknown kid only after a 30 s cooldown
    for token in (before, after):
        assert sdk_verify(token, served.jwks_uri, legacy_claims=False).scopes == ("flights:book",)


def test_sdk_refuses_token_from_another_ledger(served: Served, tmp_path: Path) -> None:
    other = Grantex(ledger=tmp_path / "other.db")
    try:
        other.ledger.set_setting("issuer", served.base)  # same issuer, different keys
        agent = other.agents.register(name="impostor", scopes=ROOT_SCOPES)
        token = mint(other, agent.id, ["flights:book"]).grant_token
        with pytest.raises(GrantexTokenError, match="No matching"):
            grantex.verify_grant_token(token, VerifyGrantTokenOptions(jwks_uri=served.jwks_uri))
    finally:
        other.close()


# ── the announcement snippet, as published ──────────────────────────────────


def test_announcement_snippet(tmp_path: Path) -> None:
    from grantex_local import ExchangeTokenParams, Grantex

    client = Grantex(ledger=tmp_path / "g.db")

    agent = client.agents.register(
        name="travel-booking-agent",
        scopes=["flights:book", "hotels:search"],
    )
    auth = client.authorize(
        agent_id=agent.id,
        user_id="user_alice",
        scopes=["flights:book", "hotels:search"],
    )
    callback_code = auth.code  # sandbox developer: the code comes back at once
    assert callback_code is not None and auth.sandbox is True
    token = client.tokens.exchange(ExchangeTokenParams(code=callback_code, agent_id=agent.id))
    assert token.scopes == ("flights:book", "hotels:search")
    assert client.tokens.verify(token.grant_token).valid is True
    client.close()


def test_announcement_snippet_with_human_consent(tmp_path: Path) -> None:
    from grantex_local import ExchangeTokenParams, Grantex

    client = Grantex(ledger=tmp_path / "g.db")
    developers_mod.set_sandbox(client.ledger, client.developer_id, False)
    agent = client.agents.register(name="travel-booking-agent", scopes=["flights:book", "hotels:search"])
    auth = client.authorize(agent_id=agent.id, user_id="user_alice",
                            scopes=["flights:book", "hotels:search"])
    assert auth.code is None and auth.status == "pending" and not auth.sandbox
    assert [r.request_id for r in client.consent.list()] == [auth.request_id]
    callback_code = client.consent.approve(auth.request_id).code
    assert callback_code is not None
    token = client.tokens.exchange(ExchangeTokenParams(code=callback_code, agent_id=agent.id))
    assert token.scopes == ("flights:book", "hotels:search")
    assert client.tokens.verify(token.grant_token).valid is True
    client.close()


def test_sdk_param_objects_are_accepted(served: Served) -> None:
    client = served.client
    agent = client.agents.register(name="travel-booking-agent", scopes=["flights:book", "hotels:search"])
    auth = client.authorize(grantex.AuthorizeParams(agent_id=agent.id, user_id="user_alice",
                                                    scopes=["flights:book", "hotels:search"]))
    assert auth.principal_id == "user_alice" and auth.code is not None
    token = client.tokens.exchange(grantex.ExchangeTokenParams(code=auth.code, agent_id=agent.id))
    assert token.scopes == ("flights:book", "hotels:search")
    grant = sdk_verify(token.grant_token, served.jwks_uri, legacy_claims=False,
                       required_scopes=["flights:book"])
    assert grant.principal_id == "user_alice" and grant.agent_did == agent.did
