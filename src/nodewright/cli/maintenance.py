"""``nodewright maintenance ...``: pause watching's consequences for a node or a label selector."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from nodewright.cli.client import ApiError
from nodewright.cli.errors import die, say
from nodewright.cli.options import JsonOption, TokenFile, UrlOption, client, key_values
from nodewright.cli.output import OutputOption, emit, parse
from nodewright.security.text import clean_line

maintenance_app = typer.Typer(
    help="Pause watching's consequences for a node or a label selector.", no_args_is_help=True
)


@maintenance_app.command("list")
def maintenance_list(
    url: UrlOption = None,
    token_file: TokenFile = None,
    include_ended: Annotated[bool, typer.Option("--all", help="Ended pauses too.")] = False,
    as_json: JsonOption = False,
    output: OutputOption = "table",
) -> None:
    """Maintenance pauses (active ones unless --all)."""
    shape = parse(output, as_json=as_json)
    try:
        with client(url, token_file) as api:
            body = api.get("/api/maintenance", params={"all": include_ended})
    except ApiError as exc:
        die(exc)
    if emit(body, shape):
        return
    for w in body["items"]:
        scope = (
            f"node {w['node_id']}" if w["node_id"] else ",".join(f"{k}={v}" for k, v in w["selector"].items())
        )
        state = "active" if w["active"] else "ended "
        say(f"{w['id']:>5}  {state}  until {w['ends_at']}  {clean_line(scope)}: {clean_line(w['reason'])}")
    say(f"{len(body['items'])} pause(s)")


@maintenance_app.command("start")
def maintenance_start(
    reason: Annotated[str, typer.Option("--reason", help="Why (shown everywhere the pause is).")],
    node: Annotated[int | None, typer.Option("--node", help="Pause this node.")] = None,
    selector: Annotated[list[str] | None, typer.Option("--selector", help="key=value (repeatable).")] = None,
    minutes: Annotated[int, typer.Option("--minutes", min=1, max=90 * 1440, help="How long.")] = 60,
    url: UrlOption = None,
    token_file: TokenFile = None,
    as_json: JsonOption = False,
    output: OutputOption = "table",
) -> None:
    """Start a pause: checks go on but have no consequences, no alerts, no remediation."""
    shape = parse(output, as_json=as_json)
    body: dict[str, Any] = {"reason": reason, "duration_seconds": minutes * 60}
    if node is not None:
        body["node_id"] = node
    if selector:
        body["selector"] = key_values(selector, "--selector")
    try:
        with client(url, token_file) as api:
            window = api.post("/api/maintenance", json=body)
    except ApiError as exc:
        die(exc)
    if not emit(window, shape):
        say(f"maintenance {window['id']} until {window['ends_at']}")


@maintenance_app.command("end")
def maintenance_end(
    window_id: Annotated[int, typer.Argument(help="Maintenance id.")],
    url: UrlOption = None,
    token_file: TokenFile = None,
) -> None:
    """End a pause now (its record stays)."""
    try:
        with client(url, token_file) as api:
            api.request("DELETE", f"/api/maintenance/{window_id}")
    except ApiError as exc:
        die(exc)
    say(f"maintenance {window_id} ended")
