"""The speed paths of issue 18 keep every rule of the slow ones.

- a token whose header a verifier has already accepted (the fast path: payload and signature
  decoded and checked without PyJWT's full decode) gets the same verdict, reason and message as
  from a fresh verifier, where PyJWT checks it whole;
- a header is remembered only once PyJWT accepted a token carrying it, signature included;
- ``verify_grant_token`` with a dict JWKS serialises it once, yet follows a dict edited in place;
- the payload parser agrees with ``json.loads`` on any bytes;
- the signature cache stays bounded on a stream of distinct tokens;
- a token that is not ASCII is refused, never raised through as a UnicodeEncodeError.
"""

from __future__ import annotations

import base64
import copy
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jwt
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from jwt.api_jws import PyJWS

from grantex_local import Grantex, Ledger, TokenInvalid, VerifiedGrant, Verifier, verify_grant_token
from grantex_local import verify as verify_mod

ISSUER = "https://issuer.speed.test"
SCOPES = ["calendar:read", "email:read"]


class World:
    def __init__(self, path: Path) -> None:
        self.ledger = Ledger(path)
        self.ledger.set_setting("issuer", ISSUER)
        self.client = Grantex(self.ledger)
        agent = self.client.agents.register(name="speed", scopes=SCOPES)
        child = self.client.agents.register(name="child", scopes=SCOPES)
        self.tokens: list[str] = []
        for i in range(6):
            auth = self.client.authorize(agent_id=agent.id, user_id=f"user_{i}", scopes=SCOPES)
            assert auth.code is not None
            root = self.client.tokens.exchange(code=auth.code, agent_id=agent.id).grant_token
            self.tokens.append(root)
            self.tokens.append(self.client.grants.delegate(
                parent_grant_token=root, sub_agent_id=child.id, scopes=["calendar:read"]).grant_token)
        self.jwks: dict[str, Any] = self.client.jwks()

    def warm(self) -> Verifier:
        """A verifier that has accepted the ledger's header (the next tokens take the fast path)."""
        verifier = Verifier(self.jwks, issuer=ISSUER)
        verifier.verify(self.tokens[0])
        assert verifier._header_keys, "the header was not remembered: no fast path to test"
        return verifier


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    w = World(tmp_path_factory.mktemp("speed") / "speed.db")
    yield w
    w.ledger.close()


def _verdict(verifier: Verifier, token: Any) -> tuple[str, object]:
    try:
        return "ok", verifier.verify(token)
    except TokenInvalid as exc:
        return type(exc).__name__, (exc.reason, exc.message)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _resigned(world: World, payload: bytes) -> str:
    kid, key = world.ledger.signing_key()
    return PyJWS().encode(payload, key, "RS256", headers={"kid": kid, "typ": "at+jwt"})


def _variants(world: World) -> list[str]:
    """Tokens with the ledger's genuine header and something wrong (or not) after it."""
    token = world.tokens[3]
    head, payload, signature = token.split(".")
    claims = jwt.decode(token, options={"verify_signature": False})
    other_sig = world.tokens[4].split(".")[2]
    return [
        token,
        f"{head}.{payload}.{other_sig}",                       # someone else's signature
        f"{head}.{world.tokens[4].split('.')[1]}.{signature}",  # someone else's payload
        f"{head}.{payload[:-1]}.{signature}",                  # payload cut short
        f"{head}.{payload}=.{signature}",                      # stray padding
        f"{head}.{payload}.{signature}==",
        f"{head}.{payload}.{signature[:-1]}",
        f"{head}.{payload}.",                                  # no signature
        f"{head}..{signature}",                                # no payload
        f"{head}.{payload.replace('-', '+').replace('_', '/')}.{signature}",  # not urlsafe
        f"{head}.{payload}.{signature[:-1]}{'B' if signature[-1] == 'A' else 'A'}",
        f"{head}.{_b64(b'not json')}.{signature}",
        _resigned(world, b"not json"),
        _resigned(world, b"[1, 2]"),
        _resigned(world, json.dumps(claims).encode() + b" \n"),       # JSON whitespace after
        _resigned(world, json.dumps(claims).encode() + b" x"),        # extra data after
        _resigned(world, b"\xef\xbb\xbf" + json.dumps(claims).encode()),  # UTF-8 BOM
        _resigned(world, json.dumps(claims).encode("utf-16")),
        _resigned(world, json.dumps({**claims, "iss": "https://else.test"}).encode()),
        _resigned(world, json.dumps({**claims, "agt": "did:grantex:someone"}).encode()),
        _resigned(world, json.dumps({k: v for k, v in claims.items() if k != "jti"}).encode()),
    ]


def test_the_fast_path_gives_the_full_paths_verdicts(world: World) -> None:
    warm = world.warm()
    verdicts = set()
    for token in _variants(world):
        fresh = Verifier(world.jwks, issuer=ISSUER)
        expected = _verdict(fresh, token)
        assert _verdict(warm, token) == expected, token
        verdicts.add(expected[0] if expected[0] == "ok" else expected[1][0])  # type: ignore[index]
    # the variants really reach the different rules (else this test proves little)
    assert {"ok", "signature", "malformed", "issuer", "claims_disagree", "missing_claim"} <= verdicts


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_any_edit_after_the_header_gets_the_full_paths_verdict(world: World, data: st.DataObject) -> None:
    """Random edits of the payload and signature segments: the fast path and PyJWT's agree."""
    token = data.draw(st.sampled_from(world.tokens))
    head, rest = token.split(".", 1)
    chars = list(rest)
    for _ in range(data.draw(st.integers(1, 3))):
        at = data.draw(st.integers(0, len(chars) - 1))
        chars[at] = data.draw(st.sampled_from(
            "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_=+/. "))
    edited = f"{head}.{''.join(chars)}"
    fresh = Verifier(world.jwks, issuer=ISSUER)
    assert _verdict(world.warm(), edited) == _verdict(fresh, edited)


def test_a_header_is_remembered_only_with_a_valid_signature(world: World) -> None:
    token = world.tokens[1]
    head, payload, signature = token.split(".")
    header = json.loads(base64.urlsafe_b64decode(head + "=" * (-len(head) % 4)))
    other_head = _b64(json.dumps({**header, "x": 1}).encode())  # another spelling, same key
    verifier = Verifier(world.jwks, issuer=ISSUER)
    with pytest.raises(TokenInvalid) as exc:
        verifier.verify(f"{other_head}.{payload}.{signature}")
    assert exc.value.reason == "signature"
    assert other_head not in verifier._header_keys
    # a header PyJWT refuses (an unsupported critical extension) is never remembered either
    crit_head = _b64(json.dumps({**header, "crit": ["exp"], "exp": 1}).encode())
    kid, key = world.ledger.signing_key()
    crit = PyJWS().encode(payload.encode(), key, "RS256",
                          headers={"kid": kid, "typ": "at+jwt", "crit": ["exp"], "exp": 1})
    assert crit.split(".")[0] != head
    with pytest.raises(TokenInvalid) as exc:
        verifier.verify(crit)
    assert exc.value.reason == "malformed"
    assert crit_head not in verifier._header_keys and crit.split(".")[0] not in verifier._header_keys
    assert verifier.verify(token).grant_id  # the genuine one is accepted, and then remembered
    assert head in verifier._header_keys


@pytest.mark.parametrize("bad", ["\ud800", "é", "\x00", "\u2024"])
@pytest.mark.parametrize("where", [0, 1, 2])
def test_a_token_that_is_not_ascii_is_refused(world: World, bad: str, where: int) -> None:
    parts = world.tokens[2].split(".")
    parts[where] += bad
    token = ".".join(parts)
    for verifier in (Verifier(world.jwks, issuer=ISSUER), world.warm()):
        with pytest.raises(TokenInvalid) as exc:
            verifier.verify(token)
        assert exc.value.reason == "malformed"
    answer = world.client.tokens.verify(token)
    assert answer.valid is False and answer.reason == "malformed"


def test_the_jwks_dict_is_serialised_once(world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    jwks = copy.deepcopy(world.jwks)
    calls = []
    real_dumps = json.dumps

    def counting(*args: Any, **kwargs: Any) -> str:
        calls.append(args[0] is jwks)
        return real_dumps(*args, **kwargs)

    monkeypatch.setattr(verify_mod.json, "dumps", counting)
    for token in world.tokens * 3:
        assert verify_grant_token(token, jwks=jwks, issuer=ISSUER).issuer == ISSUER
    assert calls == [True]


def _other_world_jwks(tmp_path: Path) -> tuple[dict[str, Any], str]:
    other = World(tmp_path / "other.db")
    try:
        return other.jwks, other.tokens[0]
    finally:
        other.ledger.close()


def test_a_jwks_dict_edited_in_place_is_read_again(world: World, tmp_path: Path) -> None:
    other_jwks, other_token = _other_world_jwks(tmp_path)
    ours = world.tokens[0]
    jwks = copy.deepcopy(world.jwks)
    assert verify_grant_token(ours, jwks=jwks, issuer=ISSUER)
    with pytest.raises(TokenInvalid):
        verify_grant_token(other_token, jwks=jwks, issuer=ISSUER)

    jwks["keys"].append(copy.deepcopy(other_jwks["keys"][0]))  # a key added
    assert verify_grant_token(other_token, jwks=jwks, issuer=ISSUER)
    del jwks["keys"][1]  # and removed again
    with pytest.raises(TokenInvalid) as exc:
        verify_grant_token(other_token, jwks=jwks, issuer=ISSUER)
    assert exc.value.reason == "unknown_kid"

    jwks["keys"][0]["n"] = other_jwks["keys"][0]["n"]  # a field rewritten: same kid, other key
    with pytest.raises(TokenInvalid) as exc:
        verify_grant_token(ours, jwks=jwks, issuer=ISSUER)
    assert exc.value.reason == "signature"
    jwks["keys"][0]["n"] = world.jwks["keys"][0]["n"]
    assert verify_grant_token(ours, jwks=jwks, issuer=ISSUER)

    jwks["keys"][0] = copy.deepcopy(other_jwks["keys"][0])  # a key replaced
    with pytest.raises(TokenInvalid):
        verify_grant_token(ours, jwks=jwks, issuer=ISSUER)
    jwks["keys"] = copy.deepcopy(world.jwks["keys"])  # the list replaced
    assert verify_grant_token(ours, jwks=jwks, issuer=ISSUER)
    jwks["keys"][0]["use"] = "enc"  # the only key is no longer a signing key
    with pytest.raises(TokenInvalid) as exc:
        verify_grant_token(ours, jwks=jwks, issuer=ISSUER)
    assert exc.value.reason == "unknown_kid"


def test_a_jwks_that_is_not_json_data_is_still_refused(world: World) -> None:
    jwks = {"keys": [{**world.jwks["keys"][0], "x": object()}]}
    for _ in range(2):
        with pytest.raises(TokenInvalid) as exc:
            verify_grant_token(world.tokens[0], jwks=jwks, issuer=ISSUER)
        assert exc.value.reason == "jwks"


def _loads_outcome(parse: Any, payload: bytes) -> tuple[str, Any]:
    try:
        return "ok", parse(payload)
    except (ValueError, RecursionError):
        return "error", None


json_payloads = st.one_of(
    st.binary(max_size=40),
    st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=8),
                 lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner,
                                                                              max_size=3),
                 max_leaves=8).map(lambda v: json.dumps(v).encode()),
    st.tuples(st.dictionaries(st.text(max_size=5), st.integers(), max_size=3),
              st.sampled_from(["", " ", "\n\t\r ", " x", "{}", "\x00", "\u00a0"]),
              st.sampled_from(["utf-8", "utf-16-le", "utf-16", "utf-8-sig", "utf-32"]))
    .map(lambda t: (json.dumps(t[0]) + t[1]).encode(t[2])),
    st.binary(max_size=20).map(lambda raw: b"{" + raw),
)


@settings(max_examples=1500, deadline=None)
@given(json_payloads)
def test_the_payload_parser_agrees_with_json_loads(payload: bytes) -> None:
    assert _loads_outcome(verify_mod._json_object, payload) == _loads_outcome(json.loads, payload)


@pytest.mark.parametrize("size", [0, 1, 4, 7])
def test_the_signature_cache_stays_bounded(world: World, size: int) -> None:
    verifier = Verifier(world.jwks, issuer=ISSUER, cache_size=size)
    for _ in range(3):
        for token in world.tokens:
            assert isinstance(verifier.verify(token), VerifiedGrant)
            assert len(verifier._cache) <= max(size, 1)
    if size >= 4:  # the latest tokens are still remembered
        assert world.tokens[-1] in verifier._cache
