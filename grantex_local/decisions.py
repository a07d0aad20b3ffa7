"""Decision requests and decision grants: a person approves one specific high-risk action.

Why a second credential: a grant token says what an agent *may* do in general; a decision grant
says a named person looked at *this* action (case, tool, outcome, subject, amount) with its memo
and policy score and approved it. The SDK verifies decision grants offline (``grantex.decisions``
``verify_decision_grant``) and then consumes them here, once: ``enforce()`` refuses a tool marked
``requires_decision`` without one.

- A request is idempotent while open: the same developer, action, connector and case version
  give the same request back, so an agent that retries does not ask the person twice.
- Approving mints a decision grant (``typ: decision+jwt``, ``aud: urn:grantex:decision``) with
  the ledger's issuer key. ``dwell_ms`` is measured here, never taken from the caller: from the
  moment the approval page was served (or the CLI/TUI showed the request) to the approval.
- Four eyes (``approvalsRequired: 2``, or the decision named in ``fourEyesOn``): two different
  approvers; the second grant names the first. The same approver twice is ``same_approver``.
- Consuming is single use and all-or-nothing in one write transaction, so two processes
  presenting the same grants cannot both succeed. Every refusal names the SDK's sub-reason
  (:class:`~.errors.DecisionRefused`) and is itself an audit entry.
- Registering a new case version revokes the unconsumed grants of every other version: an
  approval is for the case as the person saw it.

The action hash is ``"sha256:" + base64url(SHA-256(JCS(action)))``. JCS (RFC 8785) here is
:func:`.audit.hashing.canonical_json` (sorted keys in UTF-16 order, no whitespace, ECMAScript
numbers): for the values an action may hold (strings, finite numbers, one level of ``extra``)
that is RFC 8785, and ``tests/test_decisions.py`` holds it to the SDK's own implementation.

Agent binding: a request that names an agent (``agentId``/``grantId``) releases its grants only
to that agent's live grant token (:func:`grants_for_agent`) and they are consumed only with it
(``wrong_agent`` otherwise); a request that names none shows its grants on ``get`` once fully
approved, and may be consumed by id (:func:`consume_request`).
"""

from __future__ import annotations

import base64
import hashlib
import json
import math
import re
import sqlite3
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import jwt

from . import errors
from .audit.hashing import canonical_json
from .audit.trail import record
from .clock import iso, parse_iso
from .ids import new_id
from .online import verify_online
from .verify import ALGORITHM, MAX_TOKEN_LENGTH

if TYPE_CHECKING:
    from .founding import Ledger

TYP = "decision+jwt"
AUDIENCE = "urn:grantex:decision"
IDP = "grantex-local"
GRANT_SECONDS = 3600
"""How long a decision grant lives (the SDK refuses more than a day)."""
DEFAULT_REQUEST_SECONDS = 86_400
MAX_REQUEST_SECONDS = 30 * 86_400
CHANNELS = ("approval-page/approval-code", "approval-page/principal-session", "cli", "tui", "library")
_AMR = {"approval-page/approval-code": ["otp"], "approval-page/principal-session": ["session"],
        "cli": ["local"], "tui": ["local"], "library": ["local"]}
"""How the approver was authenticated (``amr``): an approval code only the ledger's holder can
compute, a principal session minted by them, or holding the ledger file itself."""

ACTION_FIELDS = ("case_id", "action", "decision", "subject", "amount", "extra")
_REQUIRED = ("case_id", "action", "decision", "subject")
_TOOL = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}")
_NAME = re.compile(r"[a-z][a-z0-9_]{0,63}")
_DECIMAL = re.compile(r"-?(0|[1-9][0-9]*)(\.[0-9]*[1-9])?")
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u00ad\u200b-\u200f\u202a-\u202e\u2060-\u2064\u2066-\u206f\ufeff]")
_JTI = re.compile(r"dgnt_[0-9A-HJKMNP-TV-Z]{26}")
_REQUEST_ID = re.compile(r"dreq_[0-9A-HJKMNP-TV-Z]{26}")
_MAX_SAFE = 2**53
OPEN = ("pending", "approved")


# ── the action and its hashes ────────────────────────────────────────────────


def _hash(data: bytes) -> str:
    return "sha256:" + base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode("ascii")


def _check_string(name: str, value: object, limit: int) -> str:
    if not isinstance(value, str) or not value or len(value) > limit:
        raise errors.InvalidInput(f"action.{name} must be a string of 1-{limit} characters")
    if _CONTROL.search(value) or any(0xD800 <= ord(c) <= 0xDFFF for c in value):
        raise errors.InvalidInput(f"action.{name} must not hold control or invisible characters")
    return value


def _check_number(name: str, value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise errors.InvalidInput(f"action.{name} must be a number or a decimal string")
    if isinstance(value, float) and not math.isfinite(value):
        raise errors.InvalidInput(f"action.{name} must be finite")
    if isinstance(value, int) and abs(value) > _MAX_SAFE:
        raise errors.InvalidInput(f"action.{name} is beyond what JSON numbers hold exactly")


def check_action(value: object) -> dict[str, Any]:
    """The semantic action ``{case_id, action, decision, subject, amount?, extra?}``, checked by
    the SDK's rules (``DecisionAction``) so that a request the SDK would refuse to verify is
    refused here first, when the caller can still fix it."""
    if not isinstance(value, dict):
        raise errors.InvalidInput("action must be a JSON object")
    unknown = [k for k in value if k not in ACTION_FIELDS]
    if unknown:
        raise errors.InvalidInput(f"action has an unknown field {unknown[0]!r}")
    for key in _REQUIRED:
        if key not in value:
            raise errors.InvalidInput(f"action is missing {key!r}")
    out: dict[str, Any] = {"case_id": _check_string("case_id", value["case_id"], 256),
                           "action": _check_string("action", value["action"], 128),
                           "decision": _check_string("decision", value["decision"], 64),
                           "subject": _check_string("subject", value["subject"], 512)}
    if not _TOOL.fullmatch(out["action"]):
        raise errors.InvalidInput("action.action must be a manifest tool name")
    if not _NAME.fullmatch(out["decision"]):
        raise errors.InvalidInput("action.decision must match ^[a-z][a-z0-9_]{0,63}$")
    if "amount" in value:
        amount = value["amount"]
        if isinstance(amount, str):
            if len(amount) > 64 or not _DECIMAL.fullmatch(amount):
                raise errors.InvalidInput("action.amount as a string must be a canonical decimal ('1250.5')")
        else:
            _check_number("amount", amount)
        out["amount"] = amount
    if "extra" in value:
        extra = value["extra"]
        if not isinstance(extra, dict) or not extra or len(extra) > 16:
            raise errors.InvalidInput("action.extra must be a non-empty object of at most 16 fields")
        for key, item in extra.items():
            if not isinstance(key, str) or not _NAME.fullmatch(key) or key in ACTION_FIELDS:
                raise errors.InvalidInput(f"action.extra has an invalid field name {key!r}")
            if isinstance(item, str):
                _check_string(f"extra.{key}", item, 512)
            else:
                _check_number(f"extra.{key}", item)
        out["extra"] = dict(extra)
    return out


def action_hash(action: dict[str, Any]) -> str:
    """``sha256:`` + unpadded base64url SHA-256 of the action's RFC 8785 canonical JSON."""
    return _hash(canonical_json(action).encode("utf-8"))


def memo_hash(memo: str) -> str:
    return _hash(memo.encode("utf-8"))


def policy_score_hash(score: dict[str, Any]) -> str:
    return _hash(canonical_json(score).encode("utf-8"))


# ── requests ─────────────────────────────────────────────────────────────────


@dataclass(frozen=True)
class Approval:
    jti: str
    approver: str
    position: int
    channel: str
    dwell_ms: int
    issued_at: str
    expires_at: str
    consumed_at: str | None
    revoked_at: str | None
    token: str = field(repr=False)

    def to_dict(self) -> dict[str, Any]:
        return {"jti": self.jti, "approver": self.approver, "position": self.position,
                "channel": self.channel, "dwellMs": self.dwell_ms, "approvedAt": self.issued_at,
                "expiresAt": self.expires_at, "consumedAt": self.consumed_at, "revokedAt": self.revoked_at}


@dataclass(frozen=True)
class DecisionRequest:
    id: str
    developer_id: str
    status: str
    action: dict[str, Any]
    action_hash: str
    connector: str
    case_version: str
    memo: str
    memo_ref: str | None
    memo_hash: str
    policy_score: dict[str, Any]
    policy_score_ref: str | None
    policy_score_hash: str
    approvals_required: int
    agent_id: str | None
    grant_id: str | None
    created_at: str
    expires_at: str
    approvals: tuple[Approval, ...]
    approval_page: str

    @property
    def case_id(self) -> str:
        return str(self.action["case_id"])

    @property
    def bound(self) -> bool:
        """Whether the request names an agent: then only that agent's grant token gets its grants."""
        return self.agent_id is not None or self.grant_id is not None

    @property
    def ready(self) -> bool:
        """Fully approved, every grant still usable."""
        return (self.status == "approved" and len(self.approvals) == self.approvals_required
                and all(a.consumed_at is None and a.revoked_at is None for a in self.approvals))

    def to_dict(self, *, with_grants: bool | None = None) -> dict[str, Any]:
        """The wire shape. ``decisionGrants`` appear only for a request that names no agent
        (``with_grants=None``) or when the caller proved to be that agent (``True``)."""
        out: dict[str, Any] = {
            "id": self.id, "requestId": self.id, "status": self.status, "action": self.action,
            "actionHash": self.action_hash, "connector": self.connector, "caseId": self.case_id,
            "caseVersion": self.case_version,
            "memo": {"content": self.memo, "ref": self.memo_ref, "hash": self.memo_hash},
            "policyScore": {"content": self.policy_score, "ref": self.policy_score_ref,
                            "hash": self.policy_score_hash},
            "approvalsRequired": self.approvals_required, "fourEyes": self.approvals_required == 2,
            "approvals": [a.to_dict() for a in self.approvals], "agentId": self.agent_id,
            "grantId": self.grant_id, "createdAt": self.created_at, "expiresAt": self.expires_at,
            "approvalPage": self.approval_page, "decisionGrantsReady": self.ready,
        }
        give = (not self.bound) if with_grants is None else with_grants
        if give and self.ready:
            out["decisionGrants"] = [a.token for a in self.approvals]
        return out


def _status(row: sqlite3.Row, now: float) -> str:
    status = str(row["status"])
    if status == "pending" and parse_iso(row["expires_at"]) <= now:
        return "expired"
    return status


def _load(ledger: Ledger, row: sqlite3.Row) -> DecisionRequest:
    grants = ledger.query("SELECT * FROM decision_grants WHERE request_id = ? ORDER BY position",
                          (row["id"],))
    approvals = tuple(Approval(g["jti"], g["approver"], g["position"], g["channel"], g["dwell_ms"],
                               g["issued_at"], g["expires_at"], g["consumed_at"], g["revoked_at"], g["token"])
                      for g in grants)
    return DecisionRequest(
        id=row["id"], developer_id=row["developer_id"], status=_status(row, ledger.now()),
        action=json.loads(row["action"]), action_hash=row["action_hash"], connector=row["connector"],
        case_version=row["case_version"], memo=row["memo"], memo_ref=row["memo_ref"],
        memo_hash=row["memo_hash"], policy_score=json.loads(row["policy_score"]),
        policy_score_ref=row["policy_score_ref"], policy_score_hash=row["policy_score_hash"],
        approvals_required=row["approvals_required"], agent_id=row["agent_id"], grant_id=row["grant_id"],
        created_at=row["created_at"], expires_at=row["expires_at"], approvals=approvals,
        approval_page=f"{ledger.issuer}/decisions/{row['id']}")


def _optional_text(name: str, value: object, limit: int = 2048) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not value or len(value) > limit:
        raise errors.InvalidInput(f"{name} must be a non-empty string of at most {limit} characters")
    return value


def _not_found(request_id: object) -> errors.NotFound:
    return errors.NotFound(f"decision request {request_id} not found")


def get_request(ledger: Ledger, developer_id: str | None, request_id: str) -> DecisionRequest:
    """The request, or NotFound, also for another developer's (so ids cannot be probed)."""
    if not isinstance(request_id, str) or not _REQUEST_ID.fullmatch(request_id):
        raise _not_found(request_id)
    row = ledger.query_one("SELECT * FROM decision_requests WHERE id = ?", (request_id,))
    if row is None or (developer_id is not None and row["developer_id"] != developer_id):
        raise _not_found(request_id)
    return _load(ledger, row)


def list_requests(ledger: Ledger, developer_id: str | None = None, *,
                  open_only: bool = False) -> list[DecisionRequest]:
    """Newest first; ``open_only``: those still waiting for an approval (what an inbox shows)."""
    sql, params = "SELECT * FROM decision_requests", []
    clauses = []
    if developer_id is not None:
        clauses.append("developer_id = ?")
        params.append(developer_id)
    if open_only:
        clauses.append("status = 'pending' AND expires_at > ?")
        params.append(iso(ledger.now()))
    if clauses:
        sql += " WHERE " + " AND ".join(clauses)
    return [_load(ledger, r) for r in ledger.query(sql + " ORDER BY id DESC", params)]


def create_request(ledger: Ledger, developer_id: str, *, action: object, connector: object,
                   case_version: object, memo: object, policy_score: object, memo_ref: object = None,
                   policy_score_ref: object = None, four_eyes_on: object = None,
                   approvals_required: object = None, expires_in_seconds: object = None,
                   agent_id: object = None, grant_id: object = None) -> tuple[DecisionRequest, bool]:
    """Ask a person to decide one action; ``(request, created)``. An open request for the same
    action, connector and case version is returned as it is (``created`` False)."""
    checked = check_action(action)
    connector_text = _check_string("connector", connector, 128).strip()
    if not _TOOL.fullmatch(connector_text):
        raise errors.InvalidInput("connector must be a connector name like 'acme_kyb'")
    version = _optional_text("caseVersion", case_version, 256)
    if version is None:
        raise errors.InvalidInput("caseVersion is required")
    if not isinstance(memo, str) or len(memo) > 65_536:
        raise errors.InvalidInput("memo.content must be a string (at most 64 KiB)")
    if not isinstance(policy_score, dict):
        raise errors.InvalidInput("policyScore.content must be a JSON object")
    memo_ref_text = _optional_text("memo.ref", memo_ref)
    score_ref_text = _optional_text("policyScore.ref", policy_score_ref)
    required = 1 if approvals_required is None else approvals_required
    if isinstance(required, bool) or required not in (1, 2):
        raise errors.InvalidInput("approvalsRequired must be 1 or 2")
    if four_eyes_on is not None:
        if not isinstance(four_eyes_on, list) or not all(isinstance(d, str) for d in four_eyes_on):
            raise errors.InvalidInput("fourEyesOn must be a list of decision names")
        if checked["decision"] in four_eyes_on:
            required = 2
    seconds = DEFAULT_REQUEST_SECONDS if expires_in_seconds is None else expires_in_seconds
    if isinstance(seconds, bool) or not isinstance(seconds, int) or not 1 <= seconds <= MAX_REQUEST_SECONDS:
        raise errors.InvalidInput(f"expiresInSeconds must be an integer from 1 to {MAX_REQUEST_SECONDS}")
    agent = _optional_text("agentId", agent_id, 64)
    grant = _optional_text("grantId", grant_id, 64)
    if agent is not None and ledger.query_one(
            "SELECT 1 FROM agents WHERE id = ? AND developer_id = ?", (agent, developer_id)) is None:
        raise errors.NotFound(f"agent {agent} not found")
    if grant is not None and ledger.query_one(
            "SELECT 1 FROM grants WHERE id = ? AND developer_id = ?", (grant, developer_id)) is None:
        raise errors.NotFound(f"grant {grant} not found")
    from .text import check_json

    check_json(policy_score, "policyScore.content")
    hashed = action_hash(checked)
    now = ledger.now()
    with ledger.write() as conn:
        current = conn.execute(
            "SELECT case_version FROM decision_cases WHERE developer_id = ? AND case_id = ?",
            (developer_id, checked["case_id"])).fetchone()
        if current is not None and current[0] != version:
            raise errors.InvalidState(f"case {checked['case_id']} is at version {current[0]}, not {version}")
        existing = conn.execute(
            "SELECT * FROM decision_requests WHERE developer_id = ? AND action_hash = ? AND case_version = ? "
            "AND connector = ? AND status IN ('pending', 'approved') AND expires_at > ? "
            "AND agent_id IS ? AND grant_id IS ? ORDER BY id DESC LIMIT 1",
            (developer_id, hashed, version, connector_text, iso(now), agent, grant)).fetchone()
        if existing is not None:
            return _load(ledger, existing), False
        request_id = new_id("decision_request")
        conn.execute(
            "INSERT INTO decision_requests (id, developer_id, status, action, action_hash, case_id, "
            "case_version, connector, memo, memo_ref, memo_hash, policy_score, policy_score_ref, "
            "policy_score_hash, approvals_required, agent_id, grant_id, created_at, expires_at) "
            "VALUES (?, ?, 'pending', ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (request_id, developer_id, canonical_json(checked), hashed, checked["case_id"], version,
             connector_text, memo, memo_ref_text, memo_hash(memo), canonical_json(policy_score),
             score_ref_text, policy_score_hash(policy_score), required, agent, grant, iso(now),
             iso(now + seconds)))
        record(ledger, conn, developer_id, "grantex.decision.requested", agent_id=agent, grant_id=grant,
               metadata={"requestId": request_id, "actionHash": hashed, "caseId": checked["case_id"],
                         "caseVersion": version, "connector": connector_text,
                         "approvalsRequired": required})
        row = conn.execute("SELECT * FROM decision_requests WHERE id = ?", (request_id,)).fetchone()
        return _load(ledger, row), True


def cancel_request(ledger: Ledger, developer_id: str | None, request_id: str, *,
                   by: str = "api") -> DecisionRequest:
    """Cancel an open request; its unconsumed grants die with it. Cancelling twice is a no-op."""
    found = get_request(ledger, developer_id, request_id)
    if found.status == "cancelled":
        return found
    if found.status not in OPEN:
        raise errors.InvalidState(f"decision request {request_id} is {found.status} and cannot be cancelled")
    now = iso(ledger.now())
    with ledger.write() as conn:
        conn.execute("UPDATE decision_requests SET status = 'cancelled', decided_at = ? WHERE id = ?",
                     (now, request_id))
        conn.execute("UPDATE decision_grants SET revoked_at = ? WHERE request_id = ? AND consumed_at IS NULL "
                     "AND revoked_at IS NULL", (now, request_id))
        record(ledger, conn, found.developer_id, "grantex.decision.cancelled", agent_id=found.agent_id,
               grant_id=found.grant_id, metadata={"requestId": request_id, "by": by})
    return get_request(ledger, developer_id, request_id)


def set_case_version(ledger: Ledger, developer_id: str, case_id: object,
                     case_version: object) -> dict[str, Any]:
    """Register the case's current version; unconsumed grants (and open requests) of every other
    version are revoked, so an approval never outlives the case it was given for."""
    case = _check_string("case_id", case_id, 256)
    version = _optional_text("caseVersion", case_version, 256)
    if version is None:
        raise errors.InvalidInput("caseVersion is required")
    now = iso(ledger.now())
    with ledger.write() as conn:
        conn.execute("INSERT INTO decision_cases (developer_id, case_id, case_version, updated_at) "
                     "VALUES (?, ?, ?, ?) ON CONFLICT (developer_id, case_id) DO UPDATE SET "
                     "case_version = excluded.case_version, updated_at = excluded.updated_at",
                     (developer_id, case, version, now))
        stale = [r[0] for r in conn.execute(
            "SELECT id FROM decision_requests WHERE developer_id = ? AND case_id = ? AND case_version != ? "
            "AND status IN ('pending', 'approved')", (developer_id, case, version))]
        revoked = 0
        for request_id in stale:
            revoked += conn.execute(
                "UPDATE decision_grants SET revoked_at = ? WHERE request_id = ? AND consumed_at IS NULL "
                "AND revoked_at IS NULL", (now, request_id)).rowcount
            conn.execute("UPDATE decision_requests SET status = 'revoked', decided_at = ? WHERE id = ?",
                         (now, request_id))
        record(ledger, conn, developer_id, "grantex.decision.case_version_set",
               metadata={"caseId": case, "caseVersion": version, "revokedRequests": stale,
                         "revokedGrants": revoked})
    return {"caseId": case, "caseVersion": version, "revokedRequests": stale, "revokedGrants": revoked,
            "updatedAt": now}


# ── approving: minting decision grants ───────────────────────────────────────


@dataclass(frozen=True)
class Approved:
    """One approval: its grant (the token is for the requester, never printed by the CLI)."""

    request: DecisionRequest
    jti: str
    position: int
    approver: str
    dwell_ms: int
    token: str = field(repr=False)


def approve(ledger: Ledger, request_id: str, *, approver: object, channel: str, shown_at: float,
            developer_id: str | None = None) -> Approved:
    """Record ``approver``'s approval and mint their decision grant.

    ``shown_at`` is when this process showed the request to the approver (the page was served,
    the CLI printed it, the TUI listed it), by the ledger's clock: ``dwell_ms`` is measured from
    it here, never supplied by the approver. ``same_approver`` when they already approved.
    """
    if channel not in CHANNELS:
        raise errors.InvalidInput(f"channel must be one of {', '.join(CHANNELS)}")
    name = _check_string("approver", approver, 128) if isinstance(approver, str) else None
    if name is None:
        raise errors.InvalidInput("approver must be a non-empty name")
    name = name.strip()
    if not name:
        raise errors.InvalidInput("approver must be a non-empty name")
    kid, key = ledger.signing_key()
    try:
        with ledger.write() as conn:
            row = conn.execute("SELECT * FROM decision_requests WHERE id = ?", (request_id,)).fetchone()
            if row is None or (developer_id is not None and row["developer_id"] != developer_id):
                raise _not_found(request_id)
            now = ledger.now()
            status = _status(row, now)
            if status != "pending":
                raise errors.InvalidState(f"decision request {request_id} is {status}: nothing to approve")
            earlier = conn.execute(
                "SELECT jti, approver FROM decision_grants WHERE request_id = ? ORDER BY position",
                (request_id,)).fetchall()
            if any(e["approver"] == name for e in earlier):
                raise errors.DecisionRefused(
                    "same_approver", f"{name} already approved decision request {request_id}; "
                    "four eyes needs a different person")
            position = len(earlier) + 1
            required = int(row["approvals_required"])
            jti = new_id("decision_grant")
            issued = int(now)
            dwell_ms = max(0, round((now - shown_at) * 1000))
            claims: dict[str, Any] = {
                "iss": ledger.issuer, "aud": AUDIENCE, "sub": name, "jti": jti, "dev": row["developer_id"],
                "idp": IDP, "approver_auth": channel, "amr": _AMR[channel], "auth_time": issued,
                "action": json.loads(row["action"]), "action_hash": row["action_hash"],
                "connector": row["connector"], "case_version": row["case_version"],
                "decision_request": request_id, "dwell_ms": dwell_ms, "dwell_source": "server",
                "memo_hash": row["memo_hash"], "policy_score_hash": row["policy_score_hash"],
                "iat": issued, "exp": issued + GRANT_SECONDS,
            }
            if row["memo_ref"] is not None:
                claims["memo_ref"] = row["memo_ref"]
            if row["policy_score_ref"] is not None:
                claims["policy_score_ref"] = row["policy_score_ref"]
            if required == 2:
                claims["four_eyes"] = {"approvals_required": 2, "position": position}
                if position == 2:
                    claims["four_eyes"].update(first_jti=earlier[0]["jti"], first_sub=earlier[0]["approver"])
            token = jwt.encode(claims, key, algorithm=ALGORITHM, headers={"kid": kid, "typ": TYP})
            conn.execute(
                "INSERT INTO decision_grants (jti, request_id, developer_id, approver, position, channel, "
                "dwell_ms, token, issued_at, expires_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (jti, request_id, row["developer_id"], name, position, channel, dwell_ms, token, iso(issued),
                 iso(issued + GRANT_SECONDS)))
            if position == required:
                conn.execute("UPDATE decision_requests SET status = 'approved', decided_at = ? WHERE id = ?",
                             (iso(now), request_id))
            record(ledger, conn, row["developer_id"], "grantex.decision.approved", agent_id=row["agent_id"],
                   grant_id=row["grant_id"], principal_id=name,
                   metadata={"requestId": request_id, "jti": jti, "position": position,
                             "approvalsRequired": required, "channel": channel, "dwellMs": dwell_ms,
                             "actionHash": row["action_hash"]})
    except errors.DecisionRefused as exc:
        owner = ledger.query_one("SELECT developer_id FROM decision_requests WHERE id = ?", (request_id,))
        if owner is not None:
            _record_refusal(ledger, owner[0], exc, {"via": "approve", "requestId": request_id,
                                                  "approver": name, "channel": channel})
        raise
    return Approved(get_request(ledger, None, request_id), jti, position, name, dwell_ms, token)


# ── consuming ────────────────────────────────────────────────────────────────


def _refuse(sub_reason: str, message: str) -> errors.DecisionRefused:
    return errors.DecisionRefused(sub_reason, message)


def _claims_of(ledger: Ledger, token: object) -> dict[str, Any]:
    """The claims of a decision grant this ledger signed, or ``malformed``."""
    if not isinstance(token, str) or not token or len(token) > MAX_TOKEN_LENGTH or token.count(".") != 2:
        raise _refuse("malformed", "a decision grant must be a compact JWT")
    try:
        header = jwt.get_unverified_header(token)
    except jwt.PyJWTError:
        raise _refuse("malformed", "a decision grant must be a compact JWT") from None
    if header.get("typ") != TYP or header.get("alg") != ALGORITHM:
        raise _refuse("malformed", f"not a decision grant (typ must be {TYP}, alg {ALGORITHM})")
    kid = header.get("kid")
    keys = ledger.verifier().keys
    if not isinstance(kid, str) or kid not in keys:
        ledger.forget_keys()
        keys = ledger.verifier().keys
    if not isinstance(kid, str) or kid not in keys:
        raise _refuse("malformed", "the decision grant was not signed by this ledger (kid)")
    try:
        claims: dict[str, Any] = jwt.decode(
            token, keys[kid], algorithms=[ALGORITHM], audience=AUDIENCE,
            options={"verify_exp": False, "verify_iat": False, "verify_nbf": False, "verify_iss": False,
                     "require": ["iss", "aud", "sub", "jti", "iat", "exp"]})
    except jwt.PyJWTError as exc:
        raise _refuse("malformed", f"the decision grant's signature or audience is invalid: {exc}") from None
    if claims.get("iss") not in ledger.accepted_issuers():
        raise _refuse("malformed", "the decision grant was issued by another issuer")
    if not isinstance(claims.get("jti"), str) or not _JTI.fullmatch(claims["jti"]):
        raise _refuse("malformed", "the decision grant's jti is malformed")
    return claims


def _expected_action(value: object) -> dict[str, Any]:
    try:
        return check_action(value)
    except errors.InvalidInput as exc:
        raise _refuse("malformed", f"the action to perform is invalid: {exc.message}") from None


def _check_agent(ledger: Ledger, request: sqlite3.Row, grant_token: object, agent_id: object,
                 grant_id: object) -> None:
    """For a request that names an agent: the caller's grant token must be that agent's (and
    grant's), live. The ids sent alongside must agree with the token; they never replace it."""
    if request["agent_id"] is None and request["grant_id"] is None:
        return
    if not isinstance(grant_token, str) or not grant_token:
        raise _refuse("wrong_agent", "this decision was requested for an agent: present its grant token")
    verified = verify_online(ledger, grant_token, request["developer_id"])
    if not verified.valid:
        raise _refuse("wrong_agent", "the grant token presented is not live")
    did = verified.agent or ""
    if request["agent_id"] is not None and did != f"did:grantex:{request['agent_id']}":
        raise _refuse("wrong_agent", "this decision was requested for another agent")
    if request["grant_id"] is not None and verified.grant_id != request["grant_id"]:
        raise _refuse("wrong_agent", "this decision was requested under another grant")
    if agent_id is not None and request["agent_id"] is not None and agent_id != request["agent_id"]:
        raise _refuse("wrong_agent", "agentId does not match the grant token")
    if grant_id is not None and grant_id != verified.grant_id:
        raise _refuse("wrong_agent", "grantId does not match the grant token")


def _consume_rows(ledger: Ledger, conn: sqlite3.Connection, developer_id: str, jtis: list[str],
                  action: dict[str, Any], case_version: object, *, grant_token: object = None,
                  agent_id: object = None, grant_id: object = None) -> dict[str, Any]:
    """Every check of a consumption, then the consumption, inside the caller's write."""
    if not isinstance(case_version, str) or not case_version:
        raise _refuse("malformed", "caseVersion is required")
    if len(set(jtis)) != len(jtis):
        raise _refuse("same_approver", "the same decision grant was presented twice")
    now = ledger.now()
    hashed = action_hash(action)
    rows = []
    for jti in jtis:
        row = conn.execute(
            "SELECT g.*, r.action_hash AS r_hash, r.case_id AS r_case, r.case_version AS r_version "
            "FROM decision_grants g JOIN decision_requests r ON r.id = g.request_id WHERE g.jti = ?",
            (jti,)).fetchone()
        if row is None or row["developer_id"] != developer_id:
            raise _refuse("unknown_grant", f"decision grant {jti} is not known to this developer")
        if row["revoked_at"] is not None:
            raise _refuse("revoked", f"decision grant {jti} was revoked (its request was cancelled or its "
                          "case moved to another version)")
        if row["consumed_at"] is not None:
            raise _refuse("consumed", f"decision grant {jti} was already consumed")
        if parse_iso(row["expires_at"]) <= now:
            raise _refuse("expired", f"decision grant {jti} has expired")
        if row["r_case"] != action["case_id"]:
            raise _refuse("wrong_case", f"decision grant {jti} is for another case")
        if row["r_hash"] != hashed:
            raise _refuse("action_mismatch", f"decision grant {jti} approves a different action")
        if row["r_version"] != case_version:
            raise _refuse("case_changed", f"decision grant {jti} was approved for another case version")
        rows.append(row)
    current = conn.execute("SELECT case_version FROM decision_cases WHERE developer_id = ? AND case_id = ?",
                           (developer_id, action["case_id"])).fetchone()
    if current is not None and current[0] != case_version:
        raise _refuse("case_changed", f"case {action['case_id']} is now at version {current[0]}")
    request_ids = {r["request_id"] for r in rows}
    if len(request_ids) != 1:
        raise _refuse("malformed", "the decision grants belong to different decision requests")
    request_id = request_ids.pop()
    request = conn.execute("SELECT * FROM decision_requests WHERE id = ?", (request_id,)).fetchone()
    _check_agent(ledger, request, grant_token, agent_id, grant_id)
    if len({r["approver"] for r in rows}) != len(rows):
        raise _refuse("same_approver", "both decision grants were approved by the same person")
    required = int(request["approvals_required"])
    if len(rows) < required:
        raise _refuse("four_eyes_incomplete", "this decision needs two approvals from different people")
    if len(rows) > required:
        raise _refuse("malformed", "more decision grants than this decision needs")
    stamp = iso(now)
    for row in rows:
        conn.execute("UPDATE decision_grants SET consumed_at = ? WHERE jti = ? AND consumed_at IS NULL",
                     (stamp, row["jti"]))
    conn.execute("UPDATE decision_requests SET status = 'consumed' WHERE id = ?", (request_id,))
    approvers = [{"sub": r["approver"], "jti": r["jti"], "position": r["position"], "dwellMs": r["dwell_ms"],
                  "channel": r["channel"]} for r in sorted(rows, key=lambda r: r["position"])]
    record(ledger, conn, developer_id, "grantex.decision.consumed", agent_id=request["agent_id"],
           grant_id=request["grant_id"], metadata={"requestId": request_id, "jtis": sorted(jtis),
                                                   "actionHash": hashed, "caseVersion": case_version})
    return {"consumed": True, "jtis": sorted(jtis), "requestId": request_id, "actionHash": hashed,
            "approvers": approvers, "consumedAt": stamp}


def _record_refusal(ledger: Ledger, developer_id: str, exc: errors.DecisionRefused,
                    context: dict[str, Any]) -> None:
    with ledger.write() as conn:
        record(ledger, conn, developer_id, "grantex.decision.refused", status="failure",
               metadata={"subReason": exc.sub_reason, "message": exc.message[:300], **context})


def consume(ledger: Ledger, developer_id: str, tokens: object, action: object, case_version: object, *,
            grant_token: object = None, agent_id: object = None, grant_id: object = None) -> dict[str, Any]:
    """Consume the presented decision grants for ``action`` at ``case_version``: all or none,
    once. A refusal raises :class:`~.errors.DecisionRefused` and is recorded."""
    context: dict[str, Any] = {"via": "grants"}
    try:
        if not isinstance(tokens, list) or not 1 <= len(tokens) <= 2:
            raise _refuse("malformed", "decisionGrants must be a list of one or two tokens")
        claims = [_claims_of(ledger, t) for t in tokens]
        jtis = [str(c["jti"]) for c in claims]
        context["jtis"] = sorted(jtis)
        expected = _expected_action(action)
        with ledger.write() as conn:
            return _consume_rows(ledger, conn, developer_id, jtis, expected, case_version,
                                 grant_token=grant_token, agent_id=agent_id, grant_id=grant_id)
    except errors.DecisionRefused as exc:
        _record_refusal(ledger, developer_id, exc, context)
        raise


def consume_request(ledger: Ledger, developer_id: str, request_id: str, action: object,
                    case_version: object) -> dict[str, Any]:
    """Consume the grants of a request that names no agent, by its id (the platform never holds
    the tokens). A request that names an agent is ``wrong_agent``: only that agent consumes."""
    context: dict[str, Any] = {"via": "request", "requestId": request_id}
    try:
        found = get_request(ledger, developer_id, request_id)
        if found.bound:
            raise _refuse("wrong_agent", "this decision names an agent: only its grant token consumes it")
        expected = _expected_action(action)
        with ledger.write() as conn:
            usable = [r[0] for r in conn.execute(
                "SELECT jti FROM decision_grants WHERE request_id = ? ORDER BY position", (request_id,))]
            if not usable:
                raise _refuse("four_eyes_incomplete" if found.approvals_required == 2 else "absent",
                              f"decision request {request_id} has not been approved")
            return _consume_rows(ledger, conn, developer_id, usable, expected, case_version)
    except errors.DecisionRefused as exc:
        _record_refusal(ledger, developer_id, exc, context)
        raise


def grants_for_agent(ledger: Ledger, developer_id: str, request_id: str,
                     grant_token: object) -> dict[str, Any]:
    """The request with its grants, for the agent it names, proven by that agent's live grant
    token; anything else is ``wrong_agent``. Hand-outs and refusals are audited."""
    found = get_request(ledger, developer_id, request_id)
    row = ledger.query_one("SELECT * FROM decision_requests WHERE id = ?", (request_id,))
    assert row is not None
    try:
        if not found.bound:
            raise _refuse("wrong_agent", "this decision names no agent; fetch it with get")
        _check_agent(ledger, row, grant_token, None, None)
    except errors.DecisionRefused as exc:
        _record_refusal(ledger, developer_id, exc, {"via": "get_grants", "requestId": request_id})
        raise
    with ledger.write() as conn:
        record(ledger, conn, developer_id, "grantex.decision.grants_released", agent_id=found.agent_id,
               grant_id=found.grant_id, metadata={"requestId": request_id, "ready": found.ready})
    return found.to_dict(with_grants=True)
