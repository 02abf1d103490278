"""``nodewright audit``: the audit log over the HTTP API (admin token), newest first, with filters."""

from __future__ import annotations

import json
from typing import Annotated, Any

import typer

from nodewright.cli.client import ApiError
from nodewright.cli.errors import die, say
from nodewright.cli.options import JsonOption, TokenFile, UrlOption, client, filters
from nodewright.cli.output import OutputOption, emit, parse, table
from nodewright.cli.times import absolute


def audit_command(
    action: Annotated[
        str | None, typer.Option("--action", help="An action (node.create) or a kind ending in '.' (node.).")
    ] = None,
    actor: Annotated[
        str | None, typer.Option("--actor", help="Who, e.g. user:admin or system:reconcile.")
    ] = None,
    target: Annotated[
        str | None, typer.Option("--target", help="A target (node:12) or a prefix ending in ':' (node:).")
    ] = None,
    outcome: Annotated[str | None, typer.Option("--outcome", help="ok, denied, failed ...")] = None,
    since: Annotated[str | None, typer.Option("--since", help="From this time on (ISO 8601, UTC).")] = None,
    limit: Annotated[int, typer.Option("--limit", min=1, max=500, help="How many events.")] = 50,
    before: Annotated[
        int | None, typer.Option("--before", min=1, help="Older than this event id (paging).")
    ] = None,
    url: UrlOption = None,
    token_file: TokenFile = None,
    as_json: JsonOption = False,
    output: OutputOption = "table",
) -> None:
    """The audit log, newest first: who did what to what, and how it ended."""
    shape = parse(output, as_json=as_json)
    params: dict[str, Any] = {"limit": limit, **filters(
        {"action": action, "actor": actor, "target": target, "outcome": outcome, "since": since}
    )}  # fmt: skip
    if before is not None:
        params["before_id"] = before
    try:
        with client(url, token_file) as api:
            page = api.get("/api/audit", params=params)
    except ApiError as exc:
        die(exc)
    if emit(page, shape):
        return
    rows = [[str(e["id"]), absolute(e["at"]), e["actor"], e["action"], e["target"], e["outcome"], _detail(e)]
            for e in page["items"]]  # fmt: skip
    table(["ID", "AT", "ACTOR", "ACTION", "TARGET", "OUTCOME", "DETAIL"], rows, colour=(5,))
    if page.get("next_before_id"):
        say(f"more: --before {page['next_before_id']}")


def _detail(event: dict[str, Any]) -> str:
    repeated = f"x{event['count']} " if event.get("count", 1) > 1 else ""
    return repeated + json.dumps(event.get("detail") or {}, sort_keys=True)
