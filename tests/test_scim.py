"""SCIM 2.0 over HTTP (issue 12, SDK-SURFACE §6): the official SDK end to end, the conformance
suite's checks with a SCIM token as bearer, and bad input in the SCIM error shape."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grantex
import httpx
import pytest
from grantex import CreateScimUserParams, GrantexApiError, GrantexAuthError

from grantex_local import Ledger, developers
from grantex_local.server.testing import RunningServer, running_server

SCIM_MEDIA = "application/scim+json"
ERROR_SCHEMA = "urn:ietf:params:scim:api:messages:2.0:Error"


@dataclass
class Setup:
    path: Path
    server: RunningServer
    key: str
    other_key: str

    def sdk(self, key: str | None = None) -> grantex.Grantex:
        return grantex.Grantex(api_key=key or self.key, base_url=self.server.base_url, max_retries=0)

    def http(self, method: str, path: str, bearer: str | None, **kwargs: Any) -> httpx.Response:
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
        key = developers.create_api_key(ledger, developers.default_developer(ledger).id, "sdk").key
        other = developers.create_developer(ledger, "Other", sandbox=True)
        other_key = developers.create_api_key(ledger, other.id, "sdk").key
    with running_server(path, webhook_delivery=False) as server:
        yield Setup(path, server, key, other_key)


def assert_scim_error(response: httpx.Response, status: int, scim_type: str | None = None) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith(SCIM_MEDIA)
    body = response.json()
    assert body["schemas"] == [ERROR_SCHEMA]
    assert body["status"] == str(status)
    assert isinstance(body["detail"], str) and body["detail"]
    assert "message" not in body and "code" not in body
    if scim_type is not None:
        assert body["scimType"] == scim_type
    return body


def test_every_sdk_method_parses(setup: Setup) -> None:
    gx = setup.sdk()
    made = gx.scim.create_token("okta")
    assert made.id.startswith("scimtok_") and len(made.token) == 64
    int(made.token, 16)
    listed = gx.scim.list_tokens()
    assert [t.id for t in listed.tokens] == [made.id]
    assert made.token not in setup.http("GET", "/v1/scim/tokens", setup.key).text

    user = gx.scim.create_user(CreateScimUserParams(
        user_name="alice@example.com", display_name="Alice", external_id="okta-1",
        emails=[{"value": "alice@example.com", "primary": True}]))
    assert user.id.startswith("scimuser_") and user.active is True
    assert user.meta.resource_type == "User" and user.emails[0].primary is True
    assert gx.scim.get_user(user.id).user_name == "alice@example.com"
    page = gx.scim.list_users(start_index=1, count=10)
    assert page.total_results == 1 and page.items_per_page == 1 and page.resources[0].id == user.id
    replaced = gx.scim.replace_user(user.id, CreateScimUserParams(user_name="alice2@example.com",
                                                                  active=True))
    assert replaced.user_name == "alice2@example.com" and replaced.display_name is None
    patched = gx.scim.update_user(user.id, [{"op": "Replace", "path": "active", "value": "False"},
                                            {"op": "add", "value": {"displayName": "Alice B"}}])
    assert patched.active is False and patched.display_name == "Alice B"
    gx.scim.delete_user(user.id)
    with pytest.raises(GrantexApiError) as gone:
        gx.scim.get_user(user.id)
    assert gone.value.status_code == 404
    gx.scim.revoke_token(made.id)
    assert gx.scim.list_tokens().tokens == ()
    with pytest.raises(GrantexApiError) as again:
        gx.scim.revoke_token(made.id)
    assert again.value.status_code == 404


def test_conformance_suite_with_the_scim_token(setup: Setup) -> None:
    made = setup.http("POST", "/v1/scim/tokens", setup.key, json={"label": "conformance"})
    assert made.status_code == 201 and made.json()["token"]
    token = made.json()["token"]
    assert isinstance(setup.http("GET", "/v1/scim/tokens", setup.key).json()["tokens"], list)
    spc = setup.http("GET", "/scim/v2/ServiceProviderConfig", None)
    assert spc.status_code == 200 and "schemas" in spc.json()
    assert spc.headers["content-type"].startswith(SCIM_MEDIA)
    assert spc.json()["filter"]["supported"] is False
    created = setup.http("POST", "/scim/v2/Users", token,
                         json={"userName": "bob@example.com", "displayName": "Bob"},
                         headers={"Content-Type": SCIM_MEDIA})
    assert created.status_code == 201, created.text
    assert created.headers["content-type"].startswith(SCIM_MEDIA)
    body = created.json()
    assert body["id"] and body["userName"] == "bob@example.com" and body["schemas"]
    assert created.headers["location"] == body["meta"]["location"]
    listed = setup.http("GET", "/scim/v2/Users", token)
    assert listed.status_code == 200 and listed.json()["totalResults"] == 1
    assert "Resources" in listed.json()
    assert setup.http("DELETE", f"/scim/v2/Users/{body['id']}", token).status_code == 204
    # lastUsedAt moves when the token is used
    tokens = setup.http("GET", "/v1/scim/tokens", setup.key).json()["tokens"]
    assert tokens[0]["lastUsedAt"] is not None
    assert setup.http("DELETE", f"/v1/scim/tokens/{made.json()['id']}", setup.key).status_code == 204


def test_missing_username_is_400_scim_and_writes_nothing(setup: Setup) -> None:
    before = setup.count("scim_users"), setup.count("audit_entries")
    for body in ({"displayName": "No name"}, {"userName": ""}, {"userName": 5}):
        assert_scim_error(setup.http("POST", "/scim/v2/Users", setup.key, json=body), 400, "invalidValue")
    assert_scim_error(setup.http("POST", "/scim/v2/Users", setup.key, content=b"{not json",
                                 headers={"Content-Type": SCIM_MEDIA}), 400, "invalidSyntax")
    assert_scim_error(setup.http("POST", "/scim/v2/Users", setup.key, json=["a"]), 400, "invalidValue")
    assert_scim_error(setup.http("POST", "/scim/v2/Users", setup.key), 400)
    assert (setup.count("scim_users"), setup.count("audit_entries")) == before
    with pytest.raises(GrantexApiError) as caught:
        setup.sdk().scim.create_user(CreateScimUserParams(user_name=""))
    assert caught.value.status_code == 400


def test_duplicate_username_is_409_uniqueness(setup: Setup) -> None:
    gx = setup.sdk()
    first = gx.scim.create_user(CreateScimUserParams(user_name="carol@example.com"))
    before = setup.count("audit_entries")
    dup = setup.http("POST", "/scim/v2/Users", setup.key, json={"userName": "Carol@Example.com"})
    assert_scim_error(dup, 409, "uniqueness")
    other = gx.scim.create_user(CreateScimUserParams(user_name="dave@example.com"))
    assert_scim_error(setup.http("PUT", f"/scim/v2/Users/{other.id}", setup.key,
                                 json={"userName": "carol@example.com"}), 409, "uniqueness")
    assert_scim_error(setup.http("PATCH", f"/scim/v2/Users/{other.id}", setup.key, json={
        "Operations": [{"op": "replace", "path": "userName", "value": "carol@example.com"}]}),
        409, "uniqueness")
    assert setup.count("scim_users") == 2
    assert setup.count("audit_entries") == before + 1  # only dave's creation
    assert gx.scim.get_user(first.id).user_name == "carol@example.com"


def test_filters(setup: Setup) -> None:
    gx = setup.sdk()
    for name, ext in (("erin@example.com", "e-1"), ('fr"ank@example.com', "f-1")):
        gx.scim.create_user(CreateScimUserParams(user_name=name, external_id=ext))
    found = setup.http("GET", "/scim/v2/Users", setup.key,
                       params={"filter": 'userName eq "ERIN@example.com"'})
    assert found.status_code == 200 and found.json()["totalResults"] == 1
    assert found.json()["Resources"][0]["userName"] == "erin@example.com"
    quoted = setup.http("GET", "/scim/v2/Users", setup.key,
                        params={"filter": r'userName eq "fr\"ank@example.com"'})
    assert quoted.json()["totalResults"] == 1
    by_ext = setup.http("GET", "/scim/v2/Users", setup.key, params={"filter": 'externalId eq "f-1"'})
    assert [u["externalId"] for u in by_ext.json()["Resources"]] == ["f-1"]
    none = setup.http("GET", "/scim/v2/Users", setup.key, params={"filter": 'userName eq "nobody"'})
    assert none.json()["totalResults"] == 0 and none.json()["Resources"] == []
    for bad in ('userName co "erin"', 'displayName eq "x"', 'userName eq "a" or userName eq "b"', "junk"):
        assert_scim_error(setup.http("GET", "/scim/v2/Users", setup.key, params={"filter": bad}),
                          400, "invalidFilter")


def test_paging_and_count_clamp(setup: Setup) -> None:
    gx = setup.sdk()
    ids = [gx.scim.create_user(CreateScimUserParams(user_name=f"u{i}@example.com")).id for i in range(5)]
    page = gx.scim.list_users(start_index=2, count=2)
    assert [u.id for u in page.resources] == ids[1:3]
    assert (page.total_results, page.start_index, page.items_per_page) == (5, 2, 2)
    zero = setup.http("GET", "/scim/v2/Users?count=0", setup.key).json()
    assert zero["itemsPerPage"] == 1
    big = setup.http("GET", "/scim/v2/Users?count=5000&startIndex=0", setup.key).json()
    assert big["itemsPerPage"] == 5 and big["startIndex"] == 1
    assert_scim_error(setup.http("GET", "/scim/v2/Users?count=many", setup.key), 400, "invalidValue")


def test_patch_refuses_what_it_does_not_understand(setup: Setup) -> None:
    user = setup.sdk().scim.create_user(CreateScimUserParams(user_name="gina@example.com", display_name="G"))
    before = setup.count("audit_entries")
    url = f"/scim/v2/Users/{user.id}"
    assert_scim_error(setup.http("PATCH", url, setup.key, json={
        "Operations": [{"op": "replace", "path": "displayName", "value": "Changed"},
                       {"op": "remove", "path": "displayName"}]}), 400, "invalidValue")
    assert_scim_error(setup.http("PATCH", url, setup.key, json={
        "Operations": [{"op": "replace", "path": "name.givenName", "value": "x"}]}), 400, "invalidPath")
    assert_scim_error(setup.http("PATCH", url, setup.key, json={"Operations": []}), 400, "invalidValue")
    assert_scim_error(setup.http("PATCH", url, setup.key, json={
        "Operations": [{"op": "replace", "path": "active", "value": "maybe"}]}), 400, "invalidValue")
    assert setup.sdk().scim.get_user(user.id).display_name == "G"  # the first op was not applied
    assert setup.count("audit_entries") == before


def test_unknown_ids_and_endpoints_are_scim_404(setup: Setup) -> None:
    assert_scim_error(setup.http("GET", "/scim/v2/Users/scimuser_nope", setup.key), 404, "noTarget")
    assert_scim_error(setup.http("PUT", "/scim/v2/Users/scimuser_nope", setup.key,
                                 json={"userName": "x"}), 404, "noTarget")
    assert_scim_error(setup.http("DELETE", "/scim/v2/Users/scimuser_nope", setup.key), 404, "noTarget")
    assert_scim_error(setup.http("GET", "/scim/v2/Groups", setup.key), 404)


def test_missing_unknown_and_revoked_tokens_are_401_scim(setup: Setup) -> None:
    gx = setup.sdk()
    made = gx.scim.create_token("entra")
    assert setup.http("GET", "/scim/v2/Users", made.token).status_code == 200
    assert_scim_error(setup.http("GET", "/scim/v2/Users", None), 401)
    assert_scim_error(setup.http("GET", "/scim/v2/Users", "0" * 64), 401)
    gx.scim.revoke_token(made.id)
    before = setup.count("scim_users")
    assert_scim_error(setup.http("GET", "/scim/v2/Users", made.token), 401)
    assert_scim_error(setup.http("POST", "/scim/v2/Users", made.token, json={"userName": "x@y"}), 401)
    assert setup.count("scim_users") == before
    with pytest.raises(GrantexAuthError):
        setup.sdk(made.token).scim.list_users()


def test_another_developer_sees_nothing(setup: Setup) -> None:
    mine = setup.sdk().scim
    user = mine.create_user(CreateScimUserParams(user_name="hank@example.com"))
    token = mine.create_token("mine")
    theirs = setup.sdk(setup.other_key).scim
    their_token = theirs.create_token("theirs").token
    assert theirs.list_users().total_results == 0
    for bearer in (setup.other_key, their_token):
        assert setup.http("GET", "/scim/v2/Users", bearer).json()["totalResults"] == 0
        assert_scim_error(setup.http("GET", f"/scim/v2/Users/{user.id}", bearer), 404, "noTarget")
        assert_scim_error(setup.http("PATCH", f"/scim/v2/Users/{user.id}", bearer, json={
            "Operations": [{"op": "replace", "path": "active", "value": False}]}), 404, "noTarget")
        assert_scim_error(setup.http("DELETE", f"/scim/v2/Users/{user.id}", bearer), 404, "noTarget")
    # the same userName is free for another developer
    assert theirs.create_user(CreateScimUserParams(user_name="hank@example.com")).id != user.id
    assert [t.label for t in theirs.list_tokens().tokens] == ["theirs"]
    with pytest.raises(GrantexApiError) as caught:
        theirs.revoke_token(token.id)
    assert caught.value.status_code == 404
    assert mine.get_user(user.id).active is True


def test_the_token_is_never_stored_or_shown_again(setup: Setup) -> None:
    made = setup.sdk().scim.create_token("secret-check")
    setup.http("GET", "/scim/v2/Users", made.token)
    texts = [setup.http("GET", "/v1/scim/tokens", setup.key).text,
             setup.http("GET", "/v1/audit/entries", setup.key).text]
    assert all(made.token not in text for text in texts)
    raw = b"".join(p.read_bytes() for p in setup.path.parent.iterdir() if p.name.startswith("grantex.db"))
    assert made.token.encode() not in raw
