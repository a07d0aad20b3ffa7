"""Issuer signing keys, JWKS, rotation, passphrase protection and agent (DID) keys.

PROTOCOL §2: RS256 keys whose kid is the RFC 7638 thumbprint, persisted in the
ledger; rotation keeps retired public keys in the JWKS until their last token
expires; agent keys never appear in the issuer JWKS.
"""

from __future__ import annotations

import os
import stat
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ed25519
from jwt.algorithms import OKPAlgorithm

from grantex_local import (
    ExchangeTokenResponse,
    Grantex,
    InvalidInput,
    Ledger,
    PassphraseError,
    TokenInvalid,
    Verifier,
    verify_grant_token,
)
from grantex_local import keys as keys_mod

ISSUER = "https://keys.grantex-local.test"
SCOPES = ["files:read", "calendar:read"]
PRIVATE_MEMBERS = ("d", "p", "q", "dp", "dq", "qi", "oth", "k")
PASS_ENV = "GRANTEX_LOCAL_PASSPHRASE"

# RFC 7638 §3.1
RFC7638_N = (
    "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjB"
    "ZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8"
    "KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_"
    "xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw"
)
RFC7638_THUMBPRINT = "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs"


class MovableClock:
    """A clock tests can move forward."""

    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture(autouse=True)
def _no_ambient_passphrase(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(PASS_ENV, raising=False)


def open_client(path: Path, **kwargs: Any) -> Grantex:
    ledger = Ledger(path, **kwargs)
    if ledger.issuer != ISSUER:
        ledger.set_setting("issuer", ISSUER)
    return Grantex(ledger)


def mint(client: Grantex, agent_id: str, *, expires_in: str | None = None) -> ExchangeTokenResponse:
    auth = client.authorize(agent_id=agent_id, user_id="user_bob", scopes=SCOPES, expires_in=expires_in)
    assert auth.code is not None
    return client.tokens.exchange(code=auth.code, agent_id=agent_id)


def kid_of(token: str) -> str:
    return jwt.get_unverified_header(token)["kid"]


def jwks_kids(client: Grantex) -> set[str]:
    return {k["kid"] for k in client.jwks()["keys"]}


@pytest.fixture
def client(tmp_path: Path) -> Iterator[Grantex]:
    gx = open_client(tmp_path / "keys.db")
    yield gx
    gx.close()


# ── the JWKS and the kid ────────────────────────────────────────────────────


def test_jwks_shape(client: Grantex) -> None:
    client.agents.register(name="has-its-own-key", scopes=SCOPES)
    client.keys.rotate()  # a retired key without tokens, plus the active one
    agent = client.agents.register(name="another", scopes=SCOPES)
    mint(client, agent.id)
    jwks = client.jwks()
    assert set(jwks) == {"keys"}
    assert jwks["keys"], "the JWKS has at least the active key"
    for jwk in jwks["keys"]:
        assert jwk["kty"] == "RSA"
        assert set(jwk) == {"kty", "n", "e", "alg", "use", "kid"}
        assert (jwk["alg"], jwk["use"], jwk["e"]) == ("RS256", "sig", "AQAB")
        assert not any(m in jwk for m in PRIVATE_MEMBERS)
        assert jwk["kid"] == keys_mod.thumbprint(jwk)
        # RSA-2048 or larger (PROTOCOL §2).
        assert jwt.algorithms.RSAAlgorithm.from_jwk(jwk).key_size >= 2048


def test_active_kid_is_the_thumbprint_of_the_signing_key(client: Grantex) -> None:
    kid, private_key = client.ledger.signing_key()
    public = jwt.algorithms.RSAAlgorithm.to_jwk(private_key.public_key(), as_dict=True)
    assert kid == keys_mod.thumbprint(public)
    assert kid in jwks_kids(client)


@pytest.mark.parametrize("extra", [{}, {"alg": "RS256", "kid": "2011-04-29"}, {"use": "sig", "x5c": []}])
def test_thumbprint_rfc7638_example(extra: dict[str, Any]) -> None:
    jwk = {"kty": "RSA", "n": RFC7638_N, "e": "AQAB", **extra}
    assert keys_mod.thumbprint(jwk) == RFC7638_THUMBPRINT
    # member order in the input does not matter
    assert keys_mod.thumbprint(dict(reversed(list(jwk.items())))) == RFC7638_THUMBPRINT


def test_thumbprint_changes_with_the_key_and_refuses_incomplete_jwks() -> None:
    other = {"kty": "RSA", "n": RFC7638_N[:-1] + "A", "e": "AQAB"}
    assert keys_mod.thumbprint(other) != RFC7638_THUMBPRINT
    with pytest.raises(InvalidInput):
        keys_mod.thumbprint({"kty": "RSA", "n": RFC7638_N})


def test_key_persists_across_reopening(tmp_path: Path) -> None:
    path = tmp_path / "persist.db"
    first = open_client(path)
    kid = first.ledger.signing_key()[0]
    jwks = first.jwks()
    agent = first.agents.register(name="persistent", scopes=SCOPES)
    token = mint(first, agent.id).grant_token
    first.close()

    again = open_client(path)
    try:
        assert again.ledger.signing_key()[0] == kid
        assert again.jwks() == jwks
        assert again.tokens.verify(token).valid is True
        assert kid_of(mint(again, agent.id).grant_token) == kid
    finally:
        again.close()


# ── rotation ────────────────────────────────────────────────────────────────


def test_rotation_keeps_old_tokens_verifying_until_they_expire(tmp_path: Path) -> None:
    clock = MovableClock()
    client = open_client(tmp_path / "rotate.db", clock=clock)
    agent = client.agents.register(name="rotating", scopes=SCOPES)
    short = mint(client, agent.id, expires_in="10m").grant_token
    long = mint(client, agent.id, expires_in="1h").grant_token
    old_kid = kid_of(short)
    assert kid_of(long) == old_kid

    result = client.keys.rotate()
    new_kid = result["kid"]
    assert new_kid != old_kid
    assert old_kid in result["retiredKids"]
    assert client.ledger.signing_key()[0] == new_kid
    fresh = mint(client, agent.id, expires_in="1h").grant_token
    assert kid_of(fresh) == new_kid
    assert jwks_kids(client) == {old_kid, new_kid}

    def offline_ok(token: str) -> None:
        verifier = Verifier(client.jwks(), issuer=ISSUER, clock=clock)
        assert verifier.verify(token).scopes == tuple(SCOPES)

    for token in (short, long, fresh):
        offline_ok(token)
        assert client.tokens.verify(token).valid is True
    status = {k["kid"]: k["status"] for k in client.keys.list()}
    assert status == {old_kid: "retired (still verifying)", new_kid: "active"}

    clock.advance(30 * 60)  # the 10-minute token is gone, the 1-hour one is not
    assert jwks_kids(client) == {old_kid, new_kid}
    offline_ok(long)

    clock.advance(60 * 60)  # every token of the old key has expired
    assert jwks_kids(client) == {new_kid}
    assert {k["kid"]: k["status"] for k in client.keys.list()}[old_kid] == "retired"
    # The ledger's own verifier still knows the key: an expired token fails as expired.
    answer = client.tokens.verify(long)
    assert (answer.valid, answer.reason) == (False, "expired")
    with pytest.raises(TokenInvalid) as exc:
        Verifier(client.jwks(), issuer=ISSUER, clock=clock).verify(long)
    assert exc.value.reason == "unknown_kid"  # gone from the public JWKS
    client.close()


def test_rotate_signing_key_function(client: Grantex) -> None:
    before = client.ledger.signing_key()[0]
    result = keys_mod.rotate_signing_key(client.ledger)
    assert result["kid"] != before and result["retiredKids"] == [before]
    assert client.ledger.signing_key()[0] == result["kid"]
    assert [k["status"] for k in client.keys.list()].count("active") == 1


def test_second_ledger_object_sees_a_rotation(tmp_path: Path) -> None:
    """Two Ledger objects on one file behave like two processes."""
    path = tmp_path / "shared.db"
    one = open_client(path)
    two = Grantex(Ledger(path))
    try:
        agent = one.agents.register(name="shared", scopes=SCOPES)
        before = mint(one, agent.id).grant_token
        assert two.tokens.verify(before).valid is True  # two now holds a verifier with the old key

        new_kid = one.keys.rotate()["kid"]
        after = mint(one, agent.id).grant_token
        assert kid_of(after) == new_kid
        assert two.tokens.verify(after).valid is True  # reload on unknown kid
        assert two.tokens.verify(before).valid is True
        # An outside verifier fed with the JWKS read through the second object.
        assert verify_grant_token(after, jwks=two.jwks(), issuer=ISSUER).grant_id
        # The second object signs with the key the first one rotated to.
        by_two = mint(two, agent.id).grant_token
        assert kid_of(by_two) == new_kid
        assert one.tokens.verify(by_two).valid is True
    finally:
        one.close()
        two.close()


def test_second_ledger_object_offline_verify_after_rotation(tmp_path: Path) -> None:
    """The facade's verify_offline (ledger keys, no ledger state) must not be stuck on old keys."""
    path = tmp_path / "shared-offline.db"
    one = open_client(path)
    two = Grantex(Ledger(path))
    try:
        agent = one.agents.register(name="shared", scopes=SCOPES)
        two.tokens.verify_offline(mint(one, agent.id).grant_token)  # caches the old key set
        one.keys.rotate()
        after = mint(one, agent.id).grant_token
        assert two.tokens.verify_offline(after).scopes == tuple(SCOPES)
    finally:
        one.close()
        two.close()


# ── passphrase ──────────────────────────────────────────────────────────────


def _stored_private_pems(ledger: Ledger) -> list[tuple[bytes, int]]:
    rows = ledger.query("SELECT private_pem, encrypted FROM signing_keys")
    return [(bytes(r["private_pem"]), r["encrypted"]) for r in rows]


@pytest.fixture
def encrypted_ledger(tmp_path: Path) -> tuple[Path, str]:
    """A passphrase-protected ledger with one agent; returns (path, agent id)."""
    path = tmp_path / "secret.db"
    client = open_client(path, passphrase="s3cret")
    agent = client.agents.register(name="guarded", scopes=SCOPES)
    client.close()
    return path, agent.id


def test_passphrase_encrypts_private_keys(encrypted_ledger: tuple[Path, str]) -> None:
    path, agent_id = encrypted_ledger
    client = open_client(path, passphrase="s3cret")
    try:
        pems = _stored_private_pems(client.ledger)
        assert pems and all(b"ENCRYPTED" in pem and flag == 1 for pem, flag in pems)
        agent_pems = client.ledger.query("SELECT private_pem FROM agent_keys WHERE agent_id = ?",
                                         (agent_id,))
        assert all(b"ENCRYPTED" in bytes(r["private_pem"]) for r in agent_pems)
        token = mint(client, agent_id)
        assert client.tokens.verify(token.grant_token).valid is True
    finally:
        client.close()


@pytest.mark.parametrize("passphrase", [None, "wrong", "S3CRET"])
def test_signing_needs_the_right_passphrase(encrypted_ledger: tuple[Path, str],
                                            passphrase: str | None) -> None:
    path, agent_id = encrypted_ledger
    good = open_client(path, passphrase="s3cret")
    issued = mint(good, agent_id).grant_token
    good.close()

    client = open_client(path, passphrase=passphrase)  # opening needs no private key
    try:
        auth = client.authorize(agent_id=agent_id, user_id="user_bob", scopes=SCOPES)
        assert auth.code is not None
        with pytest.raises(PassphraseError):
            client.tokens.exchange(code=auth.code, agent_id=agent_id)
        # Public keys only: verification works without the passphrase.
        assert client.tokens.verify(issued).valid is True
        assert verify_grant_token(issued, jwks=client.jwks(), issuer=ISSUER).grant_id
    finally:
        client.close()

    # The failed exchange rolled back: the code still works with the right passphrase.
    again = open_client(path, passphrase="s3cret")
    try:
        token = again.tokens.exchange(code=auth.code, agent_id=agent_id)
        assert again.tokens.verify(token.grant_token).valid is True
    finally:
        again.close()


def test_passphrase_from_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "env.db"
    monkeypatch.setenv(PASS_ENV, "from-env")
    client = open_client(path)
    assert all(b"ENCRYPTED" in pem for pem, _ in _stored_private_pems(client.ledger))
    agent = client.agents.register(name="env", scopes=SCOPES)
    mint(client, agent.id)
    client.close()

    monkeypatch.delenv(PASS_ENV)
    without = open_client(path)
    auth = without.authorize(agent_id=agent.id, user_id="user_bob", scopes=SCOPES)
    with pytest.raises(PassphraseError):
        without.tokens.exchange(code=auth.code, agent_id=agent.id)
    without.close()

    monkeypatch.setenv(PASS_ENV, "from-env")
    with_env = open_client(path)
    assert with_env.tokens.verify(with_env.tokens.exchange(code=auth.code, agent_id=agent.id)
                                  .grant_token).valid is True
    with_env.close()


@pytest.mark.parametrize("passphrase", [None, "wrong"])
def test_rotation_never_weakens_or_forks_key_encryption(encrypted_ledger: tuple[Path, str],
                                                        passphrase: str | None) -> None:
    """A process without the (right) passphrase must not add a signing key the owner cannot use.

    Either the rotation is refused with PassphraseError, or the new key is
    encrypted under the ledger's passphrase; a plaintext private key, or one
    encrypted under another passphrase, is a silent downgrade.
    """
    path, agent_id = encrypted_ledger
    stranger = open_client(path, passphrase=passphrase)
    try:
        keys_mod.rotate_signing_key(stranger.ledger)
    except PassphraseError:
        pass
    finally:
        stranger.close()

    owner = open_client(path, passphrase="s3cret")
    try:
        pems = _stored_private_pems(owner.ledger)
        assert all(b"ENCRYPTED" in pem and flag == 1 for pem, flag in pems), "a plaintext key was stored"
        token = mint(owner, agent_id)  # the owner can still sign
        assert owner.tokens.verify(token.grant_token).valid is True
    finally:
        owner.close()


# ── file permissions ────────────────────────────────────────────────────────


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.mark.parametrize("pre_existing", [False, True], ids=["new-file", "pre-existing-empty-file"])
def test_ledger_files_are_private(tmp_path: Path, pre_existing: bool) -> None:
    path = tmp_path / "private.db"
    old_umask = os.umask(0)  # the library must not rely on the umask
    try:
        if pre_existing:
            path.touch(mode=0o644)
            assert _mode(path) == 0o644
        client = open_client(path)
        try:
            client.agents.register(name="writer", scopes=SCOPES)  # a write: -wal and -shm exist now
            wal, shm = Path(f"{path}-wal"), Path(f"{path}-shm")
            assert wal.exists() and shm.exists()
            assert {p.name: _mode(p) for p in (path, wal, shm)} == {
                p.name: 0o600 for p in (path, wal, shm)}
        finally:
            client.close()
    finally:
        os.umask(old_umask)


# ── agent keys and DID documents ────────────────────────────────────────────


def test_agent_did_document(client: Grantex) -> None:
    agent = client.agents.register(name="did-agent", scopes=SCOPES)
    doc = client.agents.did_document(agent.id)
    assert doc["id"] == f"did:grantex:{agent.id}" == agent.did
    methods = doc["verificationMethod"]
    assert len(methods) == 1
    method = methods[0]
    assert method["type"] == "JsonWebKey2020"
    assert method["controller"] == agent.did
    assert method["id"].startswith(agent.did + "#")
    jwk = method["publicKeyJwk"]
    assert (jwk["kty"], jwk["crv"]) == ("OKP", "Ed25519")
    assert not any(m in jwk for m in PRIVATE_MEMBERS)
    OKPAlgorithm.from_jwk(jwk)  # a real Ed25519 public key
    assert agent.public_jwk == jwk
    assert agent.key_thumbprint == keys_mod.thumbprint(jwk)
    assert doc["authentication"] == [method["id"]] == doc["assertionMethod"]


def test_agent_keys_never_in_issuer_jwks(client: Grantex) -> None:
    agents = [client.agents.register(name=f"agent-{i}", scopes=SCOPES) for i in range(3)]
    mint(client, agents[0].id)
    jwks = client.jwks()
    published = {k["kid"] for k in jwks["keys"]} | {k.get("n") for k in jwks["keys"]}
    for agent in agents:
        assert agent.public_jwk is not None
        assert agent.key_thumbprint not in published
        assert all(k["kty"] == "RSA" for k in jwks["keys"])
        assert agent.public_jwk["x"] not in str(jwks)


def test_agent_key_rotation_keeps_the_did(client: Grantex) -> None:
    agent = client.agents.register(name="rotator", scopes=SCOPES)
    rotated = client.agents.rotate_key(agent.id)
    assert rotated.did == agent.did and rotated.id == agent.id
    assert rotated.public_jwk != agent.public_jwk
    assert rotated.key_thumbprint != agent.key_thumbprint
    doc = client.agents.did_document(agent.id)
    assert doc["id"] == agent.did
    assert [m["publicKeyJwk"] for m in doc["verificationMethod"]] == [rotated.public_jwk]
    # Tokens keep naming the same DID after the agent's key changed.
    token = mint(client, agent.id)
    assert client.tokens.verify(token.grant_token).agent == agent.did


def _own_ed25519() -> tuple[ed25519.Ed25519PrivateKey, dict[str, Any], dict[str, Any]]:
    private = ed25519.Ed25519PrivateKey.generate()
    public_jwk = OKPAlgorithm.to_jwk(private.public_key(), as_dict=True)
    private_jwk = OKPAlgorithm.to_jwk(private, as_dict=True)
    return private, public_jwk, private_jwk


def test_register_with_own_public_jwk(client: Grantex) -> None:
    _, public_jwk, _ = _own_ed25519()
    agent = client.agents.register(name="self-keyed", scopes=SCOPES, public_jwk=public_jwk)
    assert agent.public_jwk == {"kty": "OKP", "crv": "Ed25519", "x": public_jwk["x"]}
    assert agent.key_thumbprint == keys_mod.thumbprint(public_jwk)
    doc = client.agents.did_document(agent.id)
    assert doc["verificationMethod"][0]["publicKeyJwk"]["x"] == public_jwk["x"]
    stored = client.ledger.query("SELECT private_pem FROM agent_keys WHERE agent_id = ?", (agent.id,))
    assert [r["private_pem"] for r in stored] == [None]  # the agent keeps its private half

    _, next_public, _ = _own_ed25519()
    rotated = client.agents.rotate_key(agent.id, public_jwk=next_public)
    assert rotated.public_jwk is not None and rotated.public_jwk["x"] == next_public["x"]


def test_private_jwk_is_refused(client: Grantex) -> None:
    _, _, private_jwk = _own_ed25519()
    assert "d" in private_jwk
    with pytest.raises(InvalidInput):
        client.agents.register(name="leaky", scopes=SCOPES, public_jwk=private_jwk)
    agent = client.agents.register(name="fine", scopes=SCOPES)
    with pytest.raises(InvalidInput):
        client.agents.rotate_key(agent.id, public_jwk=private_jwk)
    assert [a.name for a in client.agents.list().agents] == ["fine"]
