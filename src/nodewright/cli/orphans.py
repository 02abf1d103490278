"""``nodewright orphans ...``: servers with this installation's labels that no node holds."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from nodewright.cli.client import ApiError
from nodewright.cli.errors import die, say
from nodewright.cli.options import JsonOption, TokenFile, UrlOption, client, filters
from nodewright.cli.output import OutputOption, emit, parse, table
from nodewright.cli.providers import provider_id
from nodewright.cli.times import relative
from nodewright.security.text import clean_line

orphans_app = typer.Typer(
    help="Orphaned servers: found at the provider with nodewright's labels, held by no node.",
    no_args_is_help=True,
)
OrphanArg = Annotated[int, typer.Argument(help="Orphan id.", min=1)]


@orphans_app.command("list")
def orphans_list(
    provider: Annotated[
        str | None, typer.Option("--provider", help="Only this connection (id or name).")
    ] = None,
    url: UrlOption = None,
    token_file: TokenFile = None,
    as_json: JsonOption = False,
    output: OutputOption = "table",
) -> None:
    """Orphaned servers (the reconcile job finds them)."""
    shape = parse(output, as_json=as_json)
    filters({"provider": provider})
    try:
        with client(url, token_file) as api:
            params = {"provider_id": provider_id(api, provider)} if provider else {}
            rows = api.get("/api/orphans", params=params)
    except ApiError as exc:
        die(exc)
    if emit(rows, shape):
        return
    if not rows:
        say("no orphaned servers")
        return
    header = ["ID", "PROVIDER", "SERVER", "NAME", "STATUS", "IPV4", "NODE", "FIRST SEEN", "LAST SEEN"]
    table(header, [_row(o) for o in rows])


def _row(o: dict[str, Any]) -> list[str]:
    return [str(o["id"]), str(o["provider_id"]), str(o["server_id"]), str(o["name"]), str(o["status"]),
            str(o.get("ipv4") or "-"), str(o.get("node_id") or "-"), relative(o.get("first_seen_at")),
            relative(o.get("last_seen_at"))]  # fmt: skip


def _act(orphan: int, action: str, url: str | None, token_file: Any) -> dict[str, Any]:
    try:
        with client(url, token_file) as api:
            answer: dict[str, Any] = api.post(f"/api/orphans/{orphan}/{action}")
            return answer
    except ApiError as exc:
        die(exc)


@orphans_app.command("adopt")
def orphans_adopt(orphan: OrphanArg, url: UrlOption = None, token_file: TokenFile = None) -> None:
    """Give the server back to the node its label names; provisioning resumes at connect."""
    answer = _act(orphan, "adopt", url, token_file)
    node, job = answer["node"], answer["job"]
    say(f"orphan {orphan} adopted by node {node['id']} {clean_line(str(node['name']))}; job {job['id']}")


@orphans_app.command("delete")
def orphans_delete(
    orphan: OrphanArg,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
    url: UrlOption = None,
    token_file: TokenFile = None,
) -> None:
    """Delete the orphaned server at the provider (a job)."""
    import sys

    if not yes and sys.stdin.isatty():
        typer.confirm(f"Delete orphaned server {orphan} at the provider?", abort=True, err=True)
    answer = _act(orphan, "delete", url, token_file)
    say(f"orphan {orphan}: deleting at the provider; job {answer['id']}")
