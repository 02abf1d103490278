"""``nodewright webhooks ...``: webhook endpoints over the HTTP API (admin token).

The signing secret is printed once, alone on the last line, by ``create`` and ``rotate``; no other
command can show it (the API never returns it again).
"""

from __future__ import annotations

import json
from typing import Annotated, Any

import typer

from nodewright.api_client import DEFAULT_URL, ApiError
from nodewright.cli_nodes import JsonOption, TokenFile, UrlOption, client, die, say

webhooks_app = typer.Typer(help="Webhook endpoints: signed alert deliveries.", no_args_is_help=True)
IdArg = Annotated[int, typer.Argument(help="Webhook endpoint id.")]


def _line(hook: dict[str, Any]) -> str:
    events = ",".join(hook["events"]) or "all"
    state = "enabled" if hook["enabled"] else "disabled"
    return f"{hook['id']}\t{hook['name']}\t{hook['url']}\t{events}\t{state}\t{hook['secret_fingerprint']}"


def _print(value: Any, as_json: bool, render: Any) -> None:
    if as_json:
        say(json.dumps(value, indent=2))
    else:
        render(value)


def _each(rows: list[dict[str, Any]], render: Any) -> None:
    for row in rows:
        say(render(row))


@webhooks_app.command("list")
def list_cmd(url: UrlOption = DEFAULT_URL, token_file: TokenFile = None, as_json: JsonOption = False) -> None:
    try:
        with client(url, token_file) as api:
            hooks = api.get("/api/webhooks")
    except ApiError as exc:
        die(exc)
        return
    _print(hooks, as_json, lambda rows: _each(rows, _line))


@webhooks_app.command("create")
def create_cmd(
    name: Annotated[str, typer.Option("--name", help="A name for the endpoint.")],
    endpoint_url: Annotated[str, typer.Option("--endpoint", help="The URL deliveries are POSTed to.")],
    events: Annotated[
        list[str] | None, typer.Option("--event", help="An event type (repeat); none: all.")
    ] = None,
    url: UrlOption = DEFAULT_URL,
    token_file: TokenFile = None,
) -> None:
    body = {"name": name, "url": endpoint_url, "events": events or []}
    try:
        with client(url, token_file) as api:
            hook = api.post("/api/webhooks", json=body)
    except ApiError as exc:
        die(exc)
        return
    say(_line(hook))
    say("signing secret (shown this once; store it now):")
    typer.echo(hook["secret"])


@webhooks_app.command("show")
def show_cmd(webhook_id: IdArg, url: UrlOption = DEFAULT_URL, token_file: TokenFile = None,
             as_json: JsonOption = False) -> None:  # fmt: skip
    try:
        with client(url, token_file) as api:
            hook = api.get(f"/api/webhooks/{webhook_id}")
    except ApiError as exc:
        die(exc)
        return
    _print(hook, as_json, lambda h: say(_line(h)))


@webhooks_app.command("rotate")
def rotate_cmd(
    webhook_id: IdArg,
    overlap: Annotated[int, typer.Option("--overlap", help="Seconds the old secret keeps signing.")] = 86400,
    url: UrlOption = DEFAULT_URL,
    token_file: TokenFile = None,
) -> None:
    try:
        with client(url, token_file) as api:
            hook = api.post(f"/api/webhooks/{webhook_id}/rotate", json={"overlap_seconds": overlap})
    except ApiError as exc:
        die(exc)
        return
    say(_line(hook))
    say("new signing secret (shown this once; store it now):")
    typer.echo(hook["secret"])


@webhooks_app.command("delete")
def delete_cmd(webhook_id: IdArg, url: UrlOption = DEFAULT_URL, token_file: TokenFile = None) -> None:
    try:
        with client(url, token_file) as api:
            api.request("DELETE", f"/api/webhooks/{webhook_id}")
    except ApiError as exc:
        die(exc)
        return
    say(f"webhook endpoint {webhook_id} deleted")


def _delivery_line(d: dict[str, Any]) -> str:
    answer = d["last_status_code"] if d["last_status_code"] is not None else "-"
    latency = f"{d['latency_ms']} ms" if d["latency_ms"] is not None else "-"
    return (
        f"{d['id']}\t{d['event_type']}\t{d['event_id']}\t{d['status']}\tattempts={d['attempts']}\t"
        f"last={answer}\t{latency}\t{d['last_error'] or ''}"
    )


@webhooks_app.command("test")
def test_cmd(webhook_id: IdArg, url: UrlOption = DEFAULT_URL, token_file: TokenFile = None) -> None:
    try:
        with client(url, token_file) as api:
            delivery = api.post(f"/api/webhooks/{webhook_id}/test")
    except ApiError as exc:
        die(exc)
        return
    say(_delivery_line(delivery))


@webhooks_app.command("deliveries")
def deliveries_cmd(webhook_id: IdArg, url: UrlOption = DEFAULT_URL, token_file: TokenFile = None,
                   as_json: JsonOption = False) -> None:  # fmt: skip
    try:
        with client(url, token_file) as api:
            rows = api.get(f"/api/webhooks/{webhook_id}/deliveries")
    except ApiError as exc:
        die(exc)
        return
    _print(rows, as_json, lambda ds: _each(ds, _delivery_line))


@webhooks_app.command("redeliver")
def redeliver_cmd(
    webhook_id: IdArg,
    delivery_id: Annotated[int, typer.Argument(help="Delivery id (see `webhooks deliveries`).")],
    url: UrlOption = DEFAULT_URL,
    token_file: TokenFile = None,
) -> None:
    try:
        with client(url, token_file) as api:
            delivery = api.post(f"/api/webhooks/{webhook_id}/deliveries/{delivery_id}/redeliver")
    except ApiError as exc:
        die(exc)
        return
    say(_delivery_line(delivery))
