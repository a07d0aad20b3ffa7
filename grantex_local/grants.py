"""Grants: reads, status, the delegation tree and cascading revocation.

A grant's ``status`` is derived, never stored: ``revoked`` when it has a
``revoked_at``, ``expired`` once ``expires_at`` has passed, else ``active``.
Revocation walks the delegation subtree with one recursive CTE and stamps
every grant in it with the same ``revoked_at`` inside one transaction, so no
reader ever sees half a tree revoked.
"""

from __future__ import annotations

import json
import sqlite3
from typing import TYPE_CHECKING, Any

from . import errors, events
from .clock import iso
from .models import Grant, RevokeResult

if TYPE_CHECKING:
    from .founding import Ledger

STATUSES = ("active", "revoked", "expired")

_SELECT = (
    "SELECT g.*, a.did AS agent_did, a.name AS agent_name, a.status AS agent_status "
    "FROM grants g JOIN agents a ON a.id = g.agent_id"
)


def status_of(row: sqlite3.Row | dict[str, Any], now_iso: str) -> str:
    if row["revoked_at"] is not None:
        return "revoked"
    if row["expires_at"] <= now_iso:
        return "expired"
    return "active"


def from_row(row: sqlite3.Row, now_iso: str) -> Grant:
    return Grant(
        id=row["id"], agent_id=row["agent_id"], agent_did=row["agent_did"],
        principal_id=row["principal_id"], developer_id=row["developer_id"],
        scopes=tuple(json.loads(row["scopes"])), status=status_of(row, now_iso),
        issued_at=row["issued_at"], expires_at=row["expires_at"], revoked_at=row["revoked_at"],
        parent_grant_id=row["parent_grant_id"], delegation_depth=row["delegation_depth"],
        audience=row["audience"],
    )


def get(ledger: Ledger, developer_id: str | None, grant_id: object) -> Grant:
    if not isinstance(grant_id, str) or not grant_id:
        raise errors.InvalidInput("grant id must be a non-empty string")
    row = ledger.query_one(f"{_SELECT} WHERE g.id = ?", (grant_id,))
    if row is None or (developer_id is not None and row["developer_id"] != developer_id):
        raise errors.NotFound(f"grant {grant_id} not found")
    return from_row(row, iso(ledger.now()))


def list_grants(
    ledger: Ledger,
    developer_id: str | None,
    *,
    agent_id: str | None = None,
    principal_id: str | None = None,
    status: str | None = None,
    parent_grant_id: str | None = None,
    roots_only: bool = False,
    limit: int | None = None,
    offset: int = 0,
) -> list[Grant]:
    now = iso(ledger.now())
    sql = f"{_SELECT} WHERE 1 = 1"
    params: list[Any] = []
    for column, value in (("g.developer_id", developer_id), ("g.agent_id", agent_id),
                          ("g.principal_id", principal_id), ("g.parent_grant_id", parent_grant_id)):
        if value is not None:
            sql += f" AND {column} = ?"
            params.append(value)
    if roots_only:
        sql += " AND g.parent_grant_id IS NULL"
    if status is not None:
        if status not in STATUSES:
            raise errors.InvalidInput(f"status must be one of {', '.join(STATUSES)}, not {status!r}")
        if status == "revoked":
            sql += " AND g.revoked_at IS NOT NULL"
        elif status == "expired":
            sql += " AND g.revoked_at IS NULL AND g.expires_at <= ?"
            params.append(now)
        else:
            sql += " AND g.revoked_at IS NULL AND g.expires_at > ?"
            params.append(now)
    sql += " ORDER BY g.issued_at, g.id"
    if limit is not None:
        sql += " LIMIT ? OFFSET ?"
        params += [limit, offset]
    return [from_row(r, now) for r in ledger.query(sql, params)]


def ancestors(ledger: Ledger, grant_id: str) -> list[Grant]:
    """The parent chain from the grant's parent up to its root."""
    rows = ledger.query(
        "WITH RECURSIVE chain(id, n) AS ("
        " SELECT parent_grant_id, 1 FROM grants WHERE id = ?"
        " UNION ALL SELECT g.parent_grant_id, c.n + 1 FROM grants g JOIN chain c ON g.id = c.id"
        f") {_SELECT} JOIN chain c ON g.id = c.id ORDER BY c.n",
        (grant_id,),
    )
    now = iso(ledger.now())
    return [from_row(r, now) for r in rows]


def subtree_ids(conn: sqlite3.Connection, root_ids: list[str]) -> list[str]:
    marks = ",".join("?" * len(root_ids))
    rows = conn.execute(
        "WITH RECURSIVE tree(id) AS ("
        f" SELECT id FROM grants WHERE id IN ({marks})"
        " UNION SELECT g.id FROM grants g JOIN tree t ON g.parent_grant_id = t.id"
        ") SELECT id FROM tree", root_ids,
    ).fetchall()
    return [r[0] for r in rows]


def revoke_subtrees(conn: sqlite3.Connection, root_ids: list[str], revoked_at: str) -> list[sqlite3.Row]:
    """Revoke the grants ``root_ids`` and all their descendants; returns the rows revoked now.

    The caller holds the write transaction. Grants already revoked keep their
    earlier ``revoked_at``.
    """
    if not root_ids:
        return []
    marks = ",".join("?" * len(root_ids))
    return conn.execute(
        "WITH RECURSIVE tree(id) AS ("
        f" SELECT id FROM grants WHERE id IN ({marks})"
        " UNION SELECT g.id FROM grants g JOIN tree t ON g.parent_grant_id = t.id"
        ") UPDATE grants SET revoked_at = ? WHERE id IN tree AND revoked_at IS NULL "
        "RETURNING id, developer_id, agent_id, principal_id, parent_grant_id, delegation_depth, expires_at",
        [*root_ids, revoked_at],
    ).fetchall()


def revoke_and_record(ledger: Ledger, conn: sqlite3.Connection, root_ids: list[str], revoked_at: str,
                      *, cause: str, actor: dict[str, Any] | None = None) -> list[str]:
    """Revoke subtrees and write one ``grantex.grant.revoked`` entry per grant revoked,
    in the caller's transaction.

    ``actor`` (optional) says who asked, when it is not the developer (a principal on the
    permissions page): it goes into the roots' entries as ``revokedBy``, so the trail shows
    that the person the grant was given by took it back."""
    from .audit.hashing import canonical_object
    from .audit.trail import Appender

    rows = revoke_subtrees(conn, root_ids, revoked_at)
    by_developer: dict[str, list[sqlite3.Row]] = {}
    for r in rows:
        by_developer.setdefault(r["developer_id"], []).append(r)
    roots = set(root_ids)
    action = "grantex.grant.revoked"
    for developer_id, revoked in by_developer.items():
        # One call with the entries as columns, none of them built as objects: a cascade can
        # write tens of thousands and nobody reads them back here.
        revoked.sort(key=lambda r: (r["delegation_depth"], r["id"]))
        contexts = [(r["agent_id"], "did:grantex:" + r["agent_id"], r["id"], r["principal_id"], action,
                     "success") for r in revoked]
        texts = [canonical_object({
            "revokedAt": revoked_at, "cause": cause if r["id"] in roots else "ancestor_revoked",
            "revokedWith": len(rows), "parentGrantId": r["parent_grant_id"],
            **({"revokedBy": actor} if actor is not None and r["id"] in roots else {})})[0]
            for r in revoked]
        trail = Appender(ledger, conn, developer_id)
        trail.add_many(contexts, texts, [None] * len(texts), revoked_at, entries=False)
        trail.flush()
    emit_revoked(ledger, conn, rows, root_ids)
    return [r["id"] for r in rows]


def emit_revoked(ledger: Ledger, conn: sqlite3.Connection, rows: list[sqlite3.Row],
                 root_ids: list[str]) -> None:
    """One ``grant.revoked`` event per revoked root, listing the root first and then every
    grant its cascade revoked now, each with its ``expiresAt``: the revocation feed and
    webhooks need every grant id (a descendant gets no event of its own) and how long each
    must be remembered. ``cascade`` says whether the operation reached beyond the root."""
    if not rows:
        return
    by_id = {r["id"]: r for r in rows}
    roots = set(root_ids)
    groups: dict[str, list[sqlite3.Row]] = {}
    for r in rows:
        top, cursor = r["id"] if r["id"] in roots else None, r
        while cursor["parent_grant_id"] in by_id:
            cursor = by_id[cursor["parent_grant_id"]]
            if cursor["id"] in roots:
                top = cursor["id"]
        groups.setdefault(top or next((i for i in root_ids if i in by_id), r["id"]), []).append(r)
    for root, members in groups.items():
        members.sort(key=lambda r: (r["id"] != root, r["delegation_depth"], r["id"]))
        events.emit(ledger, conn, members[0]["developer_id"], "grant.revoked", {
            "grantId": root, "cascade": len(members) > 1,
            "revokedGrants": [{"grantId": r["id"], "expiresAt": r["expires_at"]} for r in members]})


def revoke(ledger: Ledger, developer_id: str | None, grant_id: str) -> RevokeResult:
    """Revoke a grant and every grant delegated from it, at any depth, in one transaction."""
    if not isinstance(grant_id, str) or not grant_id:
        raise errors.InvalidInput("grant id must be a non-empty string")
    now = iso(ledger.now())
    with ledger.write() as conn:
        row = conn.execute("SELECT developer_id, revoked_at FROM grants WHERE id = ?",
                           (grant_id,)).fetchone()
        if row is None or (developer_id is not None and row["developer_id"] != developer_id):
            raise errors.NotFound(f"grant {grant_id} not found")
        if row["revoked_at"] is not None:
            raise errors.NotFound(f"grant {grant_id} not found among active grants (already revoked)")
        revoked = revoke_and_record(ledger, conn, [grant_id], now, cause="revoked")
    return RevokeResult(grant_id, now, tuple(revoked))


def blast_radius(ledger: Ledger, grant_id: str) -> dict[str, Any]:
    """What revoking ``grant_id`` would touch: grants, agents and live tokens (read-only)."""
    now = iso(ledger.now())
    with ledger.read() as conn:
        ids = subtree_ids(conn, [grant_id])
        if not ids:
            raise errors.NotFound(f"grant {grant_id} not found")
        marks = ",".join("?" * len(ids))
        active = conn.execute(
            f"SELECT g.id, g.agent_id, a.name FROM grants g JOIN agents a ON a.id = g.agent_id "
            f"WHERE g.id IN ({marks}) AND g.revoked_at IS NULL", ids,
        ).fetchall()
        alive = [r["id"] for r in active]
        live_marks = ",".join("?" * len(alive))
        live_tokens = conn.execute(
            f"SELECT count(*) FROM tokens WHERE grant_id IN ({live_marks}) AND revoked_at IS NULL "
            "AND expires_at > ?", [*alive, now],
        ).fetchone()[0] if alive else 0
    return {
        "grantId": grant_id,
        "grantIds": [r["id"] for r in active],
        "descendants": max(0, len(active) - (1 if any(r["id"] == grant_id for r in active) else 0)),
        "agents": sorted({r["name"] for r in active}),
        "liveTokens": live_tokens,
    }


def tree(ledger: Ledger, developer_id: str | None, root_id: str | None = None) -> list[dict[str, Any]]:
    """Delegation trees as nested dicts (``children`` lists), roots ordered by issue time."""
    now = iso(ledger.now())
    if root_id is not None:
        root = get(ledger, developer_id, root_id)
        with ledger.read() as conn:
            ids = subtree_ids(conn, [root.id])
            marks = ",".join("?" * len(ids))
            rows = conn.execute(f"{_SELECT} WHERE g.id IN ({marks}) ORDER BY g.issued_at, g.id",
                                ids).fetchall()
    else:
        sql, params = f"{_SELECT} ORDER BY g.issued_at, g.id", []
        if developer_id is not None:
            sql = f"{_SELECT} WHERE g.developer_id = ? ORDER BY g.issued_at, g.id"
            params = [developer_id]
        rows = ledger.query(sql, params)
    nodes: dict[str, dict[str, Any]] = {}
    for r in rows:
        node = from_row(r, now).to_dict()
        node["agentName"] = r["agent_name"]
        node["agentStatus"] = r["agent_status"]
        node["children"] = []
        nodes[r["id"]] = node
    roots = []
    for node in nodes.values():
        parent = node.get("parentGrantId")
        if parent in nodes and node["id"] != root_id:
            nodes[parent]["children"].append(node)
        else:
            roots.append(node)
    return roots


# ── reads for browsing the delegation forest (the TUI) ───────────────────────

BROWSE_STATUSES = ("active", "revoked", "expired", "suspended")
"""What a grant browser shows per grant: its own status, or ``suspended`` when the grant is
active but its agent is suspended (``deleted`` for a deleted agent's active grant)."""


def browse_status(grant_status: str, agent_status: str) -> str:
    """One status per node, the most decisive first: revoked, expired, then the agent's state.

    A browser needs one badge per grant; an active grant whose agent is suspended
    cannot be used, so showing it as plainly "active" would mislead.
    """
    if grant_status != "active" or agent_status == "active":
        return grant_status
    return "suspended" if agent_status == "suspended" else "deleted"


def _browse_where(
    now: str,
    *,
    developer_id: str | None,
    principal_id: str | None,
    agent_id: str | None,
    status: str | None,
    scope: str | None,
) -> tuple[str, list[Any]]:
    """The WHERE clause (over ``grants g JOIN agents a``) shared by the browse queries."""
    sql, params = " WHERE 1 = 1", []
    for column, value in (("g.developer_id", developer_id), ("g.principal_id", principal_id),
                          ("g.agent_id", agent_id)):
        if value is not None:
            sql += f" AND {column} = ?"
            params.append(value)
    if status is not None:
        if status not in BROWSE_STATUSES:
            raise errors.InvalidInput(
                f"status must be one of {', '.join(BROWSE_STATUSES)}, not {status!r}")
        if status == "revoked":
            sql += " AND g.revoked_at IS NOT NULL"
        elif status == "expired":
            sql += " AND g.revoked_at IS NULL AND g.expires_at <= ?"
            params.append(now)
        else:
            sql += " AND g.revoked_at IS NULL AND g.expires_at > ? AND a.status " + (
                "= 'active'" if status == "active" else "= 'suspended'")
            params.append(now)
    if scope is not None:
        if not isinstance(scope, str) or not scope or len(scope) > 256:
            raise errors.InvalidInput("scope filter must be a non-empty string of at most 256 characters")
        escaped = scope.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        sql += (" AND EXISTS (SELECT 1 FROM json_each(g.scopes) s"
                " WHERE s.value = ? OR s.value LIKE ? ESCAPE '\\')")
        params += [scope, escaped + ":%"]
    return sql, params


def principal_summaries(
    ledger: Ledger,
    developer_id: str | None = None,
    *,
    principal_id: str | None = None,
    agent_id: str | None = None,
    status: str | None = None,
    scope: str | None = None,
    limit: int = 500,
    offset: int = 0,
) -> tuple[list[dict[str, Any]], int]:
    """The principals holding grants that match, with counts, and how many principals match in all.

    The first level of a lazily loaded grant tree: one grouped query, so a ledger
    with 100,000 grants lists its principals without reading any grant into Python.
    Each item: ``developerId, principalId, grants, roots, active`` (counts of the
    matching grants). ``scope`` matches a scope exactly or as a prefix ending at ``:``
    (``payments`` matches ``payments:initiate:max_500``).
    """
    now = iso(ledger.now())
    where, params = _browse_where(now, developer_id=developer_id, principal_id=principal_id,
                                  agent_id=agent_id, status=status, scope=scope)
    grouped = (f"FROM grants g JOIN agents a ON a.id = g.agent_id{where} "
               "GROUP BY g.developer_id, g.principal_id")
    with ledger.read() as conn:
        rows = conn.execute(
            "SELECT g.developer_id, g.principal_id, count(*) AS grants, "
            "sum(g.parent_grant_id IS NULL) AS roots, "
            f"sum(g.revoked_at IS NULL AND g.expires_at > ?) AS active {grouped} "
            "ORDER BY g.principal_id, g.developer_id LIMIT ? OFFSET ?",
            [now, *params, limit, offset]).fetchall()
        total = conn.execute(f"SELECT count(*) FROM (SELECT 1 {grouped})", params).fetchone()[0]
    return [{"developerId": r["developer_id"], "principalId": r["principal_id"], "grants": r["grants"],
             "roots": r["roots"], "active": r["active"]} for r in rows], total


def browse_grants(
    ledger: Ledger,
    developer_id: str | None = None,
    *,
    principal_id: str | None = None,
    parent_grant_id: str | None = None,
    roots_only: bool = False,
    grant_id: str | None = None,
    agent_id: str | None = None,
    status: str | None = None,
    scope: str | None = None,
    limit: int = 200,
    offset: int = 0,
) -> tuple[list[dict[str, Any]], int]:
    """One page of grants for a lazily loaded tree, and how many match in all.

    Each item is :meth:`Grant.to_dict` plus what a tree node shows without
    another query: ``agentName``, ``agentStatus``, ``browseStatus`` (see
    :func:`browse_status`) and ``children`` (direct delegations, any status).
    Filters are those of :func:`principal_summaries`; ``grant_id`` narrows to one grant.
    """
    now = iso(ledger.now())
    where, params = _browse_where(now, developer_id=developer_id, principal_id=principal_id,
                                  agent_id=agent_id, status=status, scope=scope)
    if parent_grant_id is not None:
        where += " AND g.parent_grant_id = ?"
        params.append(parent_grant_id)
    if roots_only:
        where += " AND g.parent_grant_id IS NULL"
    if grant_id is not None:
        where += " AND g.id = ?"
        params.append(grant_id)
    with ledger.read() as conn:
        rows = conn.execute(
            f"{_SELECT}{where} ORDER BY g.issued_at, g.id LIMIT ? OFFSET ?", [*params, limit, offset],
        ).fetchall()
        total = conn.execute(
            f"SELECT count(*) FROM grants g JOIN agents a ON a.id = g.agent_id{where}", params,
        ).fetchone()[0]
        ids = [r["id"] for r in rows]
        marks = ",".join("?" * len(ids))
        children = dict(conn.execute(
            f"SELECT parent_grant_id, count(*) FROM grants WHERE parent_grant_id IN ({marks}) "
            "GROUP BY parent_grant_id", ids).fetchall()) if ids else {}
    out = []
    for r in rows:
        item = from_row(r, now).to_dict()
        item.update(agentName=r["agent_name"], agentStatus=r["agent_status"],
                    browseStatus=browse_status(item["status"], r["agent_status"]),
                    children=children.get(r["id"], 0))
        out.append(item)
    return out, total
