"""``/v1/anomalies`` and ``/v1/irregularities/response-policy`` (SDK-SURFACE §3).

Bodies are optional on detect and acknowledge: the SDK sends ``{}``, the conformance suite sends
no body and no Content-Type, and both must answer 200, so those routes declare no body at all.

``POST /v1/anomalies/detect`` answers with the anomalies this run stored (``total`` is their
count); already stored ones are not repeated (``openTotal`` counts every open one). The detectors
are pandas code, imported only when detection runs, never at server start.
"""

from __future__ import annotations

from fastapi import APIRouter, Query
from fastapi.responses import JSONResponse

from ... import anomalies
from ..auth import CallerDep
from ..schemas import Body
from . import ok

router = APIRouter(tags=["anomalies"])
"""``anomalies``: detect, list and acknowledge anomalies in the ledger."""


class ResponsePolicy(Body):
    """The library checks ``mode`` (a missing or unknown one is its 400)."""

    mode: str | None = None


@router.post("/v1/anomalies/detect", summary="Run the detectors and store what is new")
def detect_anomalies(caller: CallerDep) -> JSONResponse:
    from ...analysis.detection import detect  # pandas: only when detection runs

    result = detect(caller.ledger(), caller.developer_id)
    return ok(result.to_dict())


@router.get("/v1/anomalies", summary="Stored anomalies, newest first")
def list_anomalies(caller: CallerDep, unacknowledged: bool = Query(
        False, description="Only the ones nobody acknowledged yet")) -> JSONResponse:
    found = anomalies.list_anomalies(caller.ledger(), caller.developer_id, unacknowledged=unacknowledged)
    return ok({"anomalies": [a.to_dict() for a in found], "total": len(found)})


@router.patch("/v1/anomalies/{anomaly_id}/acknowledge", summary="Acknowledge an anomaly (idempotent)")
def acknowledge_anomaly(anomaly_id: str, caller: CallerDep) -> JSONResponse:
    found = anomalies.acknowledge(caller.ledger(), caller.developer_id, anomaly_id, by="api")
    return ok(found.to_dict())


@router.get("/v1/irregularities/response-policy", summary="What detection does with a serious anomaly")
def get_response_policy(caller: CallerDep) -> JSONResponse:
    return ok({"mode": anomalies.get_policy(caller.ledger(), caller.developer_id)})


@router.patch("/v1/irregularities/response-policy", summary="alert_only or revoke_agent_grants")
def set_response_policy(body: ResponsePolicy, caller: CallerDep) -> JSONResponse:
    mode = anomalies.set_policy(caller.ledger(), caller.developer_id, body.mode)
    return ok({"mode": mode})
