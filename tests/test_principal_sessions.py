"""Principal sessions (SDK-SURFACE §5): minted by the library and by ``POST /v1/principal-sessions``,
parsed by the official SDK, verified by the library.

Why these tests: the same token will carry the principal's permissions page (issue 12) and
already proves who decides on the consent page, so its claims must be exactly the SDK's
contract, it must never pass as a grant token (nor a grant token as it), and it must never be
stored or logged anywhere.
"""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import grantex
import httpx
import jwt
import pytest
from grantex import CreatePrincipalSessionParams
from helpers import MovableClock, dump, grant_for

from grantex_local import Grantex, InvalidExpiresIn, InvalidInput, Ledger, NotFound, developers
from grantex_local import principals as sessions
from grantex_local.errors import SessionInvalid
from grantex_local.server.testing import RunningServer, running_server


def claims_of(token: str) -> tuple[dict[str, Any], dict[str, Any]]:
    head, body, _ = token.split(".")
    pad = lambda s: s + "=" * (-len(s) % 4)  # noqa: E731
    return (json.loads(base64.urlsafe_b64decode(pad(head))), json.loads(base64.urlsafe_b64decode(pad(body))))


# ── the library ─────────────────────────────────────────────────────────────


def test_a_session_carries_exactly_the_sdk_claims(gx: Grantex, clock: MovableClock) -> None:
    ledger = gx.ledger
    minted = sessions.create_session(ledger, gx.developer_id, "alice", via="local")
    header, claims = claims_of(minted.session_token)
    assert header["alg"] == "RS256" and header["kid"] == ledger.signing_key()[0]
    assert header.get("typ") != "at+jwt"  # never mistaken for a grant token
    assert set(claims) == {"iss", "sub", "dev", "purpose", "iat", "exp", "via"}
    assert claims["iss"] == ledger.issuer and claims["sub"] == "alice"
    assert claims["dev"] == gx.developer_id and claims["purpose"] == "principal_dashboard"
    assert claims["exp"] - claims["iat"] == 3600 and claims["iat"] == int(clock.now)
    assert "jti" not in claims and "scp" not in claims and "grnt" not in claims
    assert minted.dashboard_url("http://h:1") == f"http://h:1/permissions#session={minted.session_token}"
    verified = sessions.verify_session(ledger, minted.session_token)
    assert (verified.principal_id, verified.developer_id, verified.via) == ("alice", gx.developer_id, "local")


def test_expiry_defaults_to_an_hour_and_is_clamped_to_a_day(gx: Grantex) -> None:
    for asked, seconds in ((None, 3600), ("90s", 90), ("2h", 7200), ("24h", 86400), ("48h", 86400),
                           ("30d", 86400)):
        minted = sessions.create_session(gx.ledger, gx.developer_id, "alice", via="local", expires_in=asked)
        _, claims = claims_of(minted.session_token)
        assert claims["exp"] - claims["iat"] == seconds, asked


@pytest.mark.parametrize("asked", ["", "1", "h", "1w", "-1h", "0s", "1.5h", " 1h"])
def test_a_malformed_expiry_is_refused_and_nothing_is_written(gx: Grantex, ledger_path: Path,
                                                                asked: str) -> None:
    before = dump(ledger_path)
    with pytest.raises(InvalidExpiresIn):
        sessions.create_session(gx.ledger, gx.developer_id, "alice", via="local", expires_in=asked)
    assert dump(ledger_path) == before


def test_bad_principal_developer_or_origin_is_refused(gx: Grantex, ledger_path: Path) -> None:
    before = dump(ledger_path)
    for principal in ("", "a\nb", 42):
        with pytest.raises(InvalidInput):
            sessions.create_session(gx.ledger, gx.developer_id, principal, via="local")  # type: ignore[arg-type]
    with pytest.raises(NotFound):
        sessions.create_session(gx.ledger, "dev_01NOSUCHDEVELOPER000000000", "alice", via="local")
    with pytest.raises(InvalidInput):
        sessions.create_session(gx.ledger, gx.developer_id, "alice", via="browser")  # type: ignore[arg-type]
    assert dump(ledger_path) == before


def test_creation_is_audited_and_the_token_is_stored_nowhere(gx: Grantex, ledger_path: Path) -> None:
    minted = sessions.create_session(gx.ledger, gx.developer_id, "alice", via="api-key", expires_in="2h")
    entry = gx.ledger.query_one("SELECT preimage FROM audit_entries ORDER BY seq DESC LIMIT 1")
    assert entry is not None
    recorded = json.loads(entry["preimage"])
    assert recorded["action"] == "grantex.principal_session.created"
    assert recorded["principalId"] == "alice"
    assert recorded["metadata"] == {"expiresAt": minted.expires_at, "via": "api-key"}
    signature = minted.session_token.rsplit(".", 1)[1]
    assert not any(signature in line or minted.session_token in line for line in dump(ledger_path))


def test_no_grant_is_needed_for_a_session(gx: Grantex) -> None:
    """Unlike the reference server (404 without an active grant): a person approving their very
    first consent has no grant yet, and the consent page is where a session is needed."""
    assert not gx.grants.list().grants
    sessions.create_session(gx.ledger, gx.developer_id, "nobody-yet", via="local")


def test_expired_tampered_and_foreign_sessions_are_refused(gx: Grantex, clock: MovableClock,
                                                          tmp_path: Path) -> None:
    ledger = gx.ledger
    minted = sessions.create_session(ledger, gx.developer_id, "alice", via="local", expires_in="10m")
    clock.advance(9 * 60)
    sessions.verify_session(ledger, minted.session_token)
    clock.advance(2 * 60)
    with pytest.raises(SessionInvalid) as expired:
        sessions.verify_session(ledger, minted.session_token)
    assert expired.value.reason == "expired" and expired.value.status == 401

    fresh = sessions.create_session(ledger, gx.developer_id, "alice", via="local").session_token
    head, _body, sig = fresh.split(".")
    _, claims = claims_of(fresh)
    forged = json.dumps({**claims, "sub": "mallory"}).encode()
    forged_body = base64.urlsafe_b64encode(forged).rstrip(b"=").decode()
    with pytest.raises(SessionInvalid) as tampered:
        sessions.verify_session(ledger, f"{head}.{forged_body}.{sig}")
    assert tampered.value.reason == "signature"

    with Ledger(tmp_path / "other.db") as other:  # another ledger: another key
        foreign = sessions.create_session(other, developers.default_developer(other).id, "alice", via="local")
    with pytest.raises(SessionInvalid) as unknown:
        sessions.verify_session(ledger, foreign.session_token)
    assert unknown.value.reason == "unknown_kid"

    for junk in ("", "a.b", "a.b.c", 7, None, "x" * 20_000):
        with pytest.raises(SessionInvalid):
            sessions.verify_session(ledger, junk)


def test_a_grant_token_is_no_session_and_a_session_is_no_grant_token(gx: Grantex) -> None:
    ledger = gx.ledger
    grant_token = grant_for(gx, ["calendar:read"], principal="alice").grant_token
    with pytest.raises(SessionInvalid):
        sessions.verify_session(ledger, grant_token)
    session = sessions.create_session(ledger, gx.developer_id, "alice", via="local").session_token
    assert gx.tokens.verify(session).valid is False


def test_right_key_but_wrong_purpose_or_issuer_is_refused(gx: Grantex) -> None:
    ledger = gx.ledger
    kid, key = ledger.signing_key()
    now = int(time.time())
    base = {"iss": ledger.issuer, "sub": "alice", "dev": gx.developer_id, "purpose": "principal_dashboard",
            "via": "local", "iat": now, "exp": now + 600}
    for change, reason in (({"purpose": "something_else"}, "purpose"),
                           ({"iss": "http://elsewhere:1"}, "issuer"),
                           ({"via": "guess"}, "malformed"),
                           ({"dev": "dev_01NOSUCHDEVELOPER000000000"}, "developer")):
        token = jwt.encode({**base, **change}, key, algorithm="RS256", headers={"kid": kid})
        with pytest.raises(SessionInvalid) as refused:
            sessions.verify_session(ledger, token)
        assert refused.value.reason == reason, change
    hs = jwt.encode(base, "secret-that-is-long-enough-for-hs256-0123456789", algorithm="HS256",
                    headers={"kid": kid})
    with pytest.raises(SessionInvalid) as algorithm:
        sessions.verify_session(ledger, hs)
    assert algorithm.value.reason == "algorithm"


# ── over HTTP, with the official SDK ────────────────────────────────────────


@dataclass(frozen=True)
class Served:
    server: RunningServer
    path: Path
    key: str
    other_key: str  # another developer


@pytest.fixture
def served(tmp_path: Path) -> Iterator[Served]:
    path = tmp_path / "grantex.db"
    with Ledger(path) as ledger:
        dev = developers.create_developer(ledger, "Acme", sandbox=False)
        key = developers.create_api_key(ledger, dev.id).key
        other = developers.create_developer(ledger, "Other", sandbox=False)
        other_key = developers.create_api_key(ledger, other.id).key
    with running_server(path) as server:
        yield Served(server, path, key, other_key)


def test_the_sdk_creates_a_session_and_parses_the_answer(served: Served) -> None:
    client = grantex.Grantex(api_key=served.key, base_url=served.server.base_url, max_retries=0)
    answer = client.principal_sessions.create(
        CreatePrincipalSessionParams(principal_id="alice", expires_in="1h"))
    base = served.server.base_url
    assert answer.dashboard_url.startswith(f"{base}/permissions#session=")
    assert unquote(answer.dashboard_url.split("#session=", 1)[1]) == answer.session_token
    assert answer.expires_at.endswith("Z") and len(answer.expires_at) == 24
    with Ledger(served.path, create=False) as ledger:
        verified = sessions.verify_session(ledger, answer.session_token)
        dev = developers.developer_for_api_key(ledger, served.key)
    assert verified.principal_id == "alice" and verified.developer_id == dev.id
    assert verified.via == "api-key"  # minted on the strength of an API key, and marked so
    default = client.principal_sessions.create(CreatePrincipalSessionParams(principal_id="bob"))
    _, claims = claims_of(default.session_token)
    assert claims["exp"] - claims["iat"] == 3600


def test_http_errors_are_clear_and_write_nothing(served: Served) -> None:
    url = served.server.base_url + "/v1/principal-sessions"
    auth = {"Authorization": f"Bearer {served.key}"}
    before = dump(served.path)
    for body, status in (({}, 400), ({"expiresIn": "1h"}, 400),
                         ({"principalId": "alice", "expiresIn": "1w"}, 400),
                         ({"principalId": ""}, 400), ({"principalId": 7}, 400),
                         ({"principalId": "alice", "extra": 1}, 400)):
        answer = httpx.post(url, json=body, headers=auth)
        assert answer.status_code == status, (body, answer.text)
        assert set(answer.json()) == {"message", "code", "requestId"} and "Traceback" not in answer.text
    assert httpx.post(url, json={"principalId": "alice"}).status_code == 401
    assert dump(served.path) == before
    client = grantex.Grantex(api_key=served.key, base_url=served.server.base_url, max_retries=0)
    with pytest.raises(grantex.GrantexApiError) as missing:
        client.principal_sessions.create(CreatePrincipalSessionParams(principal_id=""))
    assert missing.value.status_code == 400


def test_a_session_token_is_not_an_api_key(served: Served) -> None:
    token = httpx.post(served.server.base_url + "/v1/principal-sessions", json={"principalId": "alice"},
                       headers={"Authorization": f"Bearer {served.key}"}).json()["sessionToken"]
    refused = httpx.get(served.server.base_url + "/v1/agents", headers={"Authorization": f"Bearer {token}"})
    assert refused.status_code == 401
