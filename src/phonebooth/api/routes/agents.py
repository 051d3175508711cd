"""`/v1/agents`: agents with their tools (header values redacted except to an admin reading one)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request, Response

from phonebooth.api.deps import AnyCaller, Session, State, read_json
from phonebooth.api.serializers import agent_json
from phonebooth.api.url_checks import check_tool_urls
from phonebooth.contract.agent_config import AgentWrite, parse_agent_write
from phonebooth.core.errors import FieldError, ValidationFailed
from phonebooth.storage import agents as repo
from phonebooth.storage.tables import Agent

__all__ = ["router"]

router = APIRouter(prefix="/v1/agents", tags=["agents"])

_WRITABLE = (
    "name",
    "prompt",
    "voice",
    "product",
    "background_track",
    "tools",
    "inbound_speak_order",
    "first_message",
)


def _stored_fields(agent: AgentWrite) -> dict[str, Any]:
    return {
        "name": agent.name,
        "prompt": agent.prompt,
        "voice": agent.voice,
        "product": agent.product,
        "background_track": agent.background_track,
        "tools": agent.tools_json(),
        "inbound_speak_order": agent.inbound_speak_order,
        "first_message": agent.first_message,
    }


def _current(agent: Agent) -> dict[str, Any]:
    return {name: getattr(agent, name) for name in _WRITABLE}


def _restore_redacted(body: Any, existing: Agent) -> Any:
    """A tool header sent back as `***` (as a member reads it) keeps its stored value."""
    if not isinstance(body, dict) or not isinstance(body.get("tools"), list):
        return body
    stored = {
        tool["function"]["name"]: tool.get("endpoint", {}).get("headers", {})
        for tool in existing.tools or []
    }
    tools = []
    for tool in body["tools"]:
        try:
            headers = tool["endpoint"]["headers"]
            name = tool["function"]["name"]
        except (KeyError, TypeError):
            tools.append(tool)
            continue
        if isinstance(headers, dict) and name in stored:
            kept = {
                key: stored[name][key] if value == "***" and key in stored[name] else value
                for key, value in headers.items()
            }
            tool = {**tool, "endpoint": {**tool["endpoint"], "headers": kept}}
        tools.append(tool)
    return {**body, "tools": tools}


def _validated(state: State, body: Any) -> AgentWrite:
    agent = parse_agent_write(body)
    check_tool_urls(agent.tools, allow_private=state.settings.private_urls_allowed)
    return agent


@router.get("")
async def list_agents(caller: AnyCaller, session: Session) -> list[dict[str, Any]]:
    return [agent_json(a) for a in await repo.list_agents(session, caller.org_id)]


@router.post("", status_code=201)
async def create_agent(
    request: Request, caller: AnyCaller, session: Session, state: State
) -> dict[str, Any]:
    agent = _validated(state, await read_json(request))
    row = await repo.create_agent(session, caller.org_id, _stored_fields(agent))
    await session.commit()
    return agent_json(row)


@router.get("/{agent_id}")
async def get_agent(agent_id: int, caller: AnyCaller, session: Session) -> dict[str, Any]:
    row = await repo.get_agent(session, caller.org_id, agent_id)
    return agent_json(row, reveal_headers=caller.is_admin)


async def _replace(
    request: Request, agent_id: int, caller: AnyCaller, session: Session, state: State, merge: bool
) -> dict[str, Any]:
    existing = await repo.get_agent(session, caller.org_id, agent_id)
    body = _restore_redacted(await read_json(request), existing)
    if not isinstance(body, dict):
        raise ValidationFailed([FieldError("body", "must be a JSON object")])
    merged = {**_current(existing), **body} if merge else body
    agent = _validated(state, merged)
    row = await repo.update_agent(session, caller.org_id, agent_id, _stored_fields(agent))
    await session.commit()
    return agent_json(row)


@router.put("/{agent_id}")
async def replace_agent(
    agent_id: int, request: Request, caller: AnyCaller, session: Session, state: State
) -> dict[str, Any]:
    return await _replace(request, agent_id, caller, session, state, merge=False)


@router.patch("/{agent_id}")
async def patch_agent(
    agent_id: int, request: Request, caller: AnyCaller, session: Session, state: State
) -> dict[str, Any]:
    return await _replace(request, agent_id, caller, session, state, merge=True)


@router.delete("/{agent_id}", status_code=204)
async def delete_agent(agent_id: int, caller: AnyCaller, session: Session) -> Response:
    await repo.delete_agent(session, caller.org_id, agent_id)
    await session.commit()
    return Response(status_code=204)


@router.post("/{agent_id}/deploy", status_code=202)
async def deploy_agent(agent_id: int, caller: AnyCaller, session: Session) -> dict[str, Any]:
    """Accepted for compatibility: phonebooth applies agent changes at once."""
    row = await repo.get_agent(session, caller.org_id, agent_id)
    return {"id": row.id, "status": "deployed", "detail": "Changes take effect immediately."}
