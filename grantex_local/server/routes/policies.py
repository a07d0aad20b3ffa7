"""``/v1/policies``: the rules evaluated at authorize (PROTOCOL §11)."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse, Response

from ..auth import CallerDep
from ..schemas import CreatePolicy, UpdatePolicy
from . import created, no_content, ok

router = APIRouter(prefix="/v1/policies", tags=["policies"])


@router.post("", status_code=201, summary="Create a policy")
def create_policy(body: CreatePolicy, caller: CallerDep) -> JSONResponse:
    policy = caller.gx().policies.create(
        name=body.name, effect=body.effect, priority=body.priority, agent_id=body.agentId,
        principal_id=body.principalId, scopes=body.scopes, time_of_day_start=body.timeOfDayStart,
        time_of_day_end=body.timeOfDayEnd, time_window=body.timeWindow)
    return created(policy.to_dict())


@router.get("", summary="List policies (deny rules first, then by priority)")
def list_policies(caller: CallerDep) -> JSONResponse:
    return ok(caller.gx().policies.list().to_dict())


@router.get("/{policy_id}", summary="Get a policy")
def get_policy(policy_id: str, caller: CallerDep) -> JSONResponse:
    return ok(caller.gx().policies.get(policy_id).to_dict())


@router.patch("/{policy_id}", summary="Update a policy")
def update_policy(policy_id: str, body: UpdatePolicy, caller: CallerDep) -> JSONResponse:
    policy = caller.gx().policies.update(
        policy_id, name=body.name, effect=body.effect, priority=body.priority, agent_id=body.agentId,
        principal_id=body.principalId, scopes=body.scopes, time_of_day_start=body.timeOfDayStart,
        time_of_day_end=body.timeOfDayEnd, time_window=body.timeWindow)
    return ok(policy.to_dict())


@router.delete("/{policy_id}", status_code=204, summary="Delete a policy")
def delete_policy(policy_id: str, caller: CallerDep) -> Response:
    caller.gx().policies.delete(policy_id)
    return no_content()
