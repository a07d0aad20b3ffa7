"""The fast paths of issue 7 keep every rule of the slow ones.

- the regex segment decoder must agree with PyJWT's own on any input;
- remembered headers, keys and issuer must follow changes made through another
  connection (another process) and transactions that rolled back;
- a token whose signature is computed beside the transaction is only ever
  handed out for a transaction that committed.
"""

from __future__ import annotations

import base64
import json
import sqlite3
from pathlib import Path

import jwt
import pytest
from helpers import grant_for
from hypothesis import given, settings
from hypothesis import strategies as st
from jwt.api_jws import PyJWS

from grantex_local import Grantex, Ledger, TokenInvalid
from grantex_local import verify as verify_mod
from grantex_local.keys import rotate_signing_key

SCOPES = ["calendar:read"]
ALPHABET = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_="


def _outcome(decode: object, segment: bytes) -> tuple[str, object]:
    try:
        return "ok", decode(segment, "payload")  # type: ignore[operator]
    except jwt.DecodeError as exc:
        return "error", str(exc)


segments = st.one_of(
    st.binary(max_size=64),
    st.lists(st.sampled_from(list(ALPHABET)), max_size=64).map(bytes),
    st.binary(max_size=48).map(lambda raw: base64.urlsafe_b64encode(raw)),
    st.binary(max_size=48).map(lambda raw: base64.urlsafe_b64encode(raw).rstrip(b"=")),
)


@settings(max_examples=2000, deadline=None)
@given(segments)
def test_segment_decoder_agrees_with_pyjwt(segment: bytes) -> None:
    ours = _outcome(verify_mod._JWS._decode_base64url_segment, segment)
    theirs = _outcome(PyJWS._decode_base64url_segment, segment)
    assert ours == theirs


def test_the_override_still_overrides_a_pyjwt_hook(gx: Grantex, monkeypatch: pytest.MonkeyPatch) -> None:
    """Fails if PyJWT renames the hook (the fast path would silently be gone)."""
    assert "_decode_base64url_segment" in vars(PyJWS)
    calls: list[str] = []
    original = verify_mod._JWS._decode_base64url_segment

    def counting(segment: bytes, name: str) -> bytes:
        calls.append(name)
        return original(segment, name)

    monkeypatch.setattr(verify_mod._JWS, "_decode_base64url_segment", staticmethod(counting))
    token = grant_for(gx, SCOPES).grant_token
    gx.tokens.verify_offline(token)
    assert {"header", "payload", "crypto"} <= set(calls)


def test_a_remembered_header_does_not_admit_other_headers(gx: Grantex) -> None:
    token = grant_for(gx, SCOPES).grant_token
    gx.tokens.verify_offline(token)  # its header segment is now remembered
    head, payload, signature = token.split(".")
    header = json.loads(base64.urlsafe_b64decode(head + "=" * (-len(head) % 4)))
    for change in ({"alg": "none"}, {"alg": "HS256"}, {"typ": "JWT"}, {"kid": "someone-else"}):
        forged_head = base64.urlsafe_b64encode(json.dumps({**header, **change}).encode()).rstrip(b"=")
        forged = f"{forged_head.decode()}.{payload}.{signature}"
        with pytest.raises(TokenInvalid):
            gx.tokens.verify_offline(forged)
    gx.ledger.verifier().clear_cache()
    assert gx.tokens.verify_offline(token).grant_id  # the genuine one still verifies, from scratch


def test_an_issuer_changed_by_another_process_is_seen_at_once(tmp_path: Path) -> None:
    path = tmp_path / "shared.db"
    one, two = Grantex(Ledger(path)), Grantex(Ledger(path))
    try:
        token = grant_for(one, SCOPES).grant_token
        assert two.tokens.verify_offline(token).grant_id  # two caches verifier, key and token
        one.ledger.set_setting("issuer", "http://127.0.0.1:9999")
        # a token of the new issuer is accepted at once; the earlier one, as a past issuer's, too
        fresh = grant_for(one, SCOPES, agent_name="after").grant_token
        assert two.tokens.verify(fresh).valid is True
        assert two.tokens.verify(token).valid is True
        raw = sqlite3.connect(path)  # another process drops the past issuer: seen at once too
        with raw:
            raw.execute("DELETE FROM settings WHERE key = 'past_issuers'")
        raw.close()
        with pytest.raises(TokenInvalid) as exc:
            two.tokens.verify_offline(token)
        assert exc.value.reason == "issuer"
        assert two.tokens.verify(token).valid is False
        assert two.tokens.verify(fresh).valid is True
    finally:
        one.close()
        two.close()


def test_a_rotation_that_rolled_back_is_not_used_to_sign(gx: Grantex) -> None:
    kid = gx.ledger.signing_key()[0]
    with pytest.raises(RuntimeError), gx.ledger.write():
        assert rotate_signing_key(gx.ledger)["kid"] != kid
        assert gx.ledger.signing_key()[0] != kid  # the new key is in use inside the transaction
        raise RuntimeError("roll back")
    assert gx.ledger.signing_key()[0] == kid
    token = grant_for(gx, SCOPES).grant_token
    assert jwt.get_unverified_header(token)["kid"] == kid
    assert gx.tokens.verify(token).valid is True


def test_a_rolled_back_issuance_leaves_no_token(gx: Grantex) -> None:
    agent = gx.agents.register(name="child", scopes=SCOPES)
    parent = grant_for(gx, SCOPES, agent_name="parent").grant_token
    before = gx.ledger.query("SELECT count(*) FROM tokens")[0][0]
    with pytest.raises(RuntimeError), gx.ledger.write():
        gx.grants.delegate(parent_grant_token=parent, sub_agent_id=agent.id, scopes=SCOPES)
        raise RuntimeError("roll back")
    assert gx.ledger.query("SELECT count(*) FROM tokens")[0][0] == before
    issued = gx.grants.delegate(parent_grant_token=parent, sub_agent_id=agent.id, scopes=SCOPES)
    assert gx.tokens.verify(issued.grant_token).valid is True


@pytest.mark.parametrize("suspend_depth", [0, 1, 2, 3])
def test_online_verify_reads_every_link_of_a_deep_chain(gx: Grantex, suspend_depth: int) -> None:
    """Root, delegated once, twice, three times: a suspended agent anywhere above the token
    (read by the first statement for depth 0 and 1, by the second beyond) fails it."""
    gx.ledger.set_setting("max_delegation_depth", "4")
    root = grant_for(gx, SCOPES, agent_name="depth-0")
    agents = [gx.agents.get(gx.grants.get(root.grant_id).agent_id)]
    tokens = [root.grant_token]
    for depth in (1, 2, 3):
        agent = gx.agents.register(name=f"depth-{depth}", scopes=SCOPES)
        tokens.append(gx.grants.delegate(parent_grant_token=tokens[-1], sub_agent_id=agent.id,
                                         scopes=SCOPES).grant_token)
        agents.append(agent)
    assert all(gx.tokens.verify(t).valid for t in tokens)
    gx.agents.suspend(agents[suspend_depth].id)
    for depth, token in enumerate(tokens):
        answer = gx.tokens.verify(token)
        if depth >= suspend_depth:
            assert (answer.valid, answer.reason) == (False, "agent_suspended"), depth
        else:
            assert answer.valid is True, depth
