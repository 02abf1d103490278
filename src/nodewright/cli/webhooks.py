"""``nodewright webhooks ...``: webhook endpoints over the HTTP API (admin token).

The signing secret is printed once, alone on the last line, by ``create`` and ``rotate``; no other
command can show it (the API never returns it again).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer

from nodewright.cli.client import ApiError
from nodewright.cli.errors import die, say
from nodewright.cli.options import JsonOption, TokenFile, UrlOption, client
from nodewright.cli.output import Output, OutputOption, emit, parse

webhooks_app = typer.Typer(help="Webhook endpoints: signed alert deliveries.", no_args_is_help=True)
IdArg = Annotated[int, typer.Argument(help="Webhook endpoint id.")]


def _line(hook: dict[str, Any]) -> str:
    events = ",".join(hook["events"]) or "all"
    state = "enabled" if hook["enabled"] else "disabled"
    return f"{hook['id']}\t{hook['name']}\t{hook['url']}\t{events}\t{state}\t{hook['secret_fingerprint']}"


def _delivery_line(d: dict[str, Any]) -> str:
    answer = d["last_status_code"] if d["last_status_code"] is not None else "-"
    latency = f"{d['latency_ms']} ms" if d["latency_ms"] is not None else "-"
    return (
        f"{d['id']}\t{d['event_type']}\t{d['event_id']}\t{d['status']}\tattempts={d['attempts']}\t"
        f"last={answer}\t{latency}\t{d['last_error'] or ''}"
    )


def _call(url: str | None, token_file: Path | None, method: str, path: str, **kwargs: Any) -> Any:
    """One API request; a refusal ends the command with the server's message and exit code."""
    try:
        with client(url, token_file) as api:
            return api.request(method, path, **kwargs)
    except ApiError as exc:
        die(exc)


def _show(value: Any, shape: Output, line: Callable[[dict[str, Any]], str]) -> None:
    """The API's answer in the asked-for format (-o, --json); else one line per row (a list) or for
    the one object."""
    if emit(value, shape):
        return
    for row in value if isinstance(value, list) else [value]:
        say(line(row))


def _with_secret(hook: dict[str, Any], what: str) -> None:
    """create and rotate: the endpoint's line, then the secret alone on the last line (shown once)."""
    say(_line(hook))
    say(f"{what} (shown this once; store it now):")
    typer.echo(hook["secret"])


@webhooks_app.command("list")
def list_cmd(
    url: UrlOption = None,
    token_file: TokenFile = None,
    as_json: JsonOption = False,
    output: OutputOption = "table",
) -> None:
    shape = parse(output, as_json=as_json)
    _show(_call(url, token_file, "GET", "/api/webhooks"), shape, _line)


@webhooks_app.command("create")
def create_cmd(
    name: Annotated[str, typer.Option("--name", help="A name for the endpoint.")],
    endpoint_url: Annotated[str, typer.Option("--endpoint", help="The URL deliveries are POSTed to.")],
    events: Annotated[
        list[str] | None, typer.Option("--event", help="An event type (repeat); none: all.")
    ] = None,
    url: UrlOption = None,
    token_file: TokenFile = None,
) -> None:
    body = {"name": name, "url": endpoint_url, "events": events or []}
    _with_secret(_call(url, token_file, "POST", "/api/webhooks", json=body), "signing secret")


@webhooks_app.command("show")
def show_cmd(webhook_id: IdArg, url: UrlOption = None, token_file: TokenFile = None,
             as_json: JsonOption = False, output: OutputOption = "table") -> None:  # fmt: skip
    shape = parse(output, as_json=as_json)
    _show(_call(url, token_file, "GET", f"/api/webhooks/{webhook_id}"), shape, _line)


@webhooks_app.command("rotate")
def rotate_cmd(
    webhook_id: IdArg,
    overlap: Annotated[int, typer.Option("--overlap", help="Seconds the old secret keeps signing.")] = 86400,
    url: UrlOption = None,
    token_file: TokenFile = None,
) -> None:
    hook = _call(
        url, token_file, "POST", f"/api/webhooks/{webhook_id}/rotate", json={"overlap_seconds": overlap}
    )
    _with_secret(hook, "new signing secret")


@webhooks_app.command("delete")
def delete_cmd(webhook_id: IdArg, url: UrlOption = None, token_file: TokenFile = None) -> None:
    _call(url, token_file, "DELETE", f"/api/webhooks/{webhook_id}")
    say(f"webhook endpoint {webhook_id} deleted")


@webhooks_app.command("test")
def test_cmd(webhook_id: IdArg, url: UrlOption = None, token_file: TokenFile = None) -> None:
    say(_delivery_line(_call(url, token_file, "POST", f"/api/webhooks/{webhook_id}/test")))


@webhooks_app.command("deliveries")
def deliveries_cmd(webhook_id: IdArg, url: UrlOption = None, token_file: TokenFile = None,
                   as_json: JsonOption = False, output: OutputOption = "table") -> None:  # fmt: skip
    shape = parse(output, as_json=as_json)
    _show(_call(url, token_file, "GET", f"/api/webhooks/{webhook_id}/deliveries"), shape, _delivery_line)


@webhooks_app.command("redeliver")
def redeliver_cmd(
    webhook_id: IdArg,
    delivery_id: Annotated[int, typer.Argument(help="Delivery id (see `webhooks deliveries`).")],
    url: UrlOption = None,
    token_file: TokenFile = None,
) -> None:
    path = f"/api/webhooks/{webhook_id}/deliveries/{delivery_id}/redeliver"
    say(_delivery_line(_call(url, token_file, "POST", path)))
