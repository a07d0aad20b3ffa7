"""The policy engine applied at authorize (PROTOCOL §11).

Deny rules are evaluated before allow rules; within each, higher priority
first, then oldest. An allow rule matches when every requested scope is in its
list; a deny rule when any requested scope is. Effects are stored as the SDK's
``allow`` / ``deny``; ``auto_approve`` / ``auto_deny`` are accepted as
synonyms.
"""

from __future__ import annotations

import json
import re
import sqlite3
from datetime import datetime
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from . import errors
from .audit.trail import record
from .clock import iso
from .ids import new_id
from .models import CreatePolicyParams, Policy, UpdatePolicyParams
from .scopes import normalize_scopes
from .text import check_name, check_text

if TYPE_CHECKING:
    from .founding import Ledger

EFFECTS = {"allow": "allow", "deny": "deny", "auto_approve": "allow", "auto_deny": "deny"}
_HHMM = re.compile(r"([01][0-9]|2[0-3]):([0-5][0-9])")


def _from_row(row: sqlite3.Row) -> Policy:
    scopes = json.loads(row["scopes"]) if row["scopes"] is not None else None
    window = json.loads(row["time_window"]) if row["time_window"] is not None else None
    return Policy(
        id=row["id"], name=row["name"], effect=row["effect"], priority=row["priority"],
        agent_id=row["agent_id"], principal_id=row["principal_id"],
        scopes=tuple(scopes) if scopes is not None else None, time_window=window,
        created_at=row["created_at"], updated_at=row["updated_at"],
        developer_id=row["developer_id"],
    )


def _effect(value: object) -> str:
    if not isinstance(value, str) or value not in EFFECTS:
        raise errors.InvalidInput("effect must be one of allow, deny, auto_approve, auto_deny")
    return EFFECTS[value]


def _hhmm(value: str, name: str) -> tuple[int, int]:
    m = _HHMM.fullmatch(value) if isinstance(value, str) else None
    if not m:
        raise errors.InvalidInput(f"{name} must be HH:MM (24-hour, UTC), not {value!r}")
    return int(m.group(1)), int(m.group(2))


def validate_time_window(window: object) -> dict[str, Any]:
    """``{startHour, endHour, days?, tz?}``; minutes are allowed for the SDK's HH:MM form."""
    if not isinstance(window, dict):
        raise errors.InvalidInput("timeWindow must be an object {startHour, endHour, days?, tz?}")
    allowed = {"startHour", "endHour", "startMinute", "endMinute", "days", "tz"}
    unknown = set(window) - allowed
    if unknown:
        raise errors.InvalidInput(f"timeWindow has unknown fields: {', '.join(sorted(unknown))}")
    out: dict[str, Any] = {}
    for key, high in (("startHour", 23), ("endHour", 23), ("startMinute", 59), ("endMinute", 59)):
        value = window.get(key, 0 if "Minute" in key else None)
        if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= high:
            raise errors.InvalidInput(f"timeWindow.{key} must be a whole number from 0 to {high}")
        out[key] = value
    days = window.get("days")
    if days is not None:
        if (not isinstance(days, list) or not days
                or any(isinstance(d, bool) or not isinstance(d, int) or not 1 <= d <= 7 for d in days)):
            raise errors.InvalidInput("timeWindow.days must be a non-empty list of ISO weekdays 1..7")
        out["days"] = sorted(set(days))
    tz = window.get("tz", "UTC")
    try:
        ZoneInfo(tz)
    except (ZoneInfoNotFoundError, ValueError, TypeError):
        raise errors.InvalidInput(f"timeWindow.tz {tz!r} is not a known time zone") from None
    out["tz"] = tz
    return out


def _window_from(params: CreatePolicyParams | UpdatePolicyParams) -> dict[str, Any] | None:
    if params.time_window is not None:
        if params.time_of_day_start is not None or params.time_of_day_end is not None:
            raise errors.InvalidInput("give timeWindow or timeOfDayStart/End, not both")
        return validate_time_window(params.time_window)
    if params.time_of_day_start is None and params.time_of_day_end is None:
        return None
    if params.time_of_day_start is None or params.time_of_day_end is None:
        raise errors.InvalidInput("timeOfDayStart and timeOfDayEnd must be given together")
    sh, sm = _hhmm(params.time_of_day_start, "timeOfDayStart")
    eh, em = _hhmm(params.time_of_day_end, "timeOfDayEnd")
    return {"startHour": sh, "endHour": eh, "startMinute": sm, "endMinute": em, "tz": "UTC"}


def _priority(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not -1_000_000 <= value <= 1_000_000:
        raise errors.InvalidInput("priority must be a whole number")
    return value


def _optional_id(value: object, name: str) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not value:
        raise errors.InvalidInput(f"{name} must be a non-empty string")
    return check_text(value, name)


def _name(value: object) -> str:
    if not isinstance(value, str) or not value.strip():
        raise errors.InvalidInput("policy name must not be empty")
    return check_name(value, "policy name").strip()


def create(ledger: Ledger, developer_id: str, params: CreatePolicyParams) -> Policy:
    name = _name(params.name)
    effect = _effect(params.effect)
    priority = _priority(params.priority)
    scopes = normalize_scopes(params.scopes) if params.scopes is not None else None
    window = _window_from(params)
    agent_id = _optional_id(params.agent_id, "agentId")
    principal_id = _optional_id(params.principal_id, "principalId")
    policy_id = new_id("policy")
    now = iso(ledger.now())
    with ledger.write() as conn:
        conn.execute(
            "INSERT INTO policies (id, developer_id, name, effect, priority, agent_id, principal_id, "
            "scopes, time_window, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (policy_id, developer_id, name, effect, priority, agent_id, principal_id,
             json.dumps(scopes) if scopes is not None else None,
             json.dumps(window) if window is not None else None, now, now),
        )
        record(ledger, conn, developer_id, "grantex.policy.created",
               metadata={"policyId": policy_id, "name": name, "effect": effect,
                         "priority": priority, "agentId": agent_id, "principalId": principal_id,
                         "scopes": scopes, "timeWindow": window})
    return get(ledger, developer_id, policy_id)


def get(ledger: Ledger, developer_id: str, policy_id: str) -> Policy:
    if isinstance(policy_id, str):
        check_text(policy_id, "policy id")
    row = ledger.query_one("SELECT * FROM policies WHERE id = ? AND developer_id = ?",
                           (policy_id, developer_id))
    if row is None:
        raise errors.NotFound(f"policy {policy_id} not found")
    return _from_row(row)


def list_policies(ledger: Ledger, developer_id: str) -> list[Policy]:
    rows = ledger.query(
        "SELECT * FROM policies WHERE developer_id = ? "
        "ORDER BY effect = 'allow', priority DESC, created_at, id", (developer_id,))
    return [_from_row(r) for r in rows]


def update(ledger: Ledger, developer_id: str, policy_id: str, params: UpdatePolicyParams) -> Policy:
    changes: dict[str, Any] = {}
    if params.name is not None:
        changes["name"] = _name(params.name)
    if params.effect is not None:
        changes["effect"] = _effect(params.effect)
    if params.priority is not None:
        changes["priority"] = _priority(params.priority)
    if params.agent_id is not None:
        changes["agent_id"] = _optional_id(params.agent_id, "agentId")
    if params.principal_id is not None:
        changes["principal_id"] = _optional_id(params.principal_id, "principalId")
    if params.scopes is not None:
        changes["scopes"] = json.dumps(normalize_scopes(params.scopes))
    window = _window_from(params)
    if window is not None:
        changes["time_window"] = json.dumps(window)
    with ledger.write() as conn:
        get(ledger, developer_id, policy_id)
        if changes:
            changes["updated_at"] = iso(ledger.now())
            assignments = ", ".join(f"{k} = ?" for k in changes)
            conn.execute(f"UPDATE policies SET {assignments} WHERE id = ?", [*changes.values(), policy_id])
            record(ledger, conn, developer_id, "grantex.policy.updated",
                   metadata={"policyId": policy_id,
                             "changed": sorted(k for k in changes if k != "updated_at")})
    return get(ledger, developer_id, policy_id)


def delete(ledger: Ledger, developer_id: str, policy_id: str) -> None:
    with ledger.write() as conn:
        cur = conn.execute("DELETE FROM policies WHERE id = ? AND developer_id = ?",
                           (policy_id, developer_id))
        if cur.rowcount == 0:
            raise errors.NotFound(f"policy {policy_id} not found")
        record(ledger, conn, developer_id, "grantex.policy.deleted", metadata={"policyId": policy_id})


def _in_window(window: dict[str, Any], now: float) -> bool:
    local = datetime.fromtimestamp(now, ZoneInfo(window.get("tz", "UTC")))
    days = window.get("days")
    if days and local.isoweekday() not in days:
        return False
    minute = local.hour * 60 + local.minute
    start = window["startHour"] * 60 + window.get("startMinute", 0)
    end = window["endHour"] * 60 + window.get("endMinute", 0)
    if start <= end:
        return start <= minute < end
    return minute >= start or minute < end  # wraps midnight


def matches(policy: Policy, agent_id: str, principal_id: str, scopes: list[str], now: float) -> bool:
    if policy.agent_id is not None and policy.agent_id != agent_id:
        return False
    if policy.principal_id is not None and policy.principal_id != principal_id:
        return False
    if policy.scopes is not None:
        listed = set(policy.scopes)
        if policy.effect == "allow" and not set(scopes) <= listed:
            return False
        if policy.effect == "deny" and not listed & set(scopes):
            return False
    return policy.time_window is None or _in_window(policy.time_window, now)


def evaluate(ledger: Ledger, developer_id: str, agent_id: str, principal_id: str,
             scopes: list[str]) -> Policy | None:
    """The first matching rule (denies first), or None when no rule applies."""
    now = ledger.now()
    for policy in list_policies(ledger, developer_id):
        if matches(policy, agent_id, principal_id, scopes, now):
            return policy
    return None
