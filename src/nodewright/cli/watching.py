"""``nodewright nodes health`` and ``nodewright nodes brakes``: what watching sees, over the HTTP API."""

from __future__ import annotations

from typing import Annotated

import typer

from nodewright.cli.client import ApiError
from nodewright.cli.errors import die, say
from nodewright.cli.nodes import nodes_app
from nodewright.cli.options import JsonOption, NodeArg, TokenFile, UrlOption, client, resolve
from nodewright.cli.output import OutputOption, emit, parse
from nodewright.security.text import clean_line, for_terminal


@nodes_app.command("health")
def nodes_health(
    node: NodeArg,
    url: UrlOption = None,
    token_file: TokenFile = None,
    limit: Annotated[int, typer.Option("--limit", min=1, max=500, help="How many recent checks.")] = 20,
    as_json: JsonOption = False,
    output: OutputOption = "table",
) -> None:
    """A node's watch health: state, what failed since when, maintenance, recent checks."""
    shape = parse(output, as_json=as_json)
    try:
        with client(url, token_file) as api:
            node_id = resolve(api, node)
            body = api.get(f"/api/nodes/{node_id}/health", params={"limit": limit})
    except ApiError as exc:
        die(exc)
    if emit(body, shape):
        return
    health = body["health"]
    word = clean_line(str(health["health"]))
    say(f"node {node_id}: {word} (failures in a row {health['consecutive_failures']}, "
        f"passes in a row {health['consecutive_successes']})")  # fmt: skip
    for key in ("failing_since", "degraded_since", "last_check_at", "next_check_at"):
        if health.get(key):
            say(f"  {key.replace('_', ' ')}: {health[key]}")
    for failure in health.get("last_failure") or []:
        say(f"  failed: {clean_line(str(failure['name']))}: {for_terminal(str(failure['detail']), '    ')}")
    if health.get("maintenance"):
        window = health["maintenance"]
        say(f"  maintenance {window['id']} until {window['ends_at']}: {clean_line(window['reason'])}")
    for check in body["checks"]:
        mark = "ok  " if check["ok"] else "FAIL"
        say(f"  {check['at']}  {mark} {check['health']:<9}{' paused' if check['paused'] else ''}")
    steps = body.get("remediations") or []
    if steps:
        say("remediation (newest first):")
    for step in steps:
        job = f" job {step['job_id']}" if step.get("job_id") else ""
        say(f"  {step['id']:>5}  {step['action']:<11} {step['state']:<9}{job}  {clean_line(step['reason'])}")


@nodes_app.command("brakes")
def nodes_brakes(
    url: UrlOption = None,
    token_file: TokenFile = None,
    as_json: JsonOption = False,
    output: OutputOption = "table",
) -> None:
    """The fleet brake of each provider connection: while engaged, no automatic remediation."""
    shape = parse(output, as_json=as_json)
    try:
        with client(url, token_file) as api:
            body = api.get("/api/brakes")
    except ApiError as exc:
        die(exc)
    if emit(body, shape):
        return
    for row in body["items"]:
        state = "ENGAGED " if row["engaged"] else "released"
        say(f"connection {row['provider_id']:>4}  {state}  {row['degraded']}/{row['watched']} degraded  "
            f"{clean_line(row['reason'])}")  # fmt: skip
    if not any(row["engaged"] for row in body["items"]):
        say("no brake engaged: automatic remediation runs where profiles turn it on")
