"""``nodewright nodes ...``: node commands over the HTTP API.

Every command talks to a running ``serve`` (``--url``, the active context, or http://127.0.0.1:8400)
with an API token, so it works from any machine and obeys the same roles, gates and audit as the API.
"""

from __future__ import annotations

import datetime as dt
import json
import re
import time
from pathlib import Path
from typing import Annotated, Any

import typer

from nodewright.cli.client import ApiClient, ApiError
from nodewright.cli.errors import die, say
from nodewright.cli.options import (
    JsonOption,
    NodeArg,
    TokenFile,
    UrlOption,
    WaitOption,
    client,
    key_values,
    resolve,
)
from nodewright.cli.output import OutputOption, emit, parse
from nodewright.security.text import clean_line, for_terminal

nodes_app = typer.Typer(
    help="Nodes: create from a provider, list, show, release, retry, ssh.", no_args_is_help=True
)
IDEMPOTENCY_KEY = re.compile(r"[\x21-\x7e]{1,128}")  # the API's rule
SETTLED = {"ready", "degraded", "failed", "released", "lost"}


def health_word(node: dict[str, Any]) -> str:
    health = node.get("health") or {}
    word = str(health.get("health") or "-")
    return word + (" (paused)" if health.get("maintenance") else "")


def describe(node: dict[str, Any]) -> str:
    line = f"node {node['id']} {node['name']}: {node['status']}"
    if node.get("stage") and node["status"] not in ("ready", "released"):
        line += f" (stage {node['stage']})"
    error = node.get("error")
    if error:
        # Node and provider text: continuation lines go under a margin, never at column 0.
        line += (
            f"\n  {clean_line(str(error['code']))}: {for_terminal(str(error.get('message') or ''), '    ')}"
        )
        if error.get("hint"):
            line += f"\n  hint: {for_terminal(str(error['hint']), '    ')}"
    return line


def follow(
    api: ApiClient, node_id: int, *, until: set[str], timeout: float, to_stderr: bool = False
) -> dict[str, Any]:
    """Print each status/stage change until the node reaches one of ``until`` (on stderr when stdout
    carries a machine format)."""
    deadline = time.monotonic() + timeout
    seen: tuple[str, str | None] | None = None
    while True:
        node: dict[str, Any] = api.get(f"/api/nodes/{node_id}")
        now = (node["status"], node.get("stage"))
        if now != seen:
            say(f"{dt.datetime.now():%H:%M:%S} {describe(node)}", err=to_stderr)
            seen = now
        if node["status"] in until:
            return node
        if time.monotonic() > deadline:
            raise ApiError(
                f"gave up waiting after {timeout:g} s; the job goes on "
                f"(see `nodewright nodes show {node_id}`)",
                code="wait_timeout",
            )
        time.sleep(1.0)


def _exit_for(node: dict[str, Any], wanted: str) -> None:
    if node["status"] != wanted:
        raise typer.Exit(1)


@nodes_app.command("list")
def nodes_list(
    url: UrlOption = None,
    token_file: TokenFile = None,
    status: Annotated[list[str] | None, typer.Option("--status", help="Only these statuses.")] = None,
    provider: Annotated[int | None, typer.Option("--provider", help="Only this provider connection.")] = None,
    label: Annotated[str | None, typer.Option("--label", help="key or key=value")] = None,
    health: Annotated[
        list[str] | None,
        typer.Option("--health", help="Only this watch health: passing, failing, degraded, paused, unknown."),
    ] = None,
    as_json: JsonOption = False,
    output: OutputOption = "table",
) -> None:
    """List nodes, newest first, with their watch health."""
    shape = parse(output, as_json=as_json)
    params: dict[str, Any] = {"limit": 500}
    if health:
        params["health"] = health
    if status:
        params["status"] = status
    if provider is not None:
        params["provider_id"] = provider
    if label:
        params["label"] = label
    try:
        with client(url, token_file) as api:
            page = api.get("/api/nodes", params=params)
    except ApiError as exc:
        die(exc)
    if emit(page, shape):
        return
    for node in page["items"]:
        address = node["ssh"]["address"] if node.get("ssh") else "-"
        say(f"{node['id']:>5}  {node['name']:<24} {node['status']:<12} {health_word(node):<16} {address:<16} "
                   f"{node['location']}/{node['server_type']}/{node['image']}")  # fmt: skip
    say(f"{page['total']} node(s)")


@nodes_app.command("create")
def nodes_create(
    provider: Annotated[int, typer.Option("--provider", help="Provider connection id.")],
    name: Annotated[str, typer.Option("--name", help="Node name (also the server's name).")],
    location: Annotated[str, typer.Option("--location", help="e.g. fsn1")],
    server_type: Annotated[str, typer.Option("--type", help="Server type, e.g. cx22")],
    image: Annotated[str, typer.Option("--image", help="e.g. ubuntu-24.04")],
    label: Annotated[list[str] | None, typer.Option("--label", help="key=value, repeatable")] = None,
    profile: Annotated[str, typer.Option("--profile", help="Provisioning profile.")] = "baseline",
    ssh_key: Annotated[
        list[Path] | None, typer.Option("--ssh-key", help="A public key file for the admin user, repeatable.")
    ] = None,
    idempotency_key: Annotated[
        str | None, typer.Option("--idempotency-key", help="Retrying with the same key gives the same node.")
    ] = None,
    wait: WaitOption = False,
    timeout: Annotated[float, typer.Option(help="Seconds --wait waits.")] = 1800.0,
    url: UrlOption = None,
    token_file: TokenFile = None,
    as_json: JsonOption = False,
    output: OutputOption = "table",
) -> None:
    """Create a node from a provider (answers at once with its job; --wait follows it to ready)."""
    shape = parse(output, as_json=as_json)
    labels = key_values(label or [], "--label")
    keys = []
    for path in ssh_key or []:
        try:
            keys.append(path.read_text().strip())
        except OSError as exc:
            say(f"error: cannot read {path}: {exc.strerror}", err=True)
            raise typer.Exit(2) from None
    body = {"provider_id": provider, "name": name, "location": location, "server_type": server_type,
            "image": image, "labels": labels, "profile": profile, "ssh_authorized_keys": keys}  # fmt: skip
    if idempotency_key is not None and not IDEMPOTENCY_KEY.fullmatch(idempotency_key):
        # Checked here too: a character outside ASCII cannot go into a header at all.
        say("error: --idempotency-key must be 1-128 printable ASCII characters, no spaces", err=True)
        raise typer.Exit(2)
    headers = {"Idempotency-Key": idempotency_key} if idempotency_key else {}
    try:
        with client(url, token_file) as api:
            created = api.post("/api/nodes", json=body, headers=headers)
            if not wait and emit(created, shape):
                return
            node = created["node"]
            machine = shape.kind != "table"
            say(f"node {node['id']} {node['name']} accepted; job {created['job']['id']}", err=machine)
            if wait:
                final = follow(api, node["id"], until=SETTLED, timeout=timeout, to_stderr=machine)
                emit(final, shape)
                _exit_for(final, "ready")
    except ApiError as exc:
        die(exc)


@nodes_app.command("show")
def nodes_show(
    node: NodeArg,
    url: UrlOption = None,
    token_file: TokenFile = None,
    as_json: JsonOption = False,
    output: OutputOption = "table",
) -> None:
    """A node's status, stage, SSH command, price and last error."""
    shape = parse(output, as_json=as_json)
    try:
        with client(url, token_file) as api:
            shown = api.get(f"/api/nodes/{resolve(api, node)}")
    except ApiError as exc:
        die(exc)
    if emit(shown, shape):
        return
    _describe_fully(shown)


def _describe_fully(node: dict[str, Any]) -> None:
    say(describe(node))
    say(f"  provider {node['provider_id']} {node['location']}/{node['server_type']}/{node['image']}, "
               f"profile {node['profile']}, job {node['job_id']}")  # fmt: skip
    if node["server"]["id"]:
        say(f"  server {node['server']['id']} {node['server']['name']} ({node['server']['status']})")
    if node.get("ssh"):
        say(f"  host key {node['ssh']['host_key_fingerprint']}\n  ssh: {node['ssh']['command']}")
    if node["price"]["monthly_gross"]:
        say(f"  price {node['price']['monthly_gross']} {node['price']['currency']}/month (gross)")


@nodes_app.command("delete")
def nodes_delete(
    node: NodeArg,
    keep_server: Annotated[bool, typer.Option("--keep-server", help="Detach: keep the server.")] = False,
    wait: WaitOption = False,
    timeout: Annotated[float, typer.Option(help="Seconds --wait waits.")] = 900.0,
    url: UrlOption = None,
    token_file: TokenFile = None,
) -> None:
    """Release a node: its server is deleted at the provider (unless --keep-server)."""
    try:
        with client(url, token_file) as api:
            node_id = resolve(api, node)
            answer = api.request("DELETE", f"/api/nodes/{node_id}", params={"keep_server": keep_server})
            say(f"node {node_id} releasing; job {answer['job']['id']}")
            if wait:
                _exit_for(follow(api, node_id, until={"released", "failed"}, timeout=timeout), "released")
    except ApiError as exc:
        die(exc)


@nodes_app.command("retry")
def nodes_retry(
    node: NodeArg,
    wait: WaitOption = False,
    timeout: Annotated[float, typer.Option(help="Seconds --wait waits.")] = 1800.0,
    url: UrlOption = None,
    token_file: TokenFile = None,
) -> None:
    """Retry a failed node from the stage that failed."""
    try:
        with client(url, token_file) as api:
            node_id = resolve(api, node)
            answer = api.post(f"/api/nodes/{node_id}/retry")
            say(f"node {node_id} retrying; job {answer['job']['id']}")
            if wait:
                _exit_for(follow(api, node_id, until=SETTLED, timeout=timeout), "ready")
    except ApiError as exc:
        die(exc)


@nodes_app.command("evidence")
def nodes_evidence(
    node: NodeArg,
    url: UrlOption = None,
    token_file: TokenFile = None,
) -> None:
    """The node's acquisition and provisioning evidence, as JSON."""
    try:
        with client(url, token_file) as api:
            node_id = resolve(api, node)
            say(json.dumps(api.get(f"/api/nodes/{node_id}/evidence"), indent=2))
    except ApiError as exc:
        die(exc)
