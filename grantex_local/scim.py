"""SCIM 2.0 provisioning, locally (SDK-SURFACE §6): bearer tokens and the Users resource.

Why this lives in the library and not in the routes: the rules a provisioning client relies on
(userName unique per developer, case-insensitively as RFC 7643 §4.1.1 says; PATCH applied all
or nothing; every write audited in its own transaction) must hold however the ledger is
reached. The routes only parse the body and render :class:`ScimError` in the SCIM error shape.

Tokens are 64 hex characters, returned once by :func:`create_token`; only their SHA-256 is kept
(the same :func:`~grantex_local.developers.hash_secret` API keys use), so a copied ledger file
cannot provision users. Nothing here logs, audits or returns a token after creation.
"""

from __future__ import annotations

import json
import re
import secrets
import sqlite3
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from . import errors
from .audit.trail import record
from .clock import iso
from .developers import hash_secret
from .ids import new_id
from .text import check_json, check_name, check_text

if TYPE_CHECKING:
    from .founding import Ledger

USER_SCHEMA = "urn:ietf:params:scim:schemas:core:2.0:User"
LIST_SCHEMA = "urn:ietf:params:scim:api:messages:2.0:ListResponse"
ERROR_SCHEMA = "urn:ietf:params:scim:api:messages:2.0:Error"
PATCH_SCHEMA = "urn:ietf:params:scim:api:messages:2.0:PatchOp"
SPC_SCHEMA = "urn:ietf:params:scim:schemas:core:2.0:ServiceProviderConfig"

MAX_COUNT = 200
DEFAULT_COUNT = 100
MAX_TEXT = 512
MAX_EMAILS = 20

class ScimError(errors.GrantexLocalError):
    """An error with its SCIM ``scimType`` (RFC 7644 §3.12), rendered in the SCIM error shape."""

    code = "SCIM_ERROR"

    def __init__(self, status: int, detail: str, scim_type: str | None = None) -> None:
        super().__init__(detail)
        self.status = status
        self.scim_type = scim_type

    def body(self) -> dict[str, Any]:
        """``status`` is a string, as RFC 7644 §3.12 says; the SDK reads neither it nor
        ``detail`` (it shows ``HTTP <code>``), so the string form costs it nothing."""
        out: dict[str, Any] = {"schemas": [ERROR_SCHEMA], "detail": self.message,
                               "status": str(self.status)}
        if self.scim_type is not None:
            out["scimType"] = self.scim_type
        return out


def error_body(status: int, detail: str, scim_type: str | None = None) -> dict[str, Any]:
    return ScimError(status, detail, scim_type).body()


def as_scim_error(exc: errors.GrantexLocalError) -> ScimError:
    """Any library error in SCIM terms: a bad value, no target, or the server's own trouble."""
    if isinstance(exc, ScimError):
        return exc
    status = int(getattr(exc, "status", 400))
    if isinstance(exc, errors.NotFound):
        return ScimError(404, exc.message, "noTarget")
    if status >= 500:
        if isinstance(exc, errors.LedgerBusy):
            return ScimError(503, "the ledger is busy (another process holds the write lock); "
                             "retry shortly")
        return ScimError(500, f"the server could not use its ledger ({exc.code}); see the server log")
    return ScimError(status, exc.message, "invalidValue" if status == 400 else None)


def service_provider_config() -> dict[str, Any]:
    """What this server supports. ``filter.supported`` is false as in the reference: only the
    two equality filters provisioning clients probe with are understood (see :func:`parse_filter`)."""
    return {
        "schemas": [SPC_SCHEMA],
        "documentationUri": "https://github.com/mishrasanjeev/grantex",
        "patch": {"supported": True},
        "bulk": {"supported": False, "maxOperations": 0, "maxPayloadSize": 0},
        "filter": {"supported": False, "maxResults": MAX_COUNT},
        "changePassword": {"supported": False},
        "sort": {"supported": False},
        "etag": {"supported": False},
        "authenticationSchemes": [{
            "name": "OAuth Bearer Token", "type": "oauthbearertoken", "primary": True,
            "description": "A SCIM token from POST /v1/scim/tokens, or the developer's API key",
        }],
        "meta": {"resourceType": "ServiceProviderConfig"},
    }


# ── tokens ───────────────────────────────────────────────────────────────────

@dataclass(frozen=True)
class ScimToken:
    """A token's public face; ``token`` is set only on the object :func:`create_token` returns."""

    id: str
    developer_id: str
    label: str
    created_at: str
    last_used_at: str | None
    token: str | None = None

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"id": self.id, "label": self.label, "createdAt": self.created_at,
                               "lastUsedAt": self.last_used_at}
        if self.token is not None:
            out["token"] = self.token
        return out


def create_token(ledger: Ledger, developer_id: str, label: object) -> ScimToken:
    if not isinstance(label, str) or not label.strip():
        raise errors.InvalidInput("label is required")
    if len(label) > 200:
        raise errors.InvalidInput("label must be at most 200 characters")
    check_name(label, "label")
    token = secrets.token_hex(32)
    token_id = new_id("scim_token")
    now = iso(ledger.now())
    with ledger.write() as conn:
        conn.execute("INSERT INTO scim_tokens (id, developer_id, label, token_hash, created_at) "
                     "VALUES (?, ?, ?, ?, ?)", (token_id, developer_id, label, hash_secret(token), now))
        record(ledger, conn, developer_id, "grantex.scim.token.created",
               metadata={"tokenId": token_id, "label": label})
    return ScimToken(token_id, developer_id, label, now, None, token)


def list_tokens(ledger: Ledger, developer_id: str) -> list[ScimToken]:
    """Live tokens, oldest first; never the token itself (only its hash is kept)."""
    rows = ledger.query("SELECT id, developer_id, label, created_at, last_used_at FROM scim_tokens "
                        "WHERE developer_id = ? AND revoked_at IS NULL ORDER BY created_at, id",
                        (developer_id,))
    return [ScimToken(r["id"], r["developer_id"], r["label"], r["created_at"], r["last_used_at"])
            for r in rows]


def revoke_token(ledger: Ledger, developer_id: str, token_id: str) -> None:
    """Revoke a live token of ``developer_id``; another developer's token is 404 like an unknown one."""
    check_text(token_id, "token id")
    now = iso(ledger.now())
    with ledger.write() as conn:
        changed = conn.execute("UPDATE scim_tokens SET revoked_at = ? WHERE id = ? AND developer_id = ? "
                               "AND revoked_at IS NULL", (now, token_id, developer_id)).rowcount
        if not changed:
            raise errors.NotFound(f"SCIM token {token_id[:60]!r} not found")
        record(ledger, conn, developer_id, "grantex.scim.token.revoked", metadata={"tokenId": token_id})


def developer_for_token(ledger: Ledger, token: str) -> str | None:
    """The developer a live SCIM token belongs to (its ``lastUsedAt`` moved to now), or None."""
    digest = hash_secret(token)
    row = ledger.query_one("SELECT id, developer_id FROM scim_tokens WHERE token_hash = ? "
                           "AND revoked_at IS NULL", (digest,))
    if row is None:
        return None
    with ledger.write() as conn:
        conn.execute("UPDATE scim_tokens SET last_used_at = ? WHERE id = ?", (iso(ledger.now()), row["id"]))
    return str(row["developer_id"])


# ── users ────────────────────────────────────────────────────────────────────

@dataclass(frozen=True)
class ScimUser:
    id: str
    developer_id: str
    user_name: str
    display_name: str | None
    external_id: str | None
    active: bool
    emails: tuple[dict[str, Any], ...]
    created: str
    last_modified: str

    def to_dict(self, base_url: str | None = None) -> dict[str, Any]:
        meta: dict[str, Any] = {"resourceType": "User", "created": self.created,
                                "lastModified": self.last_modified}
        if base_url:
            meta["location"] = f"{base_url.rstrip('/')}/scim/v2/Users/{self.id}"
        out: dict[str, Any] = {"schemas": [USER_SCHEMA], "id": self.id}
        if self.external_id is not None:
            out["externalId"] = self.external_id
        out["userName"] = self.user_name
        if self.display_name is not None:
            out["displayName"] = self.display_name
        out.update(active=self.active, emails=[dict(e) for e in self.emails], meta=meta)
        return out


@dataclass
class _Fields:
    """A user's writable attributes while a create, replace or patch is being checked."""

    user_name: str
    display_name: str | None
    external_id: str | None
    active: bool
    emails: list[dict[str, Any]]


def _user(row: sqlite3.Row) -> ScimUser:
    return ScimUser(row["id"], row["developer_id"], row["user_name"], row["display_name"],
                    row["external_id"], bool(row["active"]), tuple(json.loads(row["emails"])),
                    row["created_at"], row["last_modified"])


def _invalid(detail: str) -> ScimError:
    return ScimError(400, detail, "invalidValue")


def _text(value: object, field: str, *, required: bool = False) -> str | None:
    if value is None and not required:
        return None
    if not isinstance(value, str) or (required and not value.strip()):
        raise _invalid(f"{field} is required and must be a non-empty string" if required
                       else f"{field} must be a string")
    if len(value) > MAX_TEXT:
        raise _invalid(f"{field} must be at most {MAX_TEXT} characters")
    try:
        check_name(value, field)
    except errors.InvalidInput as exc:
        raise _invalid(exc.message) from None
    return value


def _bool(value: object, field: str) -> bool:
    """A boolean; the strings "true"/"false" too, because Microsoft Entra sends ``"False"``."""
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in ("true", "false"):
        return value.strip().lower() == "true"
    raise _invalid(f"{field} must be a boolean")


def _emails(value: object) -> list[dict[str, Any]]:
    if value is None:
        return []
    if not isinstance(value, list) or len(value) > MAX_EMAILS:
        raise _invalid(f"emails must be a list of at most {MAX_EMAILS} objects")
    out: list[dict[str, Any]] = []
    for i, item in enumerate(value):
        if not isinstance(item, dict):
            raise _invalid(f"emails[{i}] must be an object")
        address = _text(item.get("value"), f"emails[{i}].value", required=True)
        email: dict[str, Any] = {"value": address,
                                 "primary": _bool(item.get("primary", False), f"emails[{i}].primary")}
        kind = _text(item.get("type"), f"emails[{i}].type")
        if kind is not None:
            email["type"] = kind
        out.append(email)
    return out


def _fields_from(body: object) -> _Fields:
    """The attributes of a create or PUT body. Attributes this server does not keep (name,
    phoneNumbers, ...) are ignored, as SCIM servers do for attributes outside their schema."""
    if not isinstance(body, dict):
        raise _invalid("the request body must be a JSON object")
    try:
        check_json(body, "body")
    except errors.InvalidInput as exc:
        raise _invalid(exc.message) from None
    user_name = _text(body.get("userName"), "userName", required=True)
    assert user_name is not None
    return _Fields(user_name=user_name.strip(),
                   display_name=_text(body.get("displayName"), "displayName"),
                   external_id=_text(body.get("externalId"), "externalId"),
                   active=_bool(body.get("active", True), "active"),
                   emails=_emails(body.get("emails")))


def _check_unique(ledger: Ledger, developer_id: str, user_name: str, except_id: str | None) -> None:
    row = ledger.query_one("SELECT id FROM scim_users WHERE developer_id = ? AND user_name = ? "
                           "COLLATE NOCASE AND id IS NOT ?", (developer_id, user_name, except_id))
    if row is not None:
        raise ScimError(409, f"a user with userName {user_name[:100]!r} already exists", "uniqueness")


def _owned(ledger: Ledger, developer_id: str, user_id: str) -> sqlite3.Row:
    row = ledger.query_one("SELECT * FROM scim_users WHERE id = ? AND developer_id = ?",
                           (check_text(user_id, "user id"), developer_id))
    if row is None:
        raise ScimError(404, f"user {user_id[:60]!r} not found", "noTarget")
    return row


def _write(ledger: Ledger, developer_id: str, fields: _Fields, user_id: str | None) -> ScimUser:
    """Insert (``user_id`` None) or replace, with the uniqueness check and the audit entry in
    the same transaction: a concurrent duplicate cannot slip in between check and write."""
    now = iso(ledger.now())
    with ledger.write() as conn:
        _check_unique(ledger, developer_id, fields.user_name, user_id)
        emails = json.dumps(fields.emails, ensure_ascii=False)
        if user_id is None:
            user_id = new_id("scim_user")
            conn.execute("INSERT INTO scim_users (id, developer_id, external_id, user_name, display_name, "
                         "active, emails, created_at, last_modified) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                         (user_id, developer_id, fields.external_id, fields.user_name, fields.display_name,
                          int(fields.active), emails, now, now))
            action = "grantex.scim.user.created"
        else:
            changed = conn.execute(
                "UPDATE scim_users SET external_id = ?, user_name = ?, display_name = ?, active = ?, "
                "emails = ?, last_modified = ? WHERE id = ? AND developer_id = ?",
                (fields.external_id, fields.user_name, fields.display_name, int(fields.active), emails,
                 now, user_id, developer_id)).rowcount
            if not changed:
                raise ScimError(404, f"user {user_id[:60]!r} not found", "noTarget")
            action = "grantex.scim.user.updated"
        record(ledger, conn, developer_id, action,
               metadata={"userId": user_id, "userName": fields.user_name, "active": fields.active})
        row = conn.execute("SELECT * FROM scim_users WHERE id = ?", (user_id,)).fetchone()
    return _user(row)


def create_user(ledger: Ledger, developer_id: str, body: object) -> ScimUser:
    return _write(ledger, developer_id, _fields_from(body), None)


def replace_user(ledger: Ledger, developer_id: str, user_id: str, body: object) -> ScimUser:
    fields = _fields_from(body)
    _owned(ledger, developer_id, user_id)
    return _write(ledger, developer_id, fields, user_id)


def get_user(ledger: Ledger, developer_id: str, user_id: str) -> ScimUser:
    return _user(_owned(ledger, developer_id, user_id))


_PATCHABLE = {"active": "active", "username": "user_name", "displayname": "display_name",
              "externalid": "external_id"}


def _patch_one(fields: _Fields, attribute: str, value: object) -> None:
    key = _PATCHABLE.get(attribute.lower())
    if key is None:
        raise ScimError(400, f"attribute {attribute[:60]!r} cannot be patched here; "
                        "supported: active, userName, displayName, externalId", "invalidPath")
    if key == "active":
        fields.active = _bool(value, "active")
    elif key == "user_name":
        name = _text(value, "userName", required=True)
        assert name is not None
        fields.user_name = name.strip()
    elif key == "display_name":
        fields.display_name = _text(value, "displayName")
    else:
        fields.external_id = _text(value, "externalId")


def patch_user(ledger: Ledger, developer_id: str, user_id: str, body: object) -> ScimUser:
    """Apply ``Operations`` all or nothing. Only ``add`` and ``replace`` (any case) of active,
    userName, displayName and externalId, by ``path`` or by a value object, are understood;
    any other op or path is a 400 rather than silently ignored (the reference ignores them),
    so a provisioning client never believes a change was made that was not."""
    if not isinstance(body, dict):
        raise _invalid("the request body must be a JSON object")
    operations = body.get("Operations", body.get("operations"))
    if not isinstance(operations, list) or not operations:
        raise _invalid("Operations must be a non-empty list")
    row = _owned(ledger, developer_id, user_id)
    current = _user(row)
    fields = _Fields(current.user_name, current.display_name, current.external_id, current.active,
                     [dict(e) for e in current.emails])
    for i, op in enumerate(operations):
        if not isinstance(op, dict):
            raise _invalid(f"Operations[{i}] must be an object")
        name = op.get("op")
        if not isinstance(name, str) or name.lower() not in ("add", "replace"):
            raise _invalid(f"Operations[{i}].op {str(name)[:30]!r} is not supported: "
                           "only add and replace")
        path, value = op.get("path"), op.get("value")
        if path is not None:
            if not isinstance(path, str):
                raise ScimError(400, f"Operations[{i}].path must be a string", "invalidPath")
            _patch_one(fields, path, value)
        elif isinstance(value, dict) and value:
            for attribute, item in value.items():
                _patch_one(fields, str(attribute), item)
        else:
            raise _invalid(f"Operations[{i}] needs a path or a non-empty value object")
    return _write(ledger, developer_id, fields, user_id)


def delete_user(ledger: Ledger, developer_id: str, user_id: str) -> None:
    row = _owned(ledger, developer_id, user_id)
    with ledger.write() as conn:
        if not conn.execute("DELETE FROM scim_users WHERE id = ? AND developer_id = ?",
                            (user_id, developer_id)).rowcount:
            raise ScimError(404, f"user {user_id[:60]!r} not found", "noTarget")
        record(ledger, conn, developer_id, "grantex.scim.user.deleted",
               metadata={"userId": user_id, "userName": row["user_name"]})


_FILTER = re.compile(r'\s*(userName|externalId)\s+eq\s+"((?:[^"\\]|\\.)*)"\s*', re.IGNORECASE)


def parse_filter(text: str) -> tuple[str, str]:
    """``userName eq "x"`` or ``externalId eq "x"``, what Okta and Entra send before creating a
    user; anything else is 400 ``invalidFilter`` (a filter silently ignored would list every
    user and make a client think its user exists)."""
    match = _FILTER.fullmatch(text)
    if match is None:
        raise ScimError(400, f"unsupported filter {text[:100]!r}: only 'userName eq \"...\"' and "
                        "'externalId eq \"...\"' are supported", "invalidFilter")
    try:
        value = json.loads(f'"{match.group(2)}"')
    except json.JSONDecodeError:
        raise ScimError(400, "the filter's value is not a valid string", "invalidFilter") from None
    return match.group(1).lower(), check_text(str(value), "filter value")


def list_users(ledger: Ledger, developer_id: str, *, start_index: int = 1, count: int = DEFAULT_COUNT,
               filter: str | None = None) -> tuple[list[ScimUser], int, int]:
    """One page, oldest first: (users, totalResults, startIndex). ``start_index`` below 1 is
    read as 1 and ``count`` is clamped to 1-200 (RFC 7644 §3.4.2.4 asks for leniency here)."""
    start_index = max(1, start_index)
    count = min(MAX_COUNT, max(1, count))
    where, params = "developer_id = ?", [developer_id]
    if filter is not None:
        attribute, value = parse_filter(filter)
        # userName is caseExact false (RFC 7643 §4.1.1); externalId is caseExact true.
        where += (" AND user_name = ? COLLATE NOCASE" if attribute == "username" else " AND external_id = ?")
        params.append(value)
    with ledger.read():
        total = ledger.query_one(f"SELECT COUNT(*) FROM scim_users WHERE {where}", params)
        rows = ledger.query(f"SELECT * FROM scim_users WHERE {where} ORDER BY created_at, id "
                            "LIMIT ? OFFSET ?", [*params, count, start_index - 1])
    return [_user(r) for r in rows], int(total[0]) if total else 0, start_index


def list_response(users: list[ScimUser], total: int, start_index: int,
                  base_url: str | None = None) -> dict[str, Any]:
    return {"schemas": [LIST_SCHEMA], "totalResults": total, "startIndex": start_index,
            "itemsPerPage": len(users), "Resources": [u.to_dict(base_url) for u in users]}
