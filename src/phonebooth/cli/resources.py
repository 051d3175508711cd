"""`phonebooth agents|numbers|webhook|keys`: the REST API from the shell."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from phonebooth.cli.client import ApiClient, CliError, fail
from phonebooth.cli.output import print_json, print_object, print_table

__all__ = ["agents_app", "keys_app", "numbers_app", "webhook_app"]

Server = Annotated[
    str | None, typer.Option("--server", help="phonebooth URL [env PHONEBOOTH_SERVER]")
]
ApiKeyOpt = Annotated[
    str | None,
    typer.Option("--api-key", help="API key [env PHONEBOOTH_API_KEY, else the admin-key file]"),
]
AsJson = Annotated[bool, typer.Option("--json", help="Print exact JSON for scripts")]

agents_app = typer.Typer(help="Create and inspect agents.", no_args_is_help=True)
numbers_app = typer.Typer(help="Manage phone numbers.", no_args_is_help=True)
webhook_app = typer.Typer(
    help="The organization's single call.incoming webhook.", no_args_is_help=True
)
keys_app = typer.Typer(help="API keys (admin only).", no_args_is_help=True)

_AGENT_KEYS = [
    "id",
    "name",
    "product",
    "voice",
    "inbound_speak_order",
    "first_message",
    "background_track",
    "tools",
    "prompt",
    "created_at",
    "updated_at",
]


def _run(action: Any) -> Any:
    try:
        return action()
    except CliError as error:
        raise fail(error) from None


def _load_json_file(path: Path, what: str) -> Any:
    try:
        return json.loads(path.read_text())
    except OSError as exc:
        raise fail(CliError(f"Cannot read {what} file {path}: {exc.strerror}")) from None
    except ValueError as exc:
        raise fail(CliError(f"{what} file {path} is not valid JSON: {exc}")) from None


@agents_app.command("create")
def agents_create(
    name: Annotated[str | None, typer.Option(help="Agent name")] = None,
    prompt: Annotated[str | None, typer.Option(help="System prompt")] = None,
    voice: Annotated[str, typer.Option(help="Voice id")] = "en_US-joe-medium",
    product: Annotated[str, typer.Option(help="spark, bolt or zap")] = "spark",
    first_message: Annotated[str | None, typer.Option(help="Opening line")] = None,
    speak_order: Annotated[str, typer.Option(help="agent_first or caller_first")] = "agent_first",
    tools: Annotated[Path | None, typer.Option(help="JSON file with a list of tools")] = None,
    file: Annotated[Path | None, typer.Option(help="JSON file with the whole agent")] = None,
    server: Server = None,
    api_key: ApiKeyOpt = None,
    as_json: AsJson = False,
) -> None:
    """Create an agent from options or from a JSON file (--file)."""
    body: dict[str, Any]
    if file is not None:
        body = _load_json_file(file, "agent")
    else:
        if not name or not prompt:
            raise fail(CliError("--name and --prompt are required (or pass --file agent.json)"))
        body = {
            "name": name,
            "prompt": prompt,
            "voice": voice,
            "product": product,
            "inbound_speak_order": speak_order,
        }
        if first_message:
            body["first_message"] = first_message
        if tools is not None:
            body["tools"] = _load_json_file(tools, "tools")
    agent = _run(lambda: ApiClient(server, api_key).post("/v1/agents", body))
    if as_json:
        print_json(agent)
    else:
        typer.echo(f"Created agent {agent['id']} ({agent['name']}).")


@agents_app.command("list")
def agents_list(server: Server = None, api_key: ApiKeyOpt = None, as_json: AsJson = False) -> None:
    """List agents."""
    agents = _run(lambda: ApiClient(server, api_key).get("/v1/agents"))
    if as_json:
        print_json(agents)
    else:
        print_table(agents, ["id", "name", "product", "voice", "inbound_speak_order"])


@agents_app.command("show")
def agents_show(
    agent_id: int, server: Server = None, api_key: ApiKeyOpt = None, as_json: AsJson = False
) -> None:
    """Show one agent."""
    agent = _run(lambda: ApiClient(server, api_key).get(f"/v1/agents/{agent_id}"))
    if as_json:
        print_json(agent)
    else:
        print_object(agent, _AGENT_KEYS)


@numbers_app.command("add")
def numbers_add(
    number: Annotated[str, typer.Argument(help="E.164 number, e.g. +15555550100")],
    agent: Annotated[int | None, typer.Option(help="Default inbound agent id")] = None,
    label: Annotated[str | None, typer.Option(help="A label")] = None,
    source: Annotated[str, typer.Option(help="virtual, sip or twilio")] = "virtual",
    server: Server = None,
    api_key: ApiKeyOpt = None,
    as_json: AsJson = False,
) -> None:
    """Add a phone number."""
    body = {"number": number, "label": label, "source": source, "inbound_agent_id": agent}
    created = _run(lambda: ApiClient(server, api_key).post("/v1/phone-numbers", body))
    if as_json:
        print_json(created)
    else:
        typer.echo(f"Added {created['number']} (id {created['id']}).")


@numbers_app.command("list")
def numbers_list(server: Server = None, api_key: ApiKeyOpt = None, as_json: AsJson = False) -> None:
    """List phone numbers."""
    numbers = _run(lambda: ApiClient(server, api_key).get("/v1/phone-numbers"))
    if as_json:
        print_json(numbers)
    else:
        print_table(numbers, ["id", "number", "label", "source", "inbound_agent_id"])


@numbers_app.command("assign")
def numbers_assign(
    number: Annotated[str, typer.Argument(help="The number (E.164) or its id")],
    agent: Annotated[int | None, typer.Option(help="Inbound agent id; omit to unassign")] = None,
    server: Server = None,
    api_key: ApiKeyOpt = None,
    as_json: AsJson = False,
) -> None:
    """Point a number's inbound calls at a default agent."""
    client = _run(lambda: ApiClient(server, api_key))
    numbers = _run(lambda: client.get("/v1/phone-numbers"))
    match = next((n for n in numbers if n["number"] == number or str(n["id"]) == number), None)
    if match is None:
        raise fail(CliError(f"No phone number {number} in this organization"))
    path = f"/v1/phone-numbers/{match['id']}"
    updated = _run(lambda: client.patch(path, {"inbound_agent_id": agent}))
    if as_json:
        print_json(updated)
    else:
        typer.echo(f"{updated['number']} now answers with agent {updated['inbound_agent_id']}.")


@webhook_app.command("set")
def webhook_set(
    url: Annotated[str, typer.Argument(help="Your call.incoming handler URL")],
    server: Server = None,
    api_key: ApiKeyOpt = None,
    as_json: AsJson = False,
) -> None:
    """Set the single webhook URL (admin)."""
    hook = _run(lambda: ApiClient(server, api_key).put("/v1/webhook", {"url": url}))
    if as_json:
        print_json(hook)
    else:
        typer.echo(f"Webhook set to {hook['url']}.\nSigning secret: {hook['secret']}")


@webhook_app.command("show")
def webhook_show(server: Server = None, api_key: ApiKeyOpt = None, as_json: AsJson = False) -> None:
    """Show the single webhook and its signing secret (admin)."""
    hook = _run(lambda: ApiClient(server, api_key).get("/v1/webhook"))
    if as_json:
        print_json(hook)
    else:
        print_object(hook, ["url", "secret", "created_at", "updated_at"])


@keys_app.command("create")
def keys_create(
    name: Annotated[str, typer.Option(help="A name for the key")] = "",
    role: Annotated[str, typer.Option(help="admin or member")] = "member",
    server: Server = None,
    api_key: ApiKeyOpt = None,
    as_json: AsJson = False,
) -> None:
    """Create an API key; it is shown once."""
    key = _run(
        lambda: ApiClient(server, api_key).post(
            "/v1/developer/api-keys", {"name": name, "role": role}
        )
    )
    if as_json:
        print_json(key)
    else:
        typer.echo(f"Created {key['role']} key {key['id']}. Store it now; it is not shown again:")
        typer.echo(key["key"])


@keys_app.command("list")
def keys_list(server: Server = None, api_key: ApiKeyOpt = None, as_json: AsJson = False) -> None:
    """List API keys (prefixes only)."""
    keys = _run(lambda: ApiClient(server, api_key).get("/v1/developer/api-keys"))
    if as_json:
        print_json(keys)
    else:
        print_table(keys, ["id", "name", "role", "key_prefix", "is_active", "last_used_at"])


@keys_app.command("revoke")
def keys_revoke(
    key_id: str, server: Server = None, api_key: ApiKeyOpt = None, as_json: AsJson = False
) -> None:
    """Revoke an API key."""
    _run(lambda: ApiClient(server, api_key).delete(f"/v1/developer/api-keys/{key_id}"))
    if as_json:
        print_json({"id": key_id, "revoked": True})
    else:
        typer.echo(f"Revoked key {key_id}.")
