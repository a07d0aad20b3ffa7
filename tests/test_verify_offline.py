"""Offline verification (PROTOCOL §6): every attack on a grant token is refused with a reason.

Tokens come from a real ledger in a temporary directory. Attacked tokens are
built by hand (base64url segments) or re-signed with the ledger's own signing
key, which proves that a refusal is about the claims and not the signature.
Every attacked token is also checked against ONLINE verification, which must
answer ``valid=False`` with the same reason and never raise.
"""

from __future__ import annotations

import base64
import copy
import hashlib
import hmac
import json
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.api_jws import PyJWS

from grantex_local import (
    ExchangeTokenResponse,
    Grantex,
    Ledger,
    TokenExpired,
    TokenInvalid,
    VerifiedGrant,
    Verifier,
    verify_grant_token,
)
from grantex_local.verify import DEFAULT_LEEWAY, MAX_TOKEN_LENGTH

ISSUER = "https://issuer.grantex-local.test"
GRANT = "urn:grantex:grant"
ROOT_SCOPES = ["hotels:search", "flights:book", "calendar:read"]
CHILD_SCOPES = ["flights:book", "calendar:read"]
AUDIENCE = "https://api.travel.test"

# ── helpers: building and re-signing tokens ─────────────────────────────────


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64url_json(obj: Any) -> str:
    return b64url(json.dumps(obj, separators=(",", ":")).encode())


def unverified_claims(token: str) -> dict[str, Any]:
    return jwt.decode(token, options={"verify_signature": False})


def hand_built(header: dict[str, Any], payload: dict[str, Any], signature: str = "") -> str:
    """A compact JWS assembled segment by segment (PyJWT would refuse these)."""
    return f"{b64url_json(header)}.{b64url_json(payload)}.{signature}"


def hs256(header: dict[str, Any], payload: dict[str, Any], secret: bytes) -> str:
    """HS256 by hand: HMAC-SHA256 over ``header.payload`` with ``secret``."""
    signing_input = f"{b64url_json(header)}.{b64url_json(payload)}"
    mac = hmac.new(secret, signing_input.encode("ascii"), hashlib.sha256).digest()
    return f"{signing_input}.{b64url(mac)}"


def resign(ledger: Ledger, claims: dict[str, Any], *, key: Any = None,
           headers: dict[str, Any] | None = None) -> str:
    """Sign ``claims`` with the ledger's own active key (or ``key``), header as the ledger writes it."""
    kid, own_key = ledger.signing_key()
    head = {"kid": kid, "typ": "at+jwt"} if headers is None else headers
    return jwt.encode(claims, key if key is not None else own_key, "RS256", headers=head)


def drop(claims: dict[str, Any], path: tuple[str, ...]) -> dict[str, Any]:
    out = copy.deepcopy(claims)
    target = out
    for part in path[:-1]:
        target = target[part]
    del target[path[-1]]
    return out


def put(claims: dict[str, Any], path: tuple[str, ...], value: Any) -> dict[str, Any]:
    out = copy.deepcopy(claims)
    target = out
    for part in path[:-1]:
        target = target[part]
    target[path[-1]] = value
    return out


def mint(client: Grantex, agent_id: str, scopes: list[str], *, expires_in: str | None = None,
         audience: str | None = None, user: str = "user_alice") -> ExchangeTokenResponse:
    """authorize → sandbox code → exchange, on the ledger's default (sandbox) developer."""
    auth = client.authorize(agent_id=agent_id, user_id=user, scopes=scopes,
                            expires_in=expires_in, audience=audience)
    assert auth.code is not None, "the default developer is a sandbox one"
    return client.tokens.exchange(code=auth.code, agent_id=agent_id)


# ── the world: one ledger with root, delegated, audience and payment tokens ──


@dataclass
class World:
    ledger: Ledger
    client: Grantex
    jwks: dict[str, Any]
    root: ExchangeTokenResponse
    child: ExchangeTokenResponse
    audience_token: ExchangeTokenResponse
    payments: ExchangeTokenResponse
    root_agent_did: str
    child_agent_did: str

    def claims(self, kind: str) -> dict[str, Any]:
        return unverified_claims(self.root.grant_token if kind == "root" else self.child.grant_token)


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    path = tmp_path_factory.mktemp("offline") / "offline.db"
    ledger = Ledger(path)
    ledger.set_setting("issuer", ISSUER)
    client = Grantex(ledger)
    root_agent = client.agents.register(name="planner", scopes=ROOT_SCOPES)
    sub_agent = client.agents.register(name="booker", scopes=ROOT_SCOPES)
    pay_agent = client.agents.register(name="payer", scopes=["payments:initiate:max_500"])
    root = mint(client, root_agent.id, ROOT_SCOPES)
    child = client.grants.delegate(parent_grant_token=root.grant_token, sub_agent_id=sub_agent.id,
                                   scopes=CHILD_SCOPES)
    audience_token = mint(client, root_agent.id, ["flights:book"], audience=AUDIENCE)
    payments = mint(client, pay_agent.id, ["payments:initiate:max_500"])
    yield World(ledger, client, client.jwks(), root, child, audience_token, payments,
                root_agent.did, sub_agent.did)
    ledger.close()


def assert_rejected(world: World, token: Any, reason: str, *, online: bool = True,
                    expected: type[TokenInvalid] = TokenInvalid, **kwargs: Any) -> None:
    """Refused by the function, by a fresh Verifier, and (optionally) by online verification."""
    with pytest.raises(expected) as by_function:
        verify_grant_token(token, jwks=world.jwks, issuer=kwargs.pop("issuer", ISSUER), **kwargs)
    assert by_function.value.reason == reason, by_function.value.message
    verifier = Verifier(world.jwks, issuer=ISSUER, audience=kwargs.get("audience"))
    with pytest.raises(expected) as by_verifier:
        verifier.verify(token, kwargs.get("required_scopes"))
    assert by_verifier.value.reason == reason, by_verifier.value.message
    if online:
        answer = world.client.tokens.verify(token)
        assert answer.valid is False
        assert answer.reason == reason
        assert answer.grant_id is None and answer.scopes is None


# ── the valid tokens (a baseline: everything below must fail only for its attack) ──


def test_valid_root_and_delegated_tokens_verify(world: World) -> None:
    root = verify_grant_token(world.root.grant_token, jwks=world.jwks, issuer=ISSUER)
    assert isinstance(root, VerifiedGrant)
    assert root.grant_id == world.root.grant_id
    assert root.scopes == tuple(ROOT_SCOPES)
    assert root.principal_id == "user_alice"
    assert root.agent_did == world.root_agent_did
    assert root.client_id == world.root_agent_did.removeprefix("did:grantex:")
    assert root.issuer == ISSUER
    assert (root.parent_grant_id, root.delegation_depth, root.parent_agent_did) == (None, None, None)

    child = verify_grant_token(world.child.grant_token, jwks=json.dumps(world.jwks), issuer=ISSUER,
                               required_scopes=["flights:book"])
    assert child.scopes == tuple(CHILD_SCOPES)
    assert child.parent_grant_id == world.root.grant_id
    assert child.delegation_depth == 1
    assert child.parent_agent_did == world.root_agent_did
    assert child.agent_did == world.child_agent_did
    for token in (world.root.grant_token, world.child.grant_token):
        assert world.client.tokens.verify(token).valid is True


# ── algorithm, header and signature attacks ──────────────────────────────────


def _header(token: str) -> dict[str, Any]:
    return jwt.get_unverified_header(token)


def alg_none(world: World) -> str:
    head = dict(_header(world.root.grant_token), alg="none")
    return hand_built(head, world.claims("root"))


def alg_none_lowercase_kidless(world: World) -> str:
    return hand_built({"alg": "none", "typ": "at+jwt"}, world.claims("root"))


def _public_pem(world: World) -> bytes:
    _, key = world.ledger.signing_key()
    return key.public_key().public_bytes(serialization.Encoding.PEM,
                                         serialization.PublicFormat.SubjectPublicKeyInfo)


def hs256_with_public_pem(world: World) -> str:
    head = dict(_header(world.root.grant_token), alg="HS256")
    return hs256(head, world.claims("root"), _public_pem(world))


def hs256_with_public_jwk(world: World) -> str:
    head = dict(_header(world.root.grant_token), alg="HS256")
    jwk = json.dumps(world.jwks["keys"][0]).encode()
    return hs256(head, world.claims("root"), jwk)


def unknown_kid(world: World) -> str:
    return resign(world.ledger, world.claims("root"), headers={"kid": "no-such-key", "typ": "at+jwt"})


def missing_kid(world: World) -> str:
    return resign(world.ledger, world.claims("root"), headers={"typ": "at+jwt"})


def foreign_key_with_our_kid(world: World) -> str:
    attacker = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    kid, _ = world.ledger.signing_key()
    return resign(world.ledger, world.claims("root"), key=attacker,
                  headers={"kid": kid, "typ": "at+jwt"})


def typ_jwt(world: World) -> str:
    kid, _ = world.ledger.signing_key()
    return resign(world.ledger, world.claims("root"), headers={"kid": kid, "typ": "JWT"})


def typ_missing(world: World) -> str:
    kid, key = world.ledger.signing_key()
    token = jwt.encode(world.claims("root"), key, "RS256", headers={"kid": kid, "typ": None})
    assert "typ" not in _header(token)
    return token


def tampered_scope(world: World) -> str:
    """Widen a scope in the payload (both claim sets, so they still agree); keep the signature."""
    head, _, signature = world.root.grant_token.split(".")
    claims = world.claims("root")
    claims["scope"] = claims["scope"].replace("calendar:read", "calendar:write")
    claims["scp"] = [s.replace("calendar:read", "calendar:write") for s in claims["scp"]]
    return f"{head}.{b64url_json(claims)}.{signature}"


def tampered_principal(world: World) -> str:
    head, _, signature = world.root.grant_token.split(".")
    return f"{head}.{b64url_json(put(world.claims('root'), ('sub',), 'user_mallory'))}.{signature}"


def signature_stripped(world: World) -> str:
    head, body, _ = world.root.grant_token.split(".")
    return f"{head}.{body}."


HEADER_ATTACKS: list[tuple[Callable[[World], str], str]] = [
    (alg_none, "algorithm"),
    (alg_none_lowercase_kidless, "algorithm"),
    (hs256_with_public_pem, "algorithm"),
    (hs256_with_public_jwk, "algorithm"),
    (unknown_kid, "unknown_kid"),
    (missing_kid, "unknown_kid"),
    (foreign_key_with_our_kid, "signature"),
    (typ_jwt, "type"),
    (typ_missing, "type"),
    (tampered_scope, "signature"),
    (tampered_principal, "signature"),
    (signature_stripped, "signature"),
]


@pytest.mark.parametrize(("build", "reason"), HEADER_ATTACKS, ids=[b.__name__ for b, _ in HEADER_ATTACKS])
def test_header_and_signature_attacks_are_refused(world: World, build: Callable[[World], str],
                                                  reason: str) -> None:
    assert_rejected(world, build(world), reason)


def test_hs256_token_is_built_correctly(world: World) -> None:
    """The HS256 forgery really is a valid HMAC with the public PEM: only the verifier stops it."""
    token = hs256_with_public_pem(world)
    assert _header(token)["alg"] == "HS256"
    assert unverified_claims(token) == world.claims("root")
    signing_input, _, sig = token.rpartition(".")
    expected = hmac.new(_public_pem(world), signing_input.encode(), hashlib.sha256).digest()
    assert b64url(expected) == sig


# ── time ────────────────────────────────────────────────────────────────────


@pytest.fixture
def expired_token(tmp_path: Path) -> Iterator[tuple[Grantex, str]]:
    """A 1h grant minted by a ledger whose clock is ten days behind, then the real clock."""
    path = tmp_path / "past.db"
    past = Ledger(path, clock=lambda: time.time() - 10 * 86400)
    past.set_setting("issuer", ISSUER)
    old = Grantex(past)
    agent = old.agents.register(name="old-agent", scopes=["flights:book"])
    token = mint(old, agent.id, ["flights:book"], expires_in="1h").grant_token
    assert old.tokens.verify(token).valid is True  # valid in its own (past) time
    past.close()
    real = Grantex(path)
    yield real, token
    real.close()


def test_expired_token_raises_token_expired(expired_token: tuple[Grantex, str]) -> None:
    client, token = expired_token
    jwks = client.jwks()
    with pytest.raises(TokenExpired) as exc:
        verify_grant_token(token, jwks=jwks, issuer=ISSUER)
    assert exc.value.reason == "expired"
    with pytest.raises(TokenExpired):
        Verifier(jwks, issuer=ISSUER).verify(token)
    with pytest.raises(TokenExpired):
        client.tokens.verify_offline(token)
    answer = client.tokens.verify(token)
    assert (answer.valid, answer.reason) == (False, "expired")


def _shifted(world: World, **changes: int) -> str:
    claims = world.claims("root")
    claims.update(changes)
    return resign(world.ledger, claims)


@pytest.mark.parametrize("claim", ["iat", "nbf"])
def test_token_from_the_future_is_not_yet_valid(world: World, claim: str) -> None:
    future = int(time.time()) + 3600
    token = _shifted(world, **{claim: future})
    assert_rejected(world, token, "not_yet_valid")


def test_small_clock_skew_is_tolerated(world: World) -> None:
    token = _shifted(world, iat=int(time.time()) + 2, nbf=int(time.time()) + 2)
    assert verify_grant_token(token, jwks=world.jwks, issuer=ISSUER).grant_id == world.root.grant_id


def test_cached_token_still_expires(world: World) -> None:
    """The Verifier remembers checked signatures, yet re-checks exp on every call."""
    now = [time.time()]
    verifier = Verifier(world.jwks, issuer=ISSUER, clock=lambda: now[0])
    token = world.root.grant_token
    first = verifier.verify(token)
    second = verifier.verify(token)  # the cache path
    assert first == second
    now[0] = first.expires_at + DEFAULT_LEEWAY - 1
    assert verifier.verify(token).grant_id == world.root.grant_id
    now[0] = first.expires_at + DEFAULT_LEEWAY
    with pytest.raises(TokenExpired) as exc:
        verifier.verify(token)
    assert exc.value.reason == "expired"
    # And a fresh verifier at that time refuses it on the full path too.
    with pytest.raises(TokenExpired):
        Verifier(world.jwks, issuer=ISSUER, clock=lambda: now[0]).verify(token)


def test_cached_token_still_checks_required_scopes(world: World) -> None:
    verifier = Verifier(world.jwks, issuer=ISSUER)
    verifier.verify(world.child.grant_token)
    with pytest.raises(TokenInvalid) as exc:
        verifier.verify(world.child.grant_token, ["hotels:search"])
    assert exc.value.reason == "insufficient_scope"


# ── issuer and audience ─────────────────────────────────────────────────────


@pytest.mark.parametrize("issuer", ["https://evil.test", ISSUER + "/", ISSUER.upper(),
                                    "http://issuer.grantex-local.test"])
def test_wrong_expected_issuer(world: World, issuer: str) -> None:
    with pytest.raises(TokenInvalid) as exc:
        verify_grant_token(world.root.grant_token, jwks=world.jwks, issuer=issuer)
    assert exc.value.reason == "issuer"


def test_token_with_foreign_issuer_is_refused_offline_and_online(world: World) -> None:
    token = resign(world.ledger, put(world.claims("root"), ("iss",), "http://localhost:8421"))
    assert_rejected(world, token, "issuer")


def test_audience(world: World) -> None:
    token = world.audience_token.grant_token
    assert unverified_claims(token)["aud"] == AUDIENCE
    grant = verify_grant_token(token, jwks=world.jwks, issuer=ISSUER, audience=AUDIENCE)
    assert grant.audience == AUDIENCE
    # PROTOCOL §6: aud is checked "when the verifier names one".
    assert verify_grant_token(token, jwks=world.jwks, issuer=ISSUER).audience == AUDIENCE
    assert_rejected(world, token, "audience", online=False, audience="https://other.test")


def test_expected_audience_but_token_has_none(world: World) -> None:
    with pytest.raises(TokenInvalid) as exc:
        verify_grant_token(world.root.grant_token, jwks=world.jwks, issuer=ISSUER, audience=AUDIENCE)
    assert exc.value.reason in ("audience", "missing_claim")


def test_non_string_audience_is_refused(world: World) -> None:
    token = resign(world.ledger, put(world.claims("root"), ("aud",), [AUDIENCE, "https://other.test"]))
    with pytest.raises(TokenInvalid):
        verify_grant_token(token, jwks=world.jwks, issuer=ISSUER)


# ── required claims, one at a time ──────────────────────────────────────────

MISSING_CLAIMS: list[tuple[str, tuple[str, ...]]] = [
    ("root", ("iss",)),
    ("root", ("sub",)),
    ("root", ("jti",)),
    ("root", ("exp",)),
    ("root", ("iat",)),
    ("root", ("client_id",)),
    ("root", ("scope",)),
    ("root", ("scp",)),
    ("root", (GRANT,)),
    ("root", (GRANT, "agent_did")),
    ("root", (GRANT, "developer_id")),
    ("root", (GRANT, "grant_id")),
    ("root", ("agt",)),
    ("root", ("dev",)),
    ("root", ("grnt",)),
    ("delegated", ("act",)),
    ("delegated", ("act", "sub")),
    ("delegated", (GRANT, "parent_grant_id")),
    ("delegated", (GRANT, "delegation_depth")),
    ("delegated", ("parentAgt",)),
    ("delegated", ("parentGrnt",)),
    ("delegated", ("delegationDepth",)),
]


@pytest.mark.parametrize(("kind", "path"), MISSING_CLAIMS,
                         ids=[f"{k}-{'.'.join(p)}" for k, p in MISSING_CLAIMS])
def test_missing_required_claim(world: World, kind: str, path: tuple[str, ...]) -> None:
    claims = drop(world.claims(kind), path)
    token = resign(world.ledger, claims)
    assert_rejected(world, token, "missing_claim")


def test_resigned_unchanged_claims_still_verify(world: World) -> None:
    """Control for the claim cases: re-signing itself breaks nothing."""
    for kind in ("root", "delegated"):
        token = resign(world.ledger, world.claims(kind))
        verify_grant_token(token, jwks=world.jwks, issuer=ISSUER)


OTHER_DID = "did:grantex:ag_01JZZZZZZZZZZZZZZZZZZZZZZZ"

DISAGREEING: list[tuple[str, tuple[str, ...], Any]] = [
    ("root", ("scp",), list(reversed(ROOT_SCOPES))),
    ("root", ("scp",), ROOT_SCOPES[:2]),
    ("root", ("scope",), " ".join([*ROOT_SCOPES, "files:read"])),
    ("root", ("agt",), OTHER_DID),
    ("root", (GRANT, "agent_did"), OTHER_DID),
    ("root", ("dev",), "dev_01JZZZZZZZZZZZZZZZZZZZZZZZ"),
    ("root", ("grnt",), "grnt_01JZZZZZZZZZZZZZZZZZZZZZZZ"),
    ("root", (GRANT, "grant_id"), "grnt_01JZZZZZZZZZZZZZZZZZZZZZZZ"),
    ("root", ("client_id",), "ag_01JZZZZZZZZZZZZZZZZZZZZZZZ"),
    ("delegated", ("parentGrnt",), "grnt_01JZZZZZZZZZZZZZZZZZZZZZZZ"),
    ("delegated", ("delegationDepth",), 2),
    ("delegated", ("delegationDepth",), "1"),
    ("delegated", ("parentAgt",), OTHER_DID),
    ("delegated", ("act", "sub"), OTHER_DID),
]


@pytest.mark.parametrize(("kind", "path", "value"), DISAGREEING,
                         ids=[f"{k}-{'.'.join(p)}-{i}" for i, (k, p, _) in enumerate(DISAGREEING)])
def test_claim_sets_that_disagree(world: World, kind: str, path: tuple[str, ...], value: Any) -> None:
    token = resign(world.ledger, put(world.claims(kind), path, value))
    assert_rejected(world, token, "claims_disagree")


# ── required scopes ─────────────────────────────────────────────────────────


@pytest.mark.parametrize(("token_name", "required", "ok"), [
    ("root", ["flights:book"], True),
    ("root", ["flights:book", "hotels:search", "calendar:read"], True),
    ("root", ["flights:book:max_100"], True),  # an unconstrained scope covers any constraint
    ("root", ["calendar:write"], False),
    ("root", ["flights:book", "files:read"], False),
    ("child", ["hotels:search"], False),
    ("payments", ["payments:initiate:max_500"], True),
    ("payments", ["payments:initiate:max_100"], True),
    ("payments", ["payments:initiate:max_1000"], False),
    ("payments", ["payments:initiate"], False),
    ("payments", ["payments:read"], False),
])
def test_required_scopes(world: World, token_name: str, required: list[str], ok: bool) -> None:
    token = {"root": world.root, "child": world.child, "payments": world.payments}[token_name].grant_token
    if ok:
        grant = verify_grant_token(token, jwks=world.jwks, issuer=ISSUER, required_scopes=required)
        assert grant.grant_id == unverified_claims(token)["grnt"]
        assert world.client.tokens.verify_offline(token, required_scopes=required).grant_id == grant.grant_id
    else:
        assert_rejected(world, token, "insufficient_scope", online=False, required_scopes=required)


# ── malformed input ─────────────────────────────────────────────────────────


def _oversize(world: World) -> str:
    head, body, sig = world.root.grant_token.split(".")
    return f"{head}.{body}{'A' * (MAX_TOKEN_LENGTH - len(world.root.grant_token) + 4)}.{sig}"


MALFORMED: list[tuple[str, Callable[[World], Any]]] = [
    ("empty", lambda w: ""),
    ("none", lambda w: None),
    ("int", lambda w: 12345),
    ("bytes", lambda w: w.root.grant_token.encode()),
    ("two-segments", lambda w: ".".join(w.root.grant_token.split(".")[:2])),
    ("four-segments", lambda w: w.root.grant_token + ".AAAA"),
    ("garbage-base64", lambda w: "!!!$$$.%%%^^^.&&&***"),
    ("header-not-json", lambda w: f"{b64url(b'not json')}.{b64url(b'{}')}.AAAA"),
    ("oversize", _oversize),
]


@pytest.mark.parametrize("build", [b for _, b in MALFORMED], ids=[n for n, _ in MALFORMED])
def test_malformed_input(world: World, build: Callable[[World], Any]) -> None:
    token = build(world)
    assert_rejected(world, token, "malformed")


def test_oversize_token_really_is_oversize(world: World) -> None:
    assert len(_oversize(world)) > MAX_TOKEN_LENGTH


# ── registered claims: the same verdicts as PyJWT's own claim layer ──────────

REGISTERED_VARIANTS: list[tuple[str, Callable[[dict[str, Any]], dict[str, Any]]]] = [
    *[(f"no {name}", lambda c, n=name: drop(c, (n,))) for name in ("exp", "iat", "iss", "sub", "jti")],
    *[(f"{name} null", lambda c, n=name: put(c, (n,), None)) for name in ("exp", "iat", "iss", "sub", "jti")],
    ("iss other", lambda c: put(c, ("iss",), "https://elsewhere.test")),
    ("iss number", lambda c: put(c, ("iss",), 7)),
    ("iss list", lambda c: put(c, ("iss",), [ISSUER])),
    ("sub number", lambda c: put(c, ("sub",), 7)),
    ("jti number", lambda c: put(c, ("jti",), 7)),
    ("aud absent", lambda c: drop(c, ("aud",)) if "aud" in c else c),
    ("aud empty", lambda c: put(c, ("aud",), "")),
    ("aud other", lambda c: put(c, ("aud",), "https://other.test")),
    ("aud list with it", lambda c: put(c, ("aud",), [AUDIENCE, "https://other.test"])),
    ("aud list without it", lambda c: put(c, ("aud",), ["https://other.test"])),
    ("aud list of numbers", lambda c: put(c, ("aud",), [1])),
    ("aud object", lambda c: put(c, ("aud",), {"a": AUDIENCE})),
    ("aud number", lambda c: put(c, ("aud",), 5)),
]


def _pyjwt_reason(token: str, key: Any, audience: str | None) -> str | None:
    """What PyJWT's claim layer (require, iss, aud, sub, jti) says, as the reason names it."""
    options: dict[str, Any] = {"require": ["exp", "iat", "iss", "sub", "jti"], "verify_exp": False,
                               "verify_nbf": False, "verify_iat": False}
    if audience is None:
        options["verify_aud"] = False
    try:
        jwt.decode(token, key, algorithms=["RS256"], issuer=ISSUER, audience=audience, options=options)
    except jwt.InvalidIssuerError:
        return "issuer"
    except jwt.InvalidAudienceError:
        return "audience"
    except jwt.MissingRequiredClaimError:
        return "missing_claim"
    except jwt.PyJWTError:
        return "malformed"
    return None


@pytest.mark.parametrize("audience", [None, AUDIENCE])
@pytest.mark.parametrize(("name", "change"), REGISTERED_VARIANTS, ids=[v[0] for v in REGISTERED_VARIANTS])
def test_registered_claims_are_judged_as_pyjwt_judges_them(
        world: World, audience: str | None, name: str,
        change: Callable[[dict[str, Any]], dict[str, Any]]) -> None:
    """Our claim checks replaced PyJWT's claim layer on the hot path: wherever PyJWT refuses, we
    refuse for the same reason; where it accepts, only our protocol rules may still refuse."""
    base = unverified_claims(world.audience_token.grant_token)
    kid, key = world.ledger.signing_key()
    # PyJWS signs any payload bytes (PyJWT's encode would refuse e.g. a numeric iss)
    token = PyJWS().encode(json.dumps(change(base)).encode(), key, "RS256",
                           headers={"kid": kid, "typ": "at+jwt"})
    expected = _pyjwt_reason(token, key.public_key(), audience)
    verifier = Verifier(world.jwks, issuer=ISSUER, audience=audience)
    try:
        verifier.verify(token)
        ours = None
    except TokenInvalid as exc:
        ours = exc.reason
    if expected is not None:
        assert ours == expected, name
    elif ours is not None:  # PyJWT accepts; the protocol's own rules may still refuse
        assert ours in {"missing_claim", "malformed", "claims_disagree"}, (name, ours)
