"""SSO configuration, locally (SDK-SURFACE §7): connections, the legacy config, enforcement,
sessions, the login redirect and the callbacks' input checks.

What is stored and what is only echoed, because a developer testing enterprise SSO here must
know exactly what a local server can and cannot prove:

- **Stored**: each connection's non-secret settings (issuer, client id, SAML and LDAP
  endpoints, domains, group mappings, ...), its status, the legacy config, the enforcement
  flag, one-time login states (SHA-256 of the state, nonce, expiry) and sessions.
- **Never stored**: secrets (OIDC ``clientSecret``, SAML ``idpCertificate``, LDAP
  ``ldapBindPassword``). ``secret_fingerprint`` holds only the fact that one was given
  (:data:`SECRET_GIVEN`, not a hash: an unsalted hash of a weak LDAP password could be
  brute-forced by anyone holding the file), and a response says ``clientSecretSet: true`` and
  so on; no response, audit entry or event holds the secret.
- **Never fetched**: nothing here opens a network connection. ``test`` checks that the stored
  settings are well-formed and echoes the endpoints they imply (the OIDC discovery URL is
  derived, not fetched); ``login`` builds the identity provider's URL from the stored
  settings; the callbacks check their input (a known, unexpired, unused state) and then raise
  :class:`NotAvailableLocally`, because finishing a login needs a call to the identity
  provider (code exchange, assertion signature check, LDAP bind). The ``enforce`` flags are
  stored and returned, and enforced nowhere (as in the reference).
"""

from __future__ import annotations

import hashlib
import json
import secrets
import sqlite3
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode, urlsplit

from . import errors
from .audit.trail import record
from .clock import iso, parse_iso
from .events import emit
from .ids import new_id
from .text import check_json, check_name

if TYPE_CHECKING:
    from .founding import Ledger

PROTOCOLS = ("oidc", "saml", "ldap")
STATUSES = ("active", "inactive", "testing")
STATE_TTL = 600
"""Seconds a login state stays usable: long enough to sign in at an identity provider."""
MAX_TEXT = 2048

SECRET_FIELD = {"oidc": "clientSecret", "saml": "idpCertificate", "ldap": "ldapBindPassword"}
REQUIRED = {
    "oidc": ("issuerUrl", "clientId", "clientSecret"),
    "saml": ("idpEntityId", "idpSsoUrl", "idpCertificate", "spEntityId", "spAcsUrl"),
    "ldap": ("ldapUrl", "ldapBindDn", "ldapBindPassword", "ldapSearchBase"),
}
_TEXT_FIELDS = ("issuerUrl", "clientId", "authorizationEndpoint", "idpEntityId", "idpSsoUrl",
                "spEntityId", "spAcsUrl", "groupAttribute", "ldapUrl", "ldapBindDn", "ldapSearchBase",
                "ldapSearchFilter", "ldapGroupSearchBase", "ldapGroupSearchFilter")
_BOOL_FIELDS = ("jitProvisioning", "enforce", "ldapTlsEnabled")
_LIST_FIELDS = ("domains", "defaultScopes")
_SECRETS = tuple(SECRET_FIELD.values())
SETTABLE = frozenset((*_TEXT_FIELDS, *_BOOL_FIELDS, *_LIST_FIELDS, "groupMappings", *_SECRETS))

def fingerprint(secret: str) -> str:
    """SHA-256 of a random one-time value (a login state): safe only for secrets nobody chose."""
    return hashlib.sha256(secret.encode("utf-8", "surrogatepass")).hexdigest()


SECRET_GIVEN = "given"
"""What the ``secret_fingerprint`` column holds for a secret a person chose: nothing derived
from it, only that it was given."""


class NotAvailableLocally(errors.GrantexLocalError):
    """The step needs the identity provider (a code exchange, a signature check, a bind)."""

    code = "NOT_AVAILABLE_LOCALLY"
    status = 501


class ConnectionTestFailed(errors.InvalidInput):
    """The stored settings are not well-formed; the reference answers 422 ``{success: false}``."""

    code = "SSO_TEST_FAILED"
    status = 422

    def __init__(self, protocol: str, message: str) -> None:
        super().__init__(message)
        self.protocol = protocol


# ── connections ──────────────────────────────────────────────────────────────

@dataclass(frozen=True)
class Connection:
    id: str
    developer_id: str
    name: str
    protocol: str
    status: str
    settings: dict[str, Any]
    secret_set: bool
    created_at: str
    updated_at: str

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"id": self.id, "developerId": self.developer_id, "name": self.name,
                               "protocol": self.protocol, "status": self.status,
                               "domains": [], "jitProvisioning": False, "enforce": False,
                               "groupMappings": {}, "defaultScopes": []}
        out.update(self.settings)
        out[SECRET_FIELD[self.protocol] + "Set"] = self.secret_set
        out.update(createdAt=self.created_at, updatedAt=self.updated_at)
        return out


def _connection(row: sqlite3.Row) -> Connection:
    return Connection(row["id"], row["developer_id"], row["name"], row["protocol"], row["status"],
                      json.loads(row["settings"]), row["secret_fingerprint"] is not None,
                      row["created_at"], row["updated_at"])


def _text(value: object, field: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise errors.InvalidInput(f"{field} must be a non-empty string")
    if len(value) > MAX_TEXT:
        raise errors.InvalidInput(f"{field} must be at most {MAX_TEXT} characters")
    return value.strip()


def _settings_from(body: dict[str, Any], protocol: str) -> tuple[dict[str, Any], str | None]:
    """The non-secret settings of ``body`` and the protocol's secret (or None), each checked."""
    unknown = sorted(set(body) - SETTABLE - {"name", "protocol", "status"})
    if unknown:
        raise errors.InvalidInput(f"unknown fields: {', '.join(u[:40] for u in unknown[:5])}")
    for field in _SECRETS:
        if field in body and field != SECRET_FIELD[protocol]:
            raise errors.InvalidInput(f"{field} does not apply to a {protocol} connection")
    settings: dict[str, Any] = {}
    for field in _TEXT_FIELDS:
        if field in body and body[field] is not None:
            settings[field] = _text(body[field], field)
    for field in _BOOL_FIELDS:
        if field in body and body[field] is not None:
            if not isinstance(body[field], bool):
                raise errors.InvalidInput(f"{field} must be a boolean")
            settings[field] = body[field]
    for field in _LIST_FIELDS:
        if field in body and body[field] is not None:
            value = body[field]
            if not isinstance(value, list) or not all(isinstance(v, str) and v.strip() for v in value):
                raise errors.InvalidInput(f"{field} must be a list of non-empty strings")
            settings[field] = [v.strip() for v in value]
    if body.get("groupMappings") is not None:
        mappings = body["groupMappings"]
        if not isinstance(mappings, dict) or not all(
                isinstance(v, list) and all(isinstance(s, str) for s in v) for v in mappings.values()):
            raise errors.InvalidInput("groupMappings must map group names to lists of scopes")
        settings["groupMappings"] = mappings
    secret = body.get(SECRET_FIELD[protocol])
    if secret is not None:
        secret = _text(secret, SECRET_FIELD[protocol])
    return settings, secret


def _body(body: object) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise errors.InvalidInput("the request body must be a JSON object")
    check_json(body, "body")
    return body


def _name(value: object) -> str:
    name = _text(value, "name")
    check_name(name, "name")
    return name


def _status(value: object) -> str:
    if value not in STATUSES:
        raise errors.InvalidInput(f"status must be one of {', '.join(STATUSES)}")
    assert isinstance(value, str)
    return value


def _emit(ledger: Ledger, conn: sqlite3.Connection, type: str, connection: Connection) -> None:
    emit(ledger, conn, connection.developer_id, type,
         {"id": connection.id, "name": connection.name, "protocol": connection.protocol,
          "status": connection.status})


def create_connection(ledger: Ledger, developer_id: str, body: object) -> Connection:
    data = _body(body)
    name = _name(data.get("name"))
    protocol = data.get("protocol")
    if protocol not in PROTOCOLS:
        raise errors.InvalidInput(f"protocol must be one of {', '.join(PROTOCOLS)}")
    assert isinstance(protocol, str)
    status = _status(data.get("status", "active"))
    settings, secret = _settings_from(data, protocol)
    for field in REQUIRED[protocol]:
        if field not in settings and not (field == SECRET_FIELD[protocol] and secret is not None):
            raise errors.InvalidInput(f"{field} is required for a {protocol} connection")
    now = iso(ledger.now())
    connection = Connection(new_id("sso_connection"), developer_id, name, protocol, status, settings,
                            secret is not None, now, now)
    with ledger.write() as conn:
        conn.execute("INSERT INTO sso_connections (id, developer_id, name, protocol, status, settings, "
                     "secret_fingerprint, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                     (connection.id, developer_id, name, protocol, status, json.dumps(settings),
                      SECRET_GIVEN if secret is not None else None, now, now))
        record(ledger, conn, developer_id, "grantex.sso.connection.created",
               metadata={"connectionId": connection.id, "name": name, "protocol": protocol})
        _emit(ledger, conn, "sso.connection.created", connection)
    return connection


def list_connections(ledger: Ledger, developer_id: str) -> list[Connection]:
    """Oldest first, as the reference lists them (and as login picks among them)."""
    return [_connection(r) for r in ledger.query(
        "SELECT * FROM sso_connections WHERE developer_id = ? ORDER BY created_at, id", (developer_id,))]


def get_connection(ledger: Ledger, developer_id: str, connection_id: str) -> Connection:
    row = ledger.query_one("SELECT * FROM sso_connections WHERE id = ? AND developer_id = ?",
                           (connection_id, developer_id))
    if row is None:
        raise errors.NotFound(f"SSO connection {connection_id[:60]!r} not found")
    return _connection(row)


def update_connection(ledger: Ledger, developer_id: str, connection_id: str, body: object) -> Connection:
    data = _body(body)
    if not data:
        raise errors.InvalidInput("nothing to update: send at least one field")
    if "protocol" in data:
        raise errors.InvalidInput("protocol cannot be changed: create a new connection instead")
    current = get_connection(ledger, developer_id, connection_id)
    name = _name(data["name"]) if "name" in data else current.name
    status = _status(data["status"]) if "status" in data else current.status
    changes, secret = _settings_from(data, current.protocol)
    settings = {**current.settings, **changes}
    now = iso(ledger.now())
    updated = Connection(current.id, developer_id, name, current.protocol, status, settings,
                         current.secret_set or secret is not None, current.created_at, now)
    with ledger.write() as conn:
        params: list[Any] = [name, status, json.dumps(settings), now]
        sql = "UPDATE sso_connections SET name = ?, status = ?, settings = ?, updated_at = ?"
        if secret is not None:
            sql += ", secret_fingerprint = ?"
            params.append(SECRET_GIVEN)
        if not conn.execute(sql + " WHERE id = ? AND developer_id = ?",
                            [*params, connection_id, developer_id]).rowcount:
            raise errors.NotFound(f"SSO connection {connection_id[:60]!r} not found")
        record(ledger, conn, developer_id, "grantex.sso.connection.updated",
               metadata={"connectionId": connection_id, "fields": sorted(data),
                         "secretChanged": secret is not None})
        _emit(ledger, conn, "sso.connection.updated", updated)
    return updated


def delete_connection(ledger: Ledger, developer_id: str, connection_id: str) -> None:
    current = get_connection(ledger, developer_id, connection_id)
    with ledger.write() as conn:
        if not conn.execute("DELETE FROM sso_connections WHERE id = ? AND developer_id = ?",
                            (connection_id, developer_id)).rowcount:
            raise errors.NotFound(f"SSO connection {connection_id[:60]!r} not found")
        conn.execute("DELETE FROM sso_states WHERE connection_id = ?", (connection_id,))
        record(ledger, conn, developer_id, "grantex.sso.connection.deleted",
               metadata={"connectionId": connection_id, "name": current.name})
        _emit(ledger, conn, "sso.connection.deleted", current)


def _check_url(value: object, field: str, schemes: tuple[str, ...] = ("https", "http")) -> str:
    if not isinstance(value, str):
        raise errors.InvalidInput(f"{field} is not set")
    try:
        parts = urlsplit(value)
        _ = parts.port
    except ValueError:
        raise errors.InvalidInput(f"{field} {value[:100]!r} is not a valid URL") from None
    if parts.scheme.lower() not in schemes or not parts.hostname:
        raise errors.InvalidInput(f"{field} {value[:100]!r} must be an absolute "
                                  f"{' or '.join(s + '://' for s in schemes)} URL with a host")
    if any(c.isspace() for c in value):
        raise errors.InvalidInput(f"{field} must not contain spaces")
    return value


def _authorize_endpoint(settings: dict[str, Any]) -> str:
    """``authorizationEndpoint`` when configured, else ``<issuerUrl>/authorize`` (many IdPs,
    e.g. Auth0 and Okta's org server, use it; others need authorizationEndpoint set, since
    discovery is never fetched)."""
    explicit = settings.get("authorizationEndpoint")
    return str(explicit) if explicit else str(settings.get("issuerUrl", "")).rstrip("/") + "/authorize"


def test_connection(ledger: Ledger, developer_id: str, connection_id: str) -> dict[str, Any]:
    """Check the stored settings without any network call; raise :class:`ConnectionTestFailed`
    naming the first bad one. What is echoed is derived, not discovered: ``discoveryUrl`` is
    where the provider's metadata would be, and was not fetched."""
    current = get_connection(ledger, developer_id, connection_id)
    s = current.settings
    out: dict[str, Any] = {"success": True, "protocol": current.protocol, "networkChecked": False}
    try:
        if current.protocol == "oidc":
            issuer = _check_url(s.get("issuerUrl"), "issuerUrl").rstrip("/")
            authorize = _check_url(_authorize_endpoint(s), "authorizationEndpoint")
            out.update(issuer=issuer, authorizationEndpoint=authorize,
                       discoveryUrl=issuer + "/.well-known/openid-configuration")
        elif current.protocol == "saml":
            out.update(idpEntityId=s.get("idpEntityId"),
                       idpSsoUrl=_check_url(s.get("idpSsoUrl"), "idpSsoUrl"),
                       spAcsUrl=_check_url(s.get("spAcsUrl"), "spAcsUrl"))
        else:
            out.update(ldapUrl=_check_url(s.get("ldapUrl"), "ldapUrl", ("ldap", "ldaps")))
        if not current.secret_set:
            raise errors.InvalidInput(f"{SECRET_FIELD[current.protocol]} is not set")
    except errors.InvalidInput as exc:
        raise ConnectionTestFailed(current.protocol, exc.message) from None
    out["message"] = ("settings are well-formed; no identity provider was contacted "
                      "(grantex-local makes no calls to identity providers)")
    return out


# ── enforcement, sessions, legacy config ────────────────────────────────────

def set_enforcement(ledger: Ledger, developer_id: str, enforce: object) -> dict[str, Any]:
    if not isinstance(enforce, bool):
        raise errors.InvalidInput("enforce must be a boolean")
    now = iso(ledger.now())
    with ledger.write() as conn:
        conn.execute("INSERT INTO sso_enforcement (developer_id, enforce, updated_at) VALUES (?, ?, ?) "
                     "ON CONFLICT (developer_id) DO UPDATE SET enforce = excluded.enforce, "
                     "updated_at = excluded.updated_at", (developer_id, int(enforce), now))
        record(ledger, conn, developer_id, "grantex.sso.enforcement.set", metadata={"enforce": enforce})
    return {"enforce": enforce, "developerId": developer_id}


def list_sessions(ledger: Ledger, developer_id: str) -> list[dict[str, Any]]:
    """Unexpired, unrevoked sessions, newest first. Nothing creates them locally (the callbacks
    need an identity provider), so this is empty unless another tool wrote some."""
    now = ledger.now()
    rows = ledger.query("SELECT * FROM sso_sessions WHERE developer_id = ? AND revoked_at IS NULL "
                        "ORDER BY created_at DESC, id DESC", (developer_id,))
    out = []
    for r in rows:
        if parse_iso(r["expires_at"]) <= now:
            continue
        item: dict[str, Any] = {"id": r["id"], "connectionId": r["connection_id"],
                                "idpSubject": r["idp_subject"], "groups": json.loads(r["groups"]),
                                "mappedScopes": json.loads(r["mapped_scopes"]),
                                "expiresAt": r["expires_at"], "createdAt": r["created_at"]}
        for key, column in (("principalId", "principal_id"), ("email", "email"), ("name", "name")):
            if r[column] is not None:
                item[key] = r[column]
        out.append(item)
    return out


def revoke_session(ledger: Ledger, developer_id: str, session_id: str) -> None:
    now = iso(ledger.now())
    with ledger.write() as conn:
        row = conn.execute("SELECT expires_at FROM sso_sessions WHERE id = ? AND developer_id = ? "
                           "AND revoked_at IS NULL", (session_id, developer_id)).fetchone()
        if row is None or parse_iso(row["expires_at"]) <= ledger.now():
            raise errors.NotFound(f"SSO session {session_id[:60]!r} not found")
        conn.execute("UPDATE sso_sessions SET revoked_at = ? WHERE id = ?", (now, session_id))
        record(ledger, conn, developer_id, "grantex.sso.session.revoked", metadata={"sessionId": session_id})


def _config(row: sqlite3.Row) -> dict[str, Any]:
    return {"issuerUrl": row["issuer_url"], "clientId": row["client_id"],
            "redirectUri": row["redirect_uri"], "clientSecretSet": True,
            "createdAt": row["created_at"], "updatedAt": row["updated_at"]}


def save_config(ledger: Ledger, developer_id: str, body: object) -> dict[str, Any]:
    """The legacy single OIDC config, upserted. The client secret is not kept (only that it was given)."""
    data = _body(body)
    unknown = sorted(set(data) - {"issuerUrl", "clientId", "clientSecret", "redirectUri"})
    if unknown:
        raise errors.InvalidInput(f"unknown fields: {', '.join(u[:40] for u in unknown[:5])}")
    values = {}
    for field in ("issuerUrl", "clientId", "clientSecret", "redirectUri"):
        if data.get(field) is None:
            raise errors.InvalidInput(f"{field} is required")
        values[field] = _text(data[field], field)
    _check_url(values["issuerUrl"], "issuerUrl")
    _check_url(values["redirectUri"], "redirectUri")
    now = iso(ledger.now())
    with ledger.write() as conn:
        conn.execute(
            "INSERT INTO sso_config (developer_id, issuer_url, client_id, redirect_uri, secret_fingerprint, "
            "created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (developer_id) DO UPDATE SET "
            "issuer_url = excluded.issuer_url, client_id = excluded.client_id, "
            "redirect_uri = excluded.redirect_uri, secret_fingerprint = excluded.secret_fingerprint, "
            "updated_at = excluded.updated_at",
            (developer_id, values["issuerUrl"], values["clientId"], values["redirectUri"],
             SECRET_GIVEN, now, now))
        record(ledger, conn, developer_id, "grantex.sso.config.saved",
               metadata={"issuerUrl": values["issuerUrl"], "clientId": values["clientId"]})
        row = conn.execute("SELECT * FROM sso_config WHERE developer_id = ?", (developer_id,)).fetchone()
    return _config(row)


def get_config(ledger: Ledger, developer_id: str) -> dict[str, Any]:
    row = ledger.query_one("SELECT * FROM sso_config WHERE developer_id = ?", (developer_id,))
    if row is None:
        raise errors.NotFound("no SSO configuration")
    return _config(row)


def delete_config(ledger: Ledger, developer_id: str) -> None:
    with ledger.write() as conn:
        if not conn.execute("DELETE FROM sso_config WHERE developer_id = ?", (developer_id,)).rowcount:
            raise errors.NotFound("no SSO configuration")
        record(ledger, conn, developer_id, "grantex.sso.config.deleted", metadata={})


# ── login and callbacks ─────────────────────────────────────────────────────

def login(ledger: Ledger, org: object, *, domain: str | None = None, redirect_uri: str | None = None,
          default_redirect: str) -> dict[str, Any]:
    """Where to send the user: the first active connection matching ``domain``, else the
    oldest active one. OIDC: ``<authorizationEndpoint or issuerUrl/authorize>?client_id&
    response_type=code&scope=openid email profile&redirect_uri&state&nonce``. SAML:
    ``idpSsoUrl?RelayState=<state>`` (no SAMLRequest is built: an AuthnRequest would need the
    SP's signing setup, and the IdP's answer could not be checked locally anyway). LDAP has no
    redirect: ``authorizeUrl`` is null (the SDK parses it) and ``callbackUrl`` says where to
    POST the credentials. The state is one-time, kept only as its SHA-256, for
    :data:`STATE_TTL` seconds."""
    if not isinstance(org, str) or not org.strip():
        raise errors.InvalidInput("org is required (the developer id whose SSO to use)")
    rows = ledger.query("SELECT * FROM sso_connections WHERE developer_id = ? AND status = 'active' "
                        "ORDER BY created_at, id", (org.strip(),))
    found = [_connection(r) for r in rows]
    if domain:
        matching = [c for c in found if domain.strip().lower() in
                    (d.lower() for d in c.settings.get("domains", []))]
        found = matching or found
    if not found:
        raise errors.NotFound(f"no active SSO connection for org {org[:60]!r}")
    connection = found[0]
    out: dict[str, Any] = {"protocol": connection.protocol, "connectionId": connection.id}
    if connection.protocol == "ldap":
        out.update(authorizeUrl=None, ldapUrl=connection.settings.get("ldapUrl"),
                   callbackUrl=default_redirect.rsplit("/", 1)[0] + "/ldap",
                   message="LDAP has no redirect: POST username, password, connectionId and org "
                           "to /sso/callback/ldap")
        return out
    redirect = _check_url(redirect_uri, "redirect_uri") if redirect_uri else (
        connection.settings.get("spAcsUrl") if connection.protocol == "saml" else default_redirect)
    state, nonce = secrets.token_urlsafe(32), secrets.token_urlsafe(16)
    now = ledger.now()
    with ledger.write() as conn:
        conn.execute("DELETE FROM sso_states WHERE expires_at < ?", (iso(now),))
        conn.execute("INSERT INTO sso_states (id, developer_id, connection_id, state_hash, nonce, "
                     "redirect_uri, created_at, expires_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                     (new_id("sso_state"), connection.developer_id, connection.id, fingerprint(state),
                      nonce, redirect, iso(now), iso(now + STATE_TTL)))
    if connection.protocol == "oidc":
        query = urlencode({"client_id": connection.settings.get("clientId", ""), "response_type": "code",
                           "scope": "openid email profile", "redirect_uri": redirect,
                           "state": state, "nonce": nonce})
        base = _authorize_endpoint(connection.settings)
    else:
        query = urlencode({"RelayState": state})
        base = str(connection.settings.get("idpSsoUrl", ""))
    out["authorizeUrl"] = base + ("&" if "?" in base else "?") + query
    return out


def consume_state(ledger: Ledger, state: object, protocol: str | None) -> str:
    """Spend a login state (known, unexpired, unused, of ``protocol``); its connection id.

    It is spent even though the login cannot finish locally: a state is good for one attempt,
    whatever the attempt's outcome, as at a real server."""
    if not isinstance(state, str) or not state:
        raise errors.InvalidState("state is required")
    now = ledger.now()
    with ledger.write() as conn:
        row = conn.execute("SELECT s.id, s.connection_id, s.expires_at, s.used_at, c.protocol "
                           "FROM sso_states s LEFT JOIN sso_connections c ON c.id = s.connection_id "
                           "WHERE s.state_hash = ?", (fingerprint(state),)).fetchone()
        if row is None or row["protocol"] is None:
            raise errors.InvalidState("unknown SSO state: start again at /sso/login")
        if row["used_at"] is not None:
            raise errors.InvalidState("this SSO state was already used: start again at /sso/login")
        if parse_iso(row["expires_at"]) <= now:
            raise errors.InvalidState("this SSO state has expired: start again at /sso/login")
        if protocol is not None and row["protocol"] != protocol:
            raise errors.InvalidState(f"this SSO state belongs to a {row['protocol']} login, "
                                      f"not {protocol}")
        conn.execute("UPDATE sso_states SET used_at = ? WHERE id = ?", (iso(now), row["id"]))
    return str(row["connection_id"])


def _unavailable(step: str) -> NotAvailableLocally:
    return NotAvailableLocally(f"{step} is not available locally: grantex-local makes no calls to "
                               "identity providers (the input was checked; nothing was exchanged)")


def oidc_callback(ledger: Ledger, body: object) -> None:
    data = _body(body)
    _text(data.get("code"), "code")
    consume_state(ledger, data.get("state"), "oidc")
    raise _unavailable("the OIDC code exchange")


def saml_callback(ledger: Ledger, body: object) -> None:
    data = _body(body)
    _text(data.get("SAMLResponse"), "SAMLResponse")
    consume_state(ledger, data.get("RelayState"), "saml")
    raise _unavailable("checking a SAML assertion")


def ldap_callback(ledger: Ledger, body: object) -> None:
    data = _body(body)
    for field in ("username", "password", "connectionId", "org"):
        _text(data.get(field), field)
    row = ledger.query_one("SELECT protocol, status FROM sso_connections WHERE id = ? AND developer_id = ?",
                           (data["connectionId"], data["org"]))
    if row is None or row["protocol"] != "ldap" or row["status"] != "active":
        raise errors.NotFound("no active LDAP connection with that id for that org")
    raise _unavailable("an LDAP bind")


def legacy_callback(ledger: Ledger, code: object, state: object) -> None:
    _text(code, "code")
    consume_state(ledger, state, "oidc")
    raise _unavailable("the OIDC code exchange")
