"""``/v1/agents``: register, list, read, update (PATCH or POST, as the SDK sends), delete."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse, Response

from ..auth import CallerDep
from ..errors import ApiError
from ..schemas import RegisterAgent, UpdateAgent, refuse_unsupported
from . import created, no_content, ok

router = APIRouter(prefix="/v1/agents", tags=["agents"])


@router.post("", status_code=201, summary="Register an agent")
def register_agent(body: RegisterAgent, caller: CallerDep) -> JSONResponse:
    refuse_unsupported(body, "resourceServers")
    if body.status not in (None, "active"):
        raise ApiError(400, "BAD_REQUEST", "a new agent's status can only be 'active'")
    agent = caller.gx().agents.register(
        name=body.name, scopes=body.scopes or [], description=body.description or "",
        redirect_uris=body.redirectUris, public_jwk=body.publicJwk)
    return created(agent.to_dict())


@router.get("", summary="List agents")
def list_agents(caller: CallerDep, status: str | None = None) -> JSONResponse:
    return ok(caller.gx().agents.list(status=status).to_dict())


@router.get("/{agent_id}", summary="Get an agent")
def get_agent(agent_id: str, caller: CallerDep) -> JSONResponse:
    return ok(caller.gx().agents.get(agent_id).to_dict())


def _update(agent_id: str, body: UpdateAgent, caller: CallerDep) -> JSONResponse:
    refuse_unsupported(body, "resourceServers")
    gx = caller.gx()
    if body.publicJwk is not None:
        gx.agents.get(agent_id)  # unknown agent: 404 before any key work
    agent = gx.agents.update(agent_id, name=body.name, description=body.description, scopes=body.scopes,
                             redirect_uris=body.redirectUris, status=body.status)
    if body.publicJwk is not None:
        agent = gx.agents.rotate_key(agent_id, body.publicJwk)
    return ok(agent.to_dict())


@router.patch("/{agent_id}", summary="Update an agent")
def patch_agent(agent_id: str, body: UpdateAgent, caller: CallerDep) -> JSONResponse:
    return _update(agent_id, body, caller)


@router.post("/{agent_id}", summary="Update an agent (the SDK's spelling)")
def post_agent(agent_id: str, body: UpdateAgent, caller: CallerDep) -> JSONResponse:
    return _update(agent_id, body, caller)


@router.delete("/{agent_id}", status_code=204, summary="Delete an agent (a tombstone)")
def delete_agent(agent_id: str, caller: CallerDep) -> Response:
    caller.gx().agents.delete(agent_id)
    return no_content()
