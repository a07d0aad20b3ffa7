"""``/v1/compliance``: summary, grants and audit exports, and the signed evidence pack (SDK-SURFACE §4).

Thin calls on :mod:`grantex_local.compliance` as the key's developer; a bad
``since``/``until``/``status``/``framework`` is the library's InvalidInput, which
the error handler answers as 400 ``{message, code, requestId}``.
"""

from __future__ import annotations

from fastapi import APIRouter, Query
from fastapi.responses import JSONResponse

from ... import compliance
from ..auth import CallerDep
from . import ok

router = APIRouter(prefix="/v1/compliance", tags=["compliance"])

_SINCE = Query(None, description="ISO-8601, inclusive")
_UNTIL = Query(None, description="ISO-8601, exclusive")


@router.get("/summary", summary="Counts of agents, grants, audit entries and policies")
def get_summary(caller: CallerDep, since: str | None = _SINCE, until: str | None = _UNTIL) -> JSONResponse:
    return ok(compliance.summary(caller.ledger(), caller.developer_id, since=since, until=until))


@router.get("/export/grants", summary="Every grant issued in the window")
def export_grants(caller: CallerDep, since: str | None = _SINCE, until: str | None = _UNTIL,
                  status: str | None = Query(None, description="active | revoked | expired")) -> JSONResponse:
    return ok(compliance.export_grants(caller.ledger(), caller.developer_id, since=since, until=until,
                                       status=status))


@router.get("/export/audit", summary="Audit entries of the window, oldest first, with their preimages")
def export_audit(caller: CallerDep, since: str | None = _SINCE, until: str | None = _UNTIL,
                 agentId: str | None = None,
                 status: str | None = Query(None, description="success | failure | blocked")) -> JSONResponse:
    return ok(compliance.export_audit(caller.ledger(), caller.developer_id, since=since, until=until,
                                      agent_id=agentId, status=status))


@router.get("/evidence-pack", summary="A signed evidence pack, checked offline by 'verify-export'")
def evidence_pack(caller: CallerDep, since: str | None = _SINCE, until: str | None = _UNTIL,
                  framework: str | None = Query(None, description="soc2 | gdpr | all (default)"),
                  ) -> JSONResponse:
    return ok(compliance.evidence_pack(caller.ledger(), caller.developer_id, since=since, until=until,
                                       framework=framework))
