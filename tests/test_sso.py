"""SSO over HTTP (issue 12, SDK-SURFACE §7): every SDK method parses, the conformance suite's
checks, secrets never leave (responses, audit, events, the ledger file), the login redirect and
the callbacks' input checks (no identity provider is ever called)."""

from __future__ import annotations

import hashlib
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import grantex
import httpx
import pytest
from grantex import (
    CreateSsoConfigParams,
    CreateSsoConnectionParams,
    GrantexApiError,
    SsoEnforcementParams,
    SsoLdapCallbackParams,
    SsoOidcCallbackParams,
    SsoSamlCallbackParams,
    UpdateSsoConnectionParams,
)

from grantex_local import Ledger, developers
from grantex_local.server.testing import RunningServer, running_server

CLIENT_SECRET = "oidc-client-secret-0123456789-should-never-leak"
CERT = "MIIC-saml-idp-certificate-should-never-leak"
BIND_PASSWORD = "ldap-bind-password-should-never-leak"
SECRETS = (CLIENT_SECRET, CERT, BIND_PASSWORD)


@dataclass
class Setup:
    path: Path
    server: RunningServer
    key: str
    other_key: str
    developer_id: str

    def sdk(self, key: str | None = None) -> grantex.Grantex:
        return grantex.Grantex(api_key=key or self.key, base_url=self.server.base_url, max_retries=0)

    def http(self, method: str, path: str, bearer: str | None = None, **kwargs: Any) -> httpx.Response:
        headers = dict(kwargs.pop("headers", {}))
        if bearer is not None:
            headers["Authorization"] = f"Bearer {bearer}"
        return httpx.request(method, self.server.base_url + path, headers=headers, timeout=10, **kwargs)

    def count(self, table: str) -> int:
        conn = sqlite3.connect(self.path)
        try:
            return int(conn.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0])
        finally:
            conn.close()


@pytest.fixture
def setup(tmp_path: Path) -> Iterator[Setup]:
    path = tmp_path / "grantex.db"
    with Ledger(path) as ledger:
        dev = developers.default_developer(ledger)
        key = developers.create_api_key(ledger, dev.id, "sdk").key
        other = developers.create_developer(ledger, "Other", sandbox=True)
        other_key = developers.create_api_key(ledger, other.id, "sdk").key
    with running_server(path, webhook_delivery=False) as server:
        yield Setup(path, server, key, other_key, dev.id)


def oidc(name: str = "Okta", **extra: Any) -> CreateSsoConnectionParams:
    fields: dict[str, Any] = {"domains": ["example.com"], "group_mappings": {"eng": ["calendar:read"]},
                              **extra}
    return CreateSsoConnectionParams(name=name, protocol="oidc", issuer_url="https://idp.example.com",
                                     client_id="client-1", client_secret=CLIENT_SECRET, **fields)


def test_every_connection_method_parses(setup: Setup) -> None:
    gx = setup.sdk()
    made = gx.sso.create_connection(oidc())
    assert made.id.startswith("sso_") and made.status == "active" and made.protocol == "oidc"
    assert made.developer_id == setup.developer_id and made.domains == ("example.com",)
    saml = gx.sso.create_connection(CreateSsoConnectionParams(
        name="ADFS", protocol="saml", idp_entity_id="urn:idp", idp_sso_url="https://adfs.example.com/sso",
        idp_certificate=CERT, sp_entity_id="urn:sp", sp_acs_url="https://app.example.com/acs"))
    ldap = gx.sso.create_connection(CreateSsoConnectionParams(
        name="AD", protocol="ldap", ldap_url="ldaps://ad.example.com", ldap_bind_dn="cn=svc",
        ldap_bind_password=BIND_PASSWORD, ldap_search_base="dc=example,dc=com", ldap_tls_enabled=True))
    assert [c.id for c in gx.sso.list_connections().connections] == [made.id, saml.id, ldap.id]
    assert gx.sso.get_connection(saml.id).idp_sso_url == "https://adfs.example.com/sso"
    updated = gx.sso.update_connection(made.id, UpdateSsoConnectionParams(name="Okta 2", status="testing"))
    assert (updated.name, updated.status, updated.issuer_url) == ("Okta 2", "testing", "https://idp.example.com")
    for conn in (made, saml, ldap):
        result = gx.sso.test_connection(conn.id)
        assert result.success is True and result.protocol == conn.protocol
    assert gx.sso.test_connection(made.id).authorization_endpoint == "https://idp.example.com/authorize"
    gx.sso.delete_connection(ldap.id)
    with pytest.raises(GrantexApiError) as gone:
        gx.sso.get_connection(ldap.id)
    assert gone.value.status_code == 404
    with pytest.raises(GrantexApiError) as twice:
        gx.sso.delete_connection(ldap.id)
    assert twice.value.status_code == 404
    events = [e["type"] for e in _events(setup)]
    assert events.count("sso.connection.created") == 3
    assert "sso.connection.updated" in events and "sso.connection.deleted" in events


def _events(setup: Setup) -> list[dict[str, Any]]:
    import json

    conn = sqlite3.connect(setup.path)
    try:
        return [json.loads(r[0]) for r in conn.execute("SELECT body FROM events ORDER BY seq")]
    finally:
        conn.close()


def test_enforcement_sessions_and_config(setup: Setup) -> None:
    gx = setup.sdk()
    result = gx.sso.set_enforcement(SsoEnforcementParams(enforce=True))
    assert result.enforce is True and result.developer_id == setup.developer_id
    assert gx.sso.list_sessions().sessions == ()
    conn = sqlite3.connect(setup.path)
    with conn:
        for sid, expires in (("ssosess_live", "2999-01-01T00:00:00.000Z"),
                             ("ssosess_old", "2000-01-01T00:00:00.000Z")):
            conn.execute("INSERT INTO sso_sessions (id, developer_id, connection_id, idp_subject, groups, "
                         "mapped_scopes, created_at, expires_at, email) VALUES (?, ?, 'sso_x', 'sub-1', "
                         "'[\"eng\"]', '[]', '2026-01-01T00:00:00.000Z', ?, 'a@example.com')",
                         (sid, setup.developer_id, expires))
    conn.close()
    sessions = gx.sso.list_sessions().sessions
    assert [s.id for s in sessions] == ["ssosess_live"] and sessions[0].groups == ("eng",)
    with pytest.raises(GrantexApiError) as other:
        setup.sdk(setup.other_key).sso.revoke_session("ssosess_live")
    assert other.value.status_code == 404
    gx.sso.revoke_session("ssosess_live")
    assert gx.sso.list_sessions().sessions == ()
    with pytest.raises(GrantexApiError):
        gx.sso.revoke_session("ssosess_old")

    with pytest.raises(GrantexApiError) as none:
        gx.sso.get_config()
    assert none.value.status_code == 404
    config = gx.sso.create_config(CreateSsoConfigParams(
        issuer_url="https://accounts.google.com", client_id="cid", client_secret=CLIENT_SECRET,
        redirect_uri="https://example.com/sso/callback"))
    assert config.issuer_url == "https://accounts.google.com"
    again = gx.sso.create_config(CreateSsoConfigParams(
        issuer_url="https://accounts.google.com", client_id="cid2", client_secret=CLIENT_SECRET,
        redirect_uri="https://example.com/sso/callback"))
    assert gx.sso.get_config().client_id == "cid2" and again.created_at == config.created_at
    gx.sso.delete_config()
    with pytest.raises(GrantexApiError) as deleted:
        gx.sso.delete_config()
    assert deleted.value.status_code == 404


def test_conformance_suite(setup: Setup) -> None:
    made = setup.http("POST", "/v1/sso/config", setup.key, json={
        "issuerUrl": "https://accounts.google.com", "clientId": "c", "clientSecret": "s",
        "redirectUri": "https://example.com/sso/callback"})
    assert made.status_code == 201 and {"issuerUrl", "clientId", "redirectUri"} <= set(made.json())
    got = setup.http("GET", "/v1/sso/config", setup.key)
    assert got.status_code == 200 and got.json()["issuerUrl"]
    no_org = setup.http("GET", "/sso/login")
    assert no_org.status_code == 400 and {"message", "code", "requestId"} <= set(no_org.json())
    assert setup.http("DELETE", "/v1/sso/config", setup.key).status_code == 204


@pytest.mark.parametrize("body, field", [
    ({"name": "x", "protocol": "oidc", "issuerUrl": "https://i", "clientId": "c"}, "clientSecret"),
    ({"name": "x", "protocol": "oidc", "clientId": "c", "clientSecret": "s"}, "issuerUrl"),
    ({"name": "x", "protocol": "saml", "idpEntityId": "e", "idpSsoUrl": "https://i",
      "idpCertificate": "c", "spEntityId": "s"}, "spAcsUrl"),
    ({"name": "x", "protocol": "ldap", "ldapUrl": "ldap://h", "ldapBindDn": "cn",
      "ldapBindPassword": "p"}, "ldapSearchBase"),
    ({"name": "x", "protocol": "kerberos"}, "protocol"),
    ({"protocol": "oidc"}, "name"),
    ({"name": "x", "protocol": "oidc", "issuerUrl": "https://i", "clientId": "c", "clientSecret": "s",
      "status": "paused"}, "status"),
])
def test_bad_connections_are_400_naming_the_field(setup: Setup, body: dict[str, Any], field: str) -> None:
    before = setup.count("sso_connections"), setup.count("audit_entries"), setup.count("events")
    response = setup.http("POST", "/v1/sso/connections", setup.key, json=body)
    assert response.status_code == 400, response.text
    assert field in response.json()["message"] and response.json()["code"]
    assert (setup.count("sso_connections"), setup.count("audit_entries"), setup.count("events")) == before


def test_update_rules_and_a_failing_test(setup: Setup) -> None:
    gx = setup.sdk()
    made = gx.sso.create_connection(oidc())
    empty = setup.http("PATCH", f"/v1/sso/connections/{made.id}", setup.key, json={})
    assert empty.status_code == 400 and "nothing to update" in empty.json()["message"]
    assert setup.http("PATCH", f"/v1/sso/connections/{made.id}", setup.key,
                      json={"status": "off"}).status_code == 400
    gx.sso.update_connection(made.id, UpdateSsoConnectionParams(issuer_url="not a url"))
    failed = setup.http("POST", f"/v1/sso/connections/{made.id}/test", setup.key, json={})
    assert failed.status_code == 422
    assert failed.json()["success"] is False and "issuerUrl" in failed.json()["error"]
    with pytest.raises(GrantexApiError) as caught:
        gx.sso.test_connection(made.id)
    assert caught.value.status_code == 422 and "issuerUrl" in str(caught.value)


def test_another_developer_cannot_see_or_touch_connections(setup: Setup) -> None:
    made = setup.sdk().sso.create_connection(oidc())
    theirs = setup.sdk(setup.other_key).sso
    assert theirs.list_connections().connections == ()
    for call in (lambda: theirs.get_connection(made.id),
                 lambda: theirs.update_connection(made.id, UpdateSsoConnectionParams(name="mine")),
                 lambda: theirs.test_connection(made.id),
                 lambda: theirs.delete_connection(made.id)):
        with pytest.raises(GrantexApiError) as caught:
            call()
        assert caught.value.status_code == 404
    assert setup.sdk().sso.get_connection(made.id).name == "Okta"
    with pytest.raises(GrantexApiError):
        theirs.get_config()


def test_secrets_never_leave(setup: Setup) -> None:
    gx = setup.sdk()
    texts = []
    for params in (oidc(), CreateSsoConnectionParams(
            name="ADFS", protocol="saml", idp_entity_id="urn:idp", idp_sso_url="https://adfs.example.com/sso",
            idp_certificate=CERT, sp_entity_id="urn:sp", sp_acs_url="https://app.example.com/acs"),
            CreateSsoConnectionParams(
            name="AD", protocol="ldap", ldap_url="ldap://ad.example.com", ldap_bind_dn="cn=svc",
            ldap_bind_password=BIND_PASSWORD, ldap_search_base="dc=example")):
        made = setup.http("POST", "/v1/sso/connections", setup.key, json=params.to_dict())
        assert made.status_code == 201
        body = made.json()
        assert any(k.endswith("Set") and v is True for k, v in body.items())
        texts.append(made.text)
        texts.append(setup.http("PATCH", f"/v1/sso/connections/{body['id']}", setup.key,
                                json={"enforce": True}).text)
    made_config = setup.http("POST", "/v1/sso/config", setup.key, json={
        "issuerUrl": "https://accounts.google.com", "clientId": "c", "clientSecret": CLIENT_SECRET,
        "redirectUri": "https://example.com/cb"})
    texts += [made_config.text, setup.http("GET", "/v1/sso/config", setup.key).text,
              setup.http("GET", "/v1/sso/connections", setup.key).text,
              setup.http("GET", "/v1/audit/entries", setup.key).text,
              gx.sso.get_login_url(setup.developer_id).authorize_url]
    assert "grantex.sso.connection.created" in texts[-2]
    for text in texts:
        assert not any(secret in text for secret in SECRETS), text
    raw = b"".join(p.read_bytes() for p in setup.path.parent.iterdir() if p.name.startswith("grantex.db"))
    assert raw and not any(secret.encode() in raw for secret in SECRETS)
    digests = [hashlib.sha256(secret.encode()).hexdigest().encode() for secret in SECRETS]
    assert not any(digest in raw for digest in digests)  # not even a hash a weak password falls to
    assert all(secret not in str(e) for e in _events(setup) for secret in SECRETS)


def test_login_url_json_and_browser_redirect(setup: Setup) -> None:
    gx = setup.sdk()
    missing = setup.http("GET", f"/sso/login?org={setup.developer_id}")
    assert missing.status_code == 404 and missing.json()["code"] == "NOT_FOUND"
    made = gx.sso.create_connection(oidc(domains=None))
    login = gx.sso.get_login_url(setup.developer_id)
    assert login.protocol == "oidc" and login.connection_id == made.id
    parts = urlsplit(login.authorize_url)
    query = parse_qs(parts.query)
    assert f"{parts.scheme}://{parts.netloc}{parts.path}" == "https://idp.example.com/authorize"
    assert query["client_id"] == ["client-1"] and query["response_type"] == ["code"]
    assert query["scope"] == ["openid email profile"] and len(query["state"][0]) >= 32
    assert query["redirect_uri"] == [setup.server.base_url + "/sso/callback/oidc"] and query["nonce"]
    assert setup.count("sso_states") == 1
    conn = sqlite3.connect(setup.path)
    stored = conn.execute("SELECT state_hash FROM sso_states").fetchone()[0]
    conn.close()
    assert stored != query["state"][0]  # kept hashed
    browser = setup.http("GET", f"/sso/login?org={setup.developer_id}&redirect_uri=https://app.example.com/cb",
                         headers={"Accept": "text/html,application/xhtml+xml"})
    assert browser.status_code == 302
    target = parse_qs(urlsplit(browser.headers["location"]).query)
    assert target["redirect_uri"] == ["https://app.example.com/cb"] and target["state"]
    bad_redirect = setup.http("GET", f"/sso/login?org={setup.developer_id}&redirect_uri=javascript:x")
    assert bad_redirect.status_code == 400
    assert setup.http("GET", "/sso/login?org=dev_nobody").status_code == 404
    gx.sso.update_connection(made.id, UpdateSsoConnectionParams(status="inactive"))
    with pytest.raises(GrantexApiError) as caught:
        gx.sso.get_login_url(setup.developer_id)
    assert caught.value.status_code == 404


def test_login_picks_by_domain_and_handles_saml_and_ldap(setup: Setup) -> None:
    gx = setup.sdk()
    ldap = gx.sso.create_connection(CreateSsoConnectionParams(
        name="AD", protocol="ldap", ldap_url="ldap://ad.example.com", ldap_bind_dn="cn=svc",
        ldap_bind_password=BIND_PASSWORD, ldap_search_base="dc=example", domains=["corp.example"]))
    saml = gx.sso.create_connection(CreateSsoConnectionParams(
        name="ADFS", protocol="saml", idp_entity_id="urn:idp", idp_sso_url="https://adfs.example.com/sso",
        idp_certificate=CERT, sp_entity_id="urn:sp", sp_acs_url="https://app.example.com/acs",
        domains=["saml.example"]))
    by_domain = gx.sso.get_login_url(setup.developer_id, domain="saml.example")
    assert by_domain.connection_id == saml.id and by_domain.protocol == "saml"
    assert by_domain.authorize_url.startswith("https://adfs.example.com/sso?RelayState=")
    oldest = gx.sso.get_login_url(setup.developer_id)  # LDAP: no redirect, but it parses
    assert oldest.connection_id == ldap.id and oldest.authorize_url is None
    relay = parse_qs(urlsplit(by_domain.authorize_url).query)["RelayState"][0]
    with pytest.raises(GrantexApiError) as saml_cb:
        gx.sso.handle_saml_callback(SsoSamlCallbackParams(saml_response="PHNhbWw+", relay_state=relay))
    assert saml_cb.value.status_code == 501 and "identity providers" in str(saml_cb.value)
    with pytest.raises(GrantexApiError) as ldap_cb:
        gx.sso.handle_ldap_callback(SsoLdapCallbackParams(
            username="u", password="p", connection_id=ldap.id, org=setup.developer_id))
    assert ldap_cb.value.status_code == 501
    with pytest.raises(GrantexApiError) as wrong_org:
        gx.sso.handle_ldap_callback(SsoLdapCallbackParams(
            username="u", password="p", connection_id=ldap.id, org="dev_other"))
    assert wrong_org.value.status_code == 404


def test_callbacks_check_state_then_say_not_available(setup: Setup) -> None:
    gx = setup.sdk()
    gx.sso.create_connection(oidc())
    state = parse_qs(urlsplit(gx.sso.get_login_url(setup.developer_id).authorize_url).query)["state"][0]
    unknown = setup.http("POST", "/sso/callback/oidc", json={"code": "c", "state": "made-up"})
    assert unknown.status_code == 400 and "unknown SSO state" in unknown.json()["message"]
    missing_code = setup.http("POST", "/sso/callback/oidc", json={"state": state})
    assert missing_code.status_code == 400 and "code" in missing_code.json()["message"]
    with pytest.raises(GrantexApiError) as first:
        gx.sso.handle_oidc_callback(SsoOidcCallbackParams(code="abc", state=state))
    assert first.value.status_code == 501 and first.value.code == "NOT_AVAILABLE_LOCALLY"
    assert "no calls to identity providers" in str(first.value)
    reused = setup.http("POST", "/sso/callback/oidc", json={"code": "c", "state": state})
    assert reused.status_code == 400 and "already used" in reused.json()["message"]
    legacy = setup.http("GET", "/sso/callback", params={"code": "c", "state": "nope"})
    assert legacy.status_code == 400
    with pytest.raises(GrantexApiError) as legacy_sdk:
        gx.sso.handle_callback("c", "nope")
    assert legacy_sdk.value.status_code == 400


def test_an_expired_state_is_refused(tmp_path: Path) -> None:
    from helpers import MovableClock

    path = tmp_path / "grantex.db"
    clock = MovableClock()
    with Ledger(path) as ledger:
        key = developers.create_api_key(ledger, developers.default_developer(ledger).id, "sdk").key
        dev = developers.default_developer(ledger).id
    with running_server(path, webhook_delivery=False, clock=clock) as server:
        gx = grantex.Grantex(api_key=key, base_url=server.base_url, max_retries=0)
        gx.sso.create_connection(oidc())
        state = parse_qs(urlsplit(gx.sso.get_login_url(dev).authorize_url).query)["state"][0]
        clock.advance(601)
        expired = httpx.post(server.base_url + "/sso/callback/oidc", json={"code": "c", "state": state})
        assert expired.status_code == 400 and "expired" in expired.json()["message"]
