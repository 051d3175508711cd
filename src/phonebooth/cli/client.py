"""A small synchronous client of the REST API for the CLI, with readable failures."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import httpx
import typer

from phonebooth import __version__

__all__ = ["ApiClient", "CliError", "resolve_api_key", "resolve_server"]

DEFAULT_SERVER = "http://127.0.0.1:8000"


class CliError(Exception):
    """A failure to report in one readable line (plus field errors) and exit with `code`."""

    def __init__(self, message: str, code: int = 1) -> None:
        super().__init__(message)
        self.message = message
        self.code = code


def resolve_server(server: str | None) -> str:
    return (server or os.environ.get("PHONEBOOTH_SERVER") or DEFAULT_SERVER).rstrip("/")


def resolve_api_key(api_key: str | None) -> str:
    """`--api-key`, else `PHONEBOOTH_API_KEY`, else the admin-key file `serve` wrote."""
    if api_key:
        return api_key
    if os.environ.get("PHONEBOOTH_API_KEY"):
        return os.environ["PHONEBOOTH_API_KEY"]
    data_dir = Path(os.environ.get("PHONEBOOTH_DATA_DIR", ".phonebooth"))
    key_file = data_dir / "admin-key"
    if key_file.is_file():
        return key_file.read_text().strip()
    raise CliError(
        "No API key: pass --api-key, set PHONEBOOTH_API_KEY, or run from the directory where "
        f"`phonebooth serve` wrote {key_file}"
    )


class ApiClient:
    def __init__(self, server: str | None, api_key: str | None, timeout: float = 30.0) -> None:
        self.server = resolve_server(server)
        self._client = httpx.Client(
            base_url=self.server,
            timeout=timeout,
            headers={
                "Authorization": f"Bearer {resolve_api_key(api_key)}",
                "User-Agent": f"phonebooth-cli/{__version__}",
            },
        )

    def request(self, method: str, path: str, json: Any = None) -> Any:
        try:
            response = self._client.request(method, path, json=json)
        except httpx.TransportError as exc:
            raise CliError(
                f"Cannot reach phonebooth at {self.server} ({exc.__class__.__name__}). "
                "Is `phonebooth serve` running? Use --server to point elsewhere."
            ) from None
        if response.status_code >= 400:
            raise CliError(_describe_failure(response))
        if response.status_code == 204 or not response.content:
            return None
        return response.json()

    def get(self, path: str) -> Any:
        return self.request("GET", path)

    def post(self, path: str, json: Any = None) -> Any:
        return self.request("POST", path, json)

    def patch(self, path: str, json: Any) -> Any:
        return self.request("PATCH", path, json)

    def put(self, path: str, json: Any) -> Any:
        return self.request("PUT", path, json)

    def delete(self, path: str) -> Any:
        return self.request("DELETE", path)


def _describe_failure(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return f"HTTP {response.status_code}: {response.text[:200]}"
    lines = [f"HTTP {response.status_code}: {body.get('detail', body)}"]
    for error in body.get("errors", []) if isinstance(body, dict) else []:
        lines.append(f"  {error.get('field') or '(body)'}: {error.get('message')}")
    return "\n".join(lines)


def fail(error: CliError) -> typer.Exit:
    typer.echo(error.message, err=True)
    return typer.Exit(error.code)
