"""The credential vault (issue 13 item 3): the official SDK end to end, the exchange's 401/403/404,
encryption at rest that fails closed, the no-passphrase refusal and its explicit opt-out, and a
stored secret found nowhere it must not be (ledger file, exports, server log, TUI)."""

from __future__ import annotations

import json
import logging
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import grantex
import httpx
import pytest
from cli_helpers import fails, invoke, ok
from grantex import (
    AuthorizeParams,
    ExchangeCredentialParams,
    ExchangeTokenParams,
    ListVaultCredentialsParams,
    StoreCredentialParams,
)
from grantex._verify import clear_jwks_cache
from helpers import MovableClock, dump

from grantex_local import Ledger, developers, errors, events, vault
from grantex_local.server.testing import RunningServer, running_server

PASSPHRASE = "correct horse battery staple"
SECRET = "gho_SECRETtokenVALUE9f3c2a71d"
REFRESH = "ghr_REFRESHsecretVALUE55e01b"
SCOPES = ["github:read", "calendar:read"]


@dataclass
class Setup:
    path: Path
    server: RunningServer
    key: str
    clock: MovableClock

    def client(self, key: str | None = None) -> grantex.Grantex:
        return grantex.Grantex(api_key=key or self.key, base_url=self.server.base_url, max_retries=0)

    def grant(self, scopes: list[str], principal: str = "user_alice",
              expires_in: str | None = None) -> tuple[str, str]:
        """(grant token, grant id) from a real flow through the SDK (sandbox developer)."""
        gx = self.client()
        agent = gx.agents.register(name="vault agent", scopes=scopes)
        auth = gx.authorize(AuthorizeParams(agent_id=agent.id, user_id=principal, scopes=scopes,
                                            expires_in=expires_in))
        assert auth.code
        token = gx.tokens.exchange(ExchangeTokenParams(code=auth.code, agent_id=agent.id))
        return token.grant_token, token.grant_id

    def exchange(self, token: str, body: dict[str, object]) -> httpx.Response:
        return httpx.post(f"{self.server.base_url}/v1/vault/credentials/exchange", json=body,
                          headers={"Authorization": f"Bearer {token}"})


def _ledger(path: Path, passphrase: str | None) -> str:
    with Ledger(path, passphrase=passphrase) as ledger:
        return developers.create_api_key(ledger, developers.default_developer(ledger).id, "sdk").key


@pytest.fixture
def setup(tmp_path: Path) -> Iterator[Setup]:
    path = tmp_path / "grantex.db"
    key = _ledger(path, PASSPHRASE)
    clock = MovableClock()
    clear_jwks_cache()
    with running_server(path, passphrase=PASSPHRASE, clock=clock) as server:
        yield Setup(path, server, key, clock)


def _store(gx: grantex.Grantex, principal: str = "user_alice", service: str = "github",
           secret: str = SECRET) -> grantex.StoreCredentialResponse:
    return gx.vault.store(StoreCredentialParams(
        principal_id=principal, service=service, access_token=secret, refresh_token=REFRESH,
        credential_type="oauth2", token_expires_at="2030-01-01T00:00:00Z", metadata={"login": "alice"}))


# ── the SDK end to end ───────────────────────────────────────────────────────


def test_sdk_store_list_get_exchange_delete(setup: Setup) -> None:
    gx = setup.client()
    stored = _store(gx)
    assert stored.id.startswith("vault_") and stored.principal_id == "user_alice"
    assert stored.service == "github" and stored.credential_type == "oauth2"
    again = _store(gx, secret=SECRET + "-rotated")  # upsert: same row, new secret
    assert again.id == stored.id
    other = _store(gx, principal="user_bob")
    assert other.id != stored.id

    listed = gx.vault.list().credentials
    assert {c.id for c in listed} == {stored.id, other.id}
    only = gx.vault.list(ListVaultCredentialsParams(principal_id="user_alice", service="github")).credentials
    assert [c.id for c in only] == [stored.id]
    got = gx.vault.get(stored.id)
    assert got.metadata == {"login": "alice"} and got.token_expires_at == "2030-01-01T00:00:00Z"
    raw = httpx.get(f"{setup.server.base_url}/v1/vault/credentials/{stored.id}",
                    headers={"Authorization": f"Bearer {setup.key}"}).json()
    assert raw["protected"] is True and "warning" not in raw
    assert "accessToken" not in raw and "refreshToken" not in raw

    token, _ = setup.grant(SCOPES)
    out = gx.vault.exchange(token, ExchangeCredentialParams(service="github"))
    assert out.access_token == SECRET + "-rotated" and out.service == "github"
    assert out.credential_type == "oauth2" and out.metadata == {"login": "alice"}

    # by reference: the agent gets a one-time reference, the relying party redeems it once
    ref = gx.vault.exchange_reference(token, ExchangeCredentialParams(service="github"))
    assert ref.credential_ref.startswith("vref_") and ref.reference_expires_at
    redeem = f"{setup.server.base_url}/v1/vault/references/redeem"
    auth = {"Authorization": f"Bearer {setup.key}"}
    first = httpx.post(redeem, json={"credentialRef": ref.credential_ref}, headers=auth)
    assert first.status_code == 200 and first.json()["accessToken"] == SECRET + "-rotated"
    second = httpx.post(redeem, json={"credentialRef": ref.credential_ref}, headers=auth)
    assert second.status_code == 404

    gx.vault.delete(stored.id)
    with pytest.raises(grantex.GrantexApiError) as missing:
        gx.vault.get(stored.id)
    assert missing.value.status_code == 404
    with pytest.raises(grantex.GrantexApiError) as again_missing:
        gx.vault.delete(stored.id)
    assert again_missing.value.status_code == 404
    with pytest.raises(ValueError, match="no vault credential"):
        gx.vault.exchange(token, ExchangeCredentialParams(service="github"))

    with Ledger(setup.path, passphrase=PASSPHRASE) as ledger:
        actions = [r[0] for r in ledger.query("SELECT action FROM audit_entries WHERE action LIKE "
                                              "'grantex.vault.%' ORDER BY seq")]
        types = [r[0] for r in ledger.query("SELECT type FROM events WHERE type LIKE 'vault.%' ORDER BY seq")]
    assert actions.count("grantex.vault.credential_exchanged") == 3  # direct, reference, redeemed
    assert "grantex.vault.credential_deleted" in actions
    assert types.count("vault.credential.stored") == 3 and "vault.credential.deleted" in types


def test_list_query_is_url_decoded(setup: Setup) -> None:
    gx = setup.client()
    odd = "user a&b=c/d é"
    stored = _store(gx, principal=odd)
    _store(gx, principal="user_alice")
    found = httpx.get(f"{setup.server.base_url}/v1/vault/credentials",
                      params={"principalId": odd, "service": "GitHub"},
                      headers={"Authorization": f"Bearer {setup.key}"}).json()["credentials"]
    assert [c["id"] for c in found] == [stored.id] and found[0]["principalId"] == odd


def test_exchange_refuses_revoked_expired_wrong_scope_and_no_token(setup: Setup) -> None:
    gx = setup.client()
    _store(gx)
    # scope patterns of SDK-SURFACE §14, case-insensitively
    for scopes in (["GitHub:Read"], ["vault:github:*"], ["vault:credentials:exchange"],
                   ["github:credentials:read"], ["github:*"]):
        token, _ = setup.grant(scopes)
        assert setup.exchange(token, {"service": "github"}).status_code == 200, scopes

    wrong, _ = setup.grant(["calendar:read", "gitlab:read", "vault:gitlab:*"])
    answer = setup.exchange(wrong, {"service": "github"})
    assert answer.status_code == 403 and answer.json()["code"] == "INSUFFICIENT_SCOPE"
    with pytest.raises(ValueError, match="scopes do not include"):
        gx.vault.exchange(wrong, ExchangeCredentialParams(service="github"))
    # an agent reaching for what it may not have is on the record, without any secret
    refusals = httpx.get(f"{setup.server.base_url}/v1/audit/entries",
                         params={"action": "grantex.vault.exchange_refused", "pageSize": 100},
                         headers={"Authorization": f"Bearer {setup.key}"}).json()["entries"]
    assert [(e["status"], e["metadata"]) for e in refusals] == [
        ("blocked", {"service": "github", "reason": "insufficient_scope"})] * 2
    nothing, _ = setup.grant(["vault:credentials:exchange"])
    assert setup.exchange(nothing, {"service": "slack"}).status_code == 404
    refusals = httpx.get(f"{setup.server.base_url}/v1/audit/entries",
                         params={"action": "grantex.vault.exchange_refused", "pageSize": 100},
                         headers={"Authorization": f"Bearer {setup.key}"}).json()["entries"]
    assert refusals[-1]["metadata"] == {"service": "slack", "reason": "no_credential"}

    revoked, grant_id = setup.grant(SCOPES)
    assert setup.exchange(revoked, {"service": "github"}).status_code == 200
    gx.grants.revoke(grant_id)
    answer = setup.exchange(revoked, {"service": "github"})
    assert answer.status_code == 401 and "revoked" in answer.json()["message"]

    short, _ = setup.grant(SCOPES, expires_in="1h")
    setup.clock.advance(2 * 3600)
    answer = setup.exchange(short, {"service": "github"})
    assert answer.status_code == 401 and "expired" in answer.json()["message"]

    assert setup.exchange("not-a-token", {"service": "github"}).status_code == 401
    none = httpx.post(f"{setup.server.base_url}/v1/vault/credentials/exchange", json={"service": "github"})
    assert none.status_code == 401
    assert setup.exchange(setup.key, {"service": "github"}).status_code == 401  # an API key is no grant


def test_no_credential_bad_service_and_other_developer(setup: Setup) -> None:
    gx = setup.client()
    stored = _store(gx)
    token, _ = setup.grant(["slack:read"])
    assert setup.exchange(token, {"service": "slack"}).status_code == 404
    assert setup.exchange(token, {"service": "-bad"}).status_code == 400
    with pytest.raises(grantex.GrantexApiError) as bad:
        gx.vault.store(StoreCredentialParams(principal_id="user_alice", service="Not Valid!",
                                             access_token="x"))
    assert bad.value.status_code == 400

    with Ledger(setup.path, passphrase=PASSPHRASE) as ledger:
        other = developers.create_developer(ledger, "Other", sandbox=True)
        other_key = developers.create_api_key(ledger, other.id, "sdk").key
    stranger = setup.client(other_key)
    assert stranger.vault.list().credentials == ()
    for call in (lambda: stranger.vault.get(stored.id), lambda: stranger.vault.delete(stored.id)):
        with pytest.raises(grantex.GrantexApiError) as hidden:
            call()
        assert hidden.value.status_code == 404
    assert gx.vault.get(stored.id).id == stored.id  # still there


# ── encryption at rest ───────────────────────────────────────────────────────


def test_no_passphrase_refuses_and_writes_nothing(tmp_path: Path) -> None:
    path = tmp_path / "plain.db"
    key = _ledger(path, None)
    with running_server(path) as server:
        before = dump(path)  # after the server adopted its URL as the issuer
        gx = grantex.Grantex(api_key=key, base_url=server.base_url, max_retries=0)
        with pytest.raises(grantex.GrantexApiError) as refused:
            _store(gx)
        assert refused.value.status_code == 409 and "passphrase" in str(refused.value)
        assert "--insecure-store" in str(refused.value)
    result = fails(2, "vault", "store", "user_alice", "github", "--ledger", path, input=SECRET)
    assert "passphrase" in result.stderr
    with Ledger(path) as ledger, pytest.raises(errors.VaultLocked):
        vault.store(ledger, developers.default_developer(ledger).id, "user_alice", "github", SECRET)
    assert dump(path) == before


def test_insecure_store_works_and_says_so(tmp_path: Path) -> None:
    path = tmp_path / "plain.db"
    key = _ledger(path, None)
    with running_server(path, vault_insecure_store=True) as server:
        gx = grantex.Grantex(api_key=key, base_url=server.base_url, max_retries=0)
        stored = _store(gx)
        auth = {"Authorization": f"Bearer {key}"}
        got = httpx.get(f"{server.base_url}/v1/vault/credentials/{stored.id}", headers=auth).json()
        assert got["protected"] is False and "NOT protected by a passphrase" in got["warning"]
        listed = httpx.get(f"{server.base_url}/v1/vault/credentials", headers=auth).json()
        assert all("NOT protected" in c["warning"] for c in listed["credentials"])
        agent = gx.agents.register(name="a", scopes=["github:read"])
        code = gx.authorize(AuthorizeParams(agent_id=agent.id, user_id="user_alice",
                                            scopes=["github:read"])).code
        assert code
        token = gx.tokens.exchange(ExchangeTokenParams(code=code, agent_id=agent.id)).grant_token
        assert gx.vault.exchange(token, ExchangeCredentialParams(service="github")).access_token == SECRET

    stored_cli = ok("vault", "store", "user_bob", "slack", "--insecure-store", "--token-stdin", "--json",
                    "--ledger", path, input="xoxb-" + SECRET + "\n")
    assert json.loads(stored_cli.stdout)["protected"] is False
    assert "NOT protected by a passphrase" in stored_cli.stderr and SECRET not in stored_cli.output
    listing = ok("vault", "list", "--ledger", path)
    assert "NO (insecure store)" in listing.stdout and "NOT protected" in listing.stderr
    assert SECRET not in listing.output
    with Ledger(path) as ledger:
        dev = developers.default_developer(ledger).id
        [bob] = vault.list_credentials(ledger, dev, principal_id="user_bob")
        assert vault.reveal(ledger, dev, bob.id)["accessToken"] == "xoxb-" + SECRET
        assert ledger.query_one("SELECT secret FROM local_secrets WHERE name = 'vault_insecure_key'")


def test_wrong_passphrase_fails_closed(tmp_path: Path) -> None:
    # a ledger whose signing keys are not encrypted: the vault's own check value catches it
    path = tmp_path / "keys-clear.db"
    _ledger(path, None)
    with Ledger(path, passphrase=PASSPHRASE) as ledger:
        dev = developers.default_developer(ledger).id
        stored = vault.store(ledger, dev, "user_alice", "github", SECRET)
        assert vault.reveal(ledger, dev, stored.id)["accessToken"] == SECRET
    before = dump(path)
    with Ledger(path, passphrase="wrong passphrase") as ledger:
        with pytest.raises(errors.VaultLocked) as locked:
            vault.reveal(ledger, dev, stored.id)
        assert SECRET not in str(locked.value)
        with pytest.raises(errors.VaultLocked):
            vault.store(ledger, dev, "user_alice", "github", "another secret")
    with Ledger(path) as ledger, pytest.raises(errors.VaultLocked):
        vault.reveal(ledger, dev, stored.id)
    assert dump(path) == before

    # a ledger whose signing keys are encrypted: the wrong passphrase fails on them first
    locked_path = tmp_path / "keys-encrypted.db"
    _ledger(locked_path, PASSPHRASE)
    with Ledger(locked_path, passphrase=PASSPHRASE) as ledger:
        dev = developers.default_developer(ledger).id
        stored = vault.store(ledger, dev, "user_alice", "github", SECRET)
    with Ledger(locked_path, passphrase="wrong") as ledger:
        with pytest.raises(errors.GrantexLocalError) as refused:
            vault.reveal(ledger, dev, stored.id)
        assert SECRET not in str(refused.value)
    result = invoke("vault", "store", "user_alice", "github", "--ledger", locked_path, input=SECRET,
                    env={"GRANTEX_LOCAL_PASSPHRASE": "wrong"})
    assert result.exit_code == 2 and result.stderr.startswith("error: ") and SECRET not in result.output


def test_ciphertexts_are_bound_to_their_rows(tmp_path: Path) -> None:
    path = tmp_path / "swap.db"
    _ledger(path, PASSPHRASE)
    with Ledger(path, passphrase=PASSPHRASE) as ledger:
        dev = developers.default_developer(ledger).id
        alice = vault.store(ledger, dev, "user_alice", "github", SECRET)
        mallory = vault.store(ledger, dev, "user_mallory", "github", "mallory's own")
    conn = sqlite3.connect(path)
    with conn:  # mallory's row gets alice's sealed secret
        nonce, sealed = conn.execute("SELECT nonce, ciphertext FROM vault_credentials WHERE id = ?",
                                     (alice.id,)).fetchone()
        conn.execute("UPDATE vault_credentials SET nonce = ?, ciphertext = ? WHERE id = ?",
                     (nonce, sealed, mallory.id))
    conn.close()
    with Ledger(path, passphrase=PASSPHRASE) as ledger:
        with pytest.raises(errors.VaultLocked, match="does not decrypt"):
            vault.reveal(ledger, dev, mallory.id)
        assert vault.reveal(ledger, dev, alice.id)["accessToken"] == SECRET
        kdf = ledger.query_one("SELECT kdf, params FROM vault_kdf")
        assert kdf is not None and kdf[0] == "scrypt" and json.loads(kdf[1])["n"] >= 2**14


def test_cli_store_list_show_delete(tmp_path: Path) -> None:
    path = tmp_path / "cli.db"
    _ledger(path, PASSPHRASE)
    env = {"GRANTEX_LOCAL_PASSPHRASE": PASSPHRASE}
    stored = json.loads(ok("vault", "store", "user_alice", "github", "--token-stdin", "--credential-type",
                           "api_key", "--json", "--ledger", path, input=SECRET + "\n", env=env).stdout)
    assert stored["protected"] is True and stored["credentialType"] == "api_key"
    for args in (("vault", "list"), ("vault", "list", "--json"), ("vault", "show", stored["id"]),
                 ("vault", "show", stored["id"], "--json")):
        result = ok(*args, "--ledger", path, env=env)
        assert stored["id"] in result.stdout and SECRET not in result.output
    ok("vault", "delete", stored["id"], "--ledger", path, env=env)
    fails(2, "vault", "show", stored["id"], "--ledger", path)


# ── a stored secret is found nowhere it must not be ──────────────────────────


def test_secret_appears_in_no_file_export_log_or_tui(tmp_path: Path, caplog: pytest.LogCaptureFixture,
                                                     capfd: pytest.CaptureFixture[str]) -> None:
    caplog.set_level(logging.DEBUG)
    path = tmp_path / "grep.db"
    key = _ledger(path, PASSPHRASE)
    clear_jwks_cache()
    payloads: list[str] = []
    with running_server(path, passphrase=PASSPHRASE) as server:
        setup = Setup(path, server, key, MovableClock())
        gx = setup.client()
        stored = _store(gx)
        token, grant_id = setup.grant(SCOPES)
        assert gx.vault.exchange(token, ExchangeCredentialParams(service="github")).access_token == SECRET
        gx.vault.exchange_reference(token, ExchangeCredentialParams(service="github"))
        assert setup.exchange(token, {"service": "nothing"}).status_code == 403
        payloads.append(json.dumps([c.__dict__ for c in gx.vault.list().credentials]))
        payloads.append(json.dumps(gx.vault.get(stored.id).__dict__))
        payloads.append(json.dumps(gx.compliance.export_grants().__dict__, default=str))
        payloads.append(json.dumps(gx.compliance.export_audit().__dict__, default=str))
        payloads.append(json.dumps(gx.compliance.evidence_pack().__dict__, default=str))
        with Ledger(path, passphrase=PASSPHRASE) as ledger:  # the outbox the stream and webhooks send
            payloads.append("\n".join(e.body for e in events.read_events(ledger, None)))
        ledger_bytes = b"".join(p.read_bytes() for p in tmp_path.glob("grep.db*"))  # with -wal, live
    env = {"GRANTEX_LOCAL_PASSPHRASE": PASSPHRASE}
    ok("export", tmp_path / "bundle", "--ledger", path, env=env)
    ok("export", tmp_path / "parquet", "--format", "parquet", "--ledger", path, env=env)
    payloads.append(ok("audit", "list", "--json", "--ledger", path, env=env).stdout)

    from grantex_local.tui.data import AuditFilter, TreeFilter, TuiData

    tui = TuiData.open(path)
    try:
        payloads.append(repr(tui.overview()))
        payloads.append(repr(tui.principals(TreeFilter())))
        payloads.append(repr(tui.grant_detail(grant_id)))
        payloads.append(repr(tui.audit_page(AuditFilter())))
    finally:
        tui.close()

    files = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert any(p.suffix == ".parquet" for p in files) and any(p.suffix == ".jsonl" for p in files)
    assert not [p for p in files if "vault" in p.name or "secret" in p.name]  # no vault table exported
    captured = capfd.readouterr()
    haystacks = {
        "ledger file + wal (live)": ledger_bytes,
        "server log": "\n".join(r.getMessage() for r in caplog.records).encode(),
        "stdout/stderr": (captured.out + captured.err).encode(),
        "API answers and TUI data": "\n".join(payloads).encode(),
        **{str(p.relative_to(tmp_path)): p.read_bytes() for p in files},
    }
    for needle in (SECRET, REFRESH):
        for name, hay in haystacks.items():
            assert needle.encode() not in hay, f"{needle[:4]}… found in {name}"
    assert "vault.credential.exchanged" in payloads[5]  # the events were there to search
    assert stored.id in haystacks["API answers and TUI data"].decode()
