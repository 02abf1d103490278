"""``nodewright nodes ...``: node commands over the HTTP API.

Every command talks to a running ``serve`` (``--url``, the active context, or http://127.0.0.1:8400)
with an API token, so it works from any machine and obeys the same roles, gates and audit as the API.
"""

from __future__ import annotations

import datetime as dt
import json
import re
import time
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer

from nodewright.cli.client import ApiClient, ApiError
from nodewright.cli.errors import die, fail, say
from nodewright.cli.jobs import detached, print_events, unless_succeeded
from nodewright.cli.options import (
    JsonOption,
    NodeArg,
    TokenFile,
    UrlOption,
    WaitOption,
    client,
    filters,
    key_values,
    resolve,
)
from nodewright.cli.output import OutputOption, emit, parse, table
from nodewright.cli.times import absolute, relative
from nodewright.nodes.states import NodeStatus
from nodewright.security.text import clean_line, for_terminal

nodes_app = typer.Typer(
    help="Nodes: create from a provider, list, show, release, retry, snapshot, ssh.", no_args_is_help=True
)
IDEMPOTENCY_KEY = re.compile(r"[\x21-\x7e]{1,128}")  # the API's rule
GONE = {"released", "lost"}  # no server behind the node: its old address is not shown as live
SETTLED = {"ready", "degraded", "failed", "released", "lost"}
# jobs.states.TERMINAL (not imported: the job engine's package would load the database layer)
JOB_FINISHED = {"succeeded", "failed", "canceled"}
MAX_KEY_FILE = 16384
MAX_NODE_JOBS = 10_000  # --all stops there: a server whose total never ends is not paged forever
DEFAULT_LOCATION, DEFAULT_SERVER_TYPE, DEFAULT_IMAGE = "fsn1", "cx23", "ubuntu-24.04"
DEFAULT_PROFILE = "baseline"
# What a node is made of, as `nodes create` and `smoke` both take it.
ProviderRef = Annotated[
    str | None,
    typer.Option(
        "--provider",
        help="Provider connection id or name [default: the only one there is].",
        show_default=False,
    ),
]
LocationOption = Annotated[
    str, typer.Option("--location", help="Location (`providers catalog --show locations`).")
]
ServerTypeOption = Annotated[str, typer.Option("--type", help="Server type (`providers catalog`).")]
ImageOption = Annotated[str, typer.Option("--image", help="Image (`providers catalog --show images`).")]
ProfileOption = Annotated[str, typer.Option("--profile", help="Provisioning profile.")]
LIVE_STATUSES = [s.value for s in NodeStatus if s is not NodeStatus.released]


def health_word(node: dict[str, Any]) -> str:
    health = node.get("health") or {}
    word = str(health.get("health") or "-")
    return word + (" (paused)" if health.get("maintenance") else "")


def describe(node: dict[str, Any]) -> str:
    name, status = clean_line(str(node["name"])), clean_line(str(node["status"]))
    line = f"node {clean_line(str(node['id']))} {name}: {status}"
    if node.get("stage") and node["status"] not in ("ready", "released"):
        line += f" (stage {clean_line(str(node['stage']))})"
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
    api: ApiClient,
    node_id: int,
    *,
    until: set[str],
    timeout: float,
    to_stderr: bool = False,
    known: tuple[str, str | None] | None = None,
    job_id: int | None = None,
    report: Callable[[dict[str, Any]], None] | None = None,
    interval: float = 1.0,
) -> dict[str, Any]:
    """Print each status/stage change until the node reaches one of ``until`` (on stderr when stdout
    carries a machine format). ``known``: the state the caller already reported (a release does not
    print the ``ready`` it started from). ``job_id``: and until that job has finished (a failed
    node stays ``failed`` until its release job starts: ``failed`` alone would end the wait early).
    ``report``: shows a change instead of the line printed here (``nodewright demo`` tells its own
    story)."""
    deadline = time.monotonic() + timeout
    seen = known
    while True:
        node: dict[str, Any] = api.get(f"/api/nodes/{node_id}")
        now = (node["status"], node.get("stage"))
        if now != seen:
            if report is not None:
                report(node)
            else:
                say(f"{dt.datetime.now():%H:%M:%S} {describe(node)}", err=to_stderr)
            seen = now
        if node["status"] in until and (job_id is None or _job_finished(api, job_id)):
            if job_id is not None:  # the job's last write may have come after the read above
                node = api.get(f"/api/nodes/{node_id}")
                if (node["status"], node.get("stage")) != seen:
                    if report is not None:
                        report(node)
                    else:
                        say(f"{dt.datetime.now():%H:%M:%S} {describe(node)}", err=to_stderr)
            return node
        if time.monotonic() > deadline:
            raise ApiError(
                f"gave up waiting after {timeout:g} s; the job goes on "
                f"(see `nodewright nodes show {node_id}`)",
                code="wait_timeout",
            )
        time.sleep(interval)


def _job_finished(api: ApiClient, job_id: int) -> bool:
    return api.get(f"/api/jobs/{job_id}")["state"] in JOB_FINISHED


def the_provider(api: ApiClient, ref: str | None) -> int:
    """The connection named by ``ref`` (id or name), or the only one there is."""
    from nodewright.cli.providers import provider_id

    if ref is not None:
        return provider_id(api, ref)
    rows = api.get("/api/providers")
    if len(rows) == 1:
        return int(rows[0]["id"])
    names = ", ".join(f"{r['id']} {r['name']}" for r in rows) or "none: `nodewright providers add`"
    raise ApiError(f"--provider is needed: which connection? ({clean_line(names)})", usage=True)


class KeyFileError(ValueError):
    """A file that is not one OpenSSH public key line; the message says what it is instead."""


def read_public_key(path: Path) -> str:
    """An OpenSSH public key line from ``path``, checked here: a private key (or anything else) is
    refused (``KeyFileError``) before a byte of it leaves this machine, and only ``type base64
    [comment]`` is returned."""
    from nodewright.provisioning.target import InvalidHostKey, parse_public_key

    try:
        with path.open("rb") as handle:  # bounded: /dev/zero or a FIFO must not be read to the end
            raw = handle.read(MAX_KEY_FILE + 1)
    except OSError as exc:
        raise KeyFileError(f"cannot read {path}: {exc.strerror}") from None
    if len(raw) > MAX_KEY_FILE:
        raise KeyFileError(f"{path} is too large to be an SSH public key")
    text = raw.decode("utf-8", errors="replace").strip()
    if "PRIVATE KEY" in text or "PuTTY-User-Key-File" in text:
        raise KeyFileError(f"{path} is a private key: pass the public one ({path}.pub); nothing was sent")
    if any(ord(c) < 32 or ord(c) == 127 for c in text):
        raise KeyFileError(
            f"{path} must hold one public key line (no control characters, no second line); nothing was sent"
        )
    try:
        key_type, _blob = parse_public_key(text)
    except InvalidHostKey as exc:
        raise KeyFileError(f"{path} is not an OpenSSH public key ({exc}); nothing was sent") from None
    parts = text.split()
    comment = " ".join(parts[2:])
    if len(comment) > 100 or re.search(r"[A-Za-z0-9+/=]{40,}", comment):
        comment = ""  # not a label (user@host) but data: not sent
    return " ".join([key_type, parts[1], *([comment] if comment else [])])


def public_key(path: Path) -> str:
    """:func:`read_public_key` for a command: a bad file ends it with the reason (exit 2)."""
    try:
        return read_public_key(path)
    except KeyFileError as exc:
        fail(str(exc))


def request_node(
    api: ApiClient,
    *,
    name: str,
    provider: str | None,
    location: str = DEFAULT_LOCATION,
    server_type: str = DEFAULT_SERVER_TYPE,
    image: str = DEFAULT_IMAGE,
    labels: dict[str, str] | None = None,
    profile: str = DEFAULT_PROFILE,
    keys: list[str] | None = None,
    headers: dict[str, str] | None = None,
) -> dict[str, Any]:
    """``POST /api/nodes`` (the node and its provisioning job, answered at once): the API's answer."""
    body: dict[str, Any] = {"name": name, "location": location, "server_type": server_type,
            "image": image, "labels": labels or {}, "profile": profile,
            "ssh_authorized_keys": keys or []}  # fmt: skip
    body["provider_id"] = the_provider(api, provider)
    answer: dict[str, Any] = api.post("/api/nodes", json=body, headers=headers or {})
    return answer


def _exit_for(node: dict[str, Any], wanted: str) -> None:
    if node["status"] != wanted:
        raise typer.Exit(1)


@nodes_app.command("list")
def nodes_list(
    url: UrlOption = None,
    token_file: TokenFile = None,
    status: Annotated[
        list[str] | None, typer.Option("--status", help="Only these statuses (repeatable).")
    ] = None,
    provider: Annotated[
        str | None, typer.Option("--provider", help="Only this connection (id or name).")
    ] = None,
    label: Annotated[str | None, typer.Option("--label", help="key or key=value")] = None,
    health: Annotated[
        list[str] | None,
        typer.Option("--health", help="Only this watch health: passing, failing, degraded, paused, unknown."),
    ] = None,
    show_all: Annotated[bool, typer.Option("--all", "-a", help="Released nodes too.")] = False,
    as_json: JsonOption = False,
    output: OutputOption = "table",
) -> None:
    """List nodes, newest first, with their watch health (released ones with --all)."""
    from nodewright.cli.providers import provider_id

    shape = parse(output, as_json=as_json)
    params: dict[str, Any] = {"limit": 500}
    given = filters({"status": status, "provider": provider, "label": label, "health": health})
    if health:
        params["health"] = health
    if "label" in given:
        params["label"] = label
    # Released nodes are left out by the server (a list of many released nodes must not hide the
    # live ones behind the page limit), unless --all or --status asks for them.
    params["status"] = status or ([] if show_all else LIVE_STATUSES)
    try:
        with client(url, token_file) as api:
            if provider is not None:
                params["provider_id"] = provider_id(api, provider)
            page = api.get("/api/nodes", params=params)
            hidden = 0
            if not status and not show_all:
                counted = api.get("/api/nodes", params={**params, "status": ["released"], "limit": 1})
                hidden = int(counted["total"])
    except ApiError as exc:
        die(exc)
    items = page["items"]
    if emit(page, shape):
        return
    if not items:
        say("no nodes" + (f" ({hidden} released: --all)" if hidden else "") +
            ": `nodewright nodes create --help` makes one")  # fmt: skip
        return
    rows = [[str(n["id"]), n["name"], n["status"], health_word(n), live_address(n),
             f"{n['location']}/{n['server_type']}", money(n), relative(n.get("created_at"))]
            for n in items]  # fmt: skip
    table(["ID", "NAME", "STATUS", "HEALTH", "ADDRESS", "WHERE", "EUR/MONTH", "AGE"], rows, colour=(2, 3))
    total = sum(float((n.get("price") or {}).get("monthly_gross") or 0) for n in items)
    say(
        f"{page['total']} node(s), {total:.2f} per month"
        + (f"; {hidden} released not shown (--all)" if hidden else "")
    )


def live_address(node: dict[str, Any]) -> str:
    """The address to show in a list: none for a node whose server is gone (released or lost)."""
    if node.get("status") in GONE:
        return "-"
    return str((node.get("ssh") or {}).get("address") or "-")


def money(node: dict[str, Any]) -> str:
    """The node's monthly gross price with two decimals, as the provider bills it."""
    price = (node.get("price") or {}).get("monthly_gross")
    try:
        return f"{float(price):.2f}" if price else "-"
    except (TypeError, ValueError):
        return "-"


@nodes_app.command("create")
def nodes_create(
    name: Annotated[str, typer.Option("--name", help="Node name (also the server's name).")],
    provider: ProviderRef = None,
    location: LocationOption = DEFAULT_LOCATION,
    server_type: ServerTypeOption = DEFAULT_SERVER_TYPE,
    image: ImageOption = DEFAULT_IMAGE,
    label: Annotated[list[str] | None, typer.Option("--label", help="key=value, repeatable")] = None,
    profile: ProfileOption = DEFAULT_PROFILE,
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
    keys = [public_key(path) for path in ssh_key or []]
    if idempotency_key is not None and not IDEMPOTENCY_KEY.fullmatch(idempotency_key):
        # Checked here too: a character outside ASCII cannot go into a header at all.
        say("error: --idempotency-key must be 1-128 printable ASCII characters, no spaces", err=True)
        raise typer.Exit(2)
    headers = {"Idempotency-Key": idempotency_key} if idempotency_key else {}
    try:
        with client(url, token_file) as api:
            created = request_node(api, name=name, provider=provider, location=location,
                                   server_type=server_type, image=image, labels=labels, profile=profile,
                                   keys=keys, headers=headers)  # fmt: skip
            if not wait and emit(created, shape):
                return
            node = created["node"]
            machine = shape.kind != "table"
            say(f"node {node['id']} {node['name']} accepted; job {created['job']['id']}", err=machine)
            if wait:
                final = follow(api, node["id"], until=SETTLED, timeout=timeout, to_stderr=machine)
                if not emit(final, shape) and final["status"] == "ready":
                    address = (final.get("ssh") or {}).get("address", "-")
                    say(f"node {final['name']} is ready at {address}: nodewright nodes ssh {final['name']}")
                _exit_for(final, "ready")
    except ApiError as exc:
        die(exc)
    except KeyboardInterrupt:
        raise detached(f"nodewright nodes show {name}") from None


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
    if node.get("ssh") and node["status"] != "released":
        say(f"  host key {node['ssh']['host_key_fingerprint']}")
        say(f"  ssh: nodewright nodes ssh {node['name']}   (or: {node['ssh']['command']})")
    if node["price"]["monthly_gross"]:
        say(f"  price {money(node)} {node['price']['currency']}/month (gross)")
    say(f"  created {absolute(node.get('created_at'))} ({relative(node.get('created_at'))})")


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
            before = api.get(f"/api/nodes/{node_id}")
            answer = api.request("DELETE", f"/api/nodes/{node_id}", params={"keep_server": keep_server})
            say(f"node {node_id} {before['name']} releasing; job {answer['job']['id']}")
            if wait:
                known = (before["status"], before.get("stage"))
                final = follow(api, node_id, until={"released", "failed"}, timeout=timeout, known=known,
                               job_id=int(answer["job"]["id"]))  # fmt: skip
                _exit_for(final, "released")
    except ApiError as exc:
        die(exc)
    except KeyboardInterrupt:
        raise detached(f"nodewright nodes show {node}") from None


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
                _exit_for(
                    follow(api, node_id, until=SETTLED, timeout=timeout, known=("failed", None)), "ready"
                )
    except ApiError as exc:
        die(exc)
    except KeyboardInterrupt:
        raise detached(f"nodewright nodes show {node}") from None


@nodes_app.command("snapshot")
def nodes_snapshot(
    node: NodeArg,
    description: Annotated[
        str | None, typer.Option(help="The image's description [default: the node's name and id].")
    ] = None,
    wait: WaitOption = False,
    url: UrlOption = None,
    token_file: TokenFile = None,
) -> None:
    """Make an image of a ready node's server (a provider snapshot); create nodes from it with
    --image IMAGE_ID."""
    if description is not None and (not description.strip() or len(description) > 200):
        fail("--description must be 1 to 200 characters")
    job_id: int | None = None
    try:
        with client(url, token_file) as api:
            node_id = resolve(api, node)
            body = {"description": description} if description is not None else None
            answer = api.post(f"/api/nodes/{node_id}/snapshot", json=body)
            job_id = int(answer["job"]["id"])
            say(f"node {node_id} snapshot; job {job_id}")
            if wait:
                unless_succeeded(job_id, print_events(api, job_id, follow=True))
                result = api.get(f"/api/jobs/{job_id}").get("result") or {}
                say(f"image {clean_line(str(result.get('image_id')))}: create nodes from it with "
                    f"--image {clean_line(str(result.get('image_id')))}")  # fmt: skip
    except ApiError as exc:
        die(exc)
    except KeyboardInterrupt:
        raise detached(
            f"nodewright jobs logs {job_id} --follow" if job_id else "nodewright jobs list"
        ) from None


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


def _node_jobs(api: ApiClient, node_id: int) -> list[dict[str, Any]]:
    """Every job of the node, oldest first (the API lists newest first, 200 a page)."""
    jobs: list[dict[str, Any]] = []
    while True:
        page = api.get("/api/jobs", params={"resource_key": f"node:{node_id}", "limit": 200,
                                            "offset": len(jobs)})  # fmt: skip
        jobs.extend(page["items"])
        if not page["items"] or len(jobs) >= min(int(page["total"]), MAX_NODE_JOBS):
            return jobs[::-1]


def _job_id(value: Any) -> int:
    """A job id from the server's answer, checked before it is printed or put in a path: an integer
    (a string could carry a line of its own)."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ApiError("the server's answer has no usable job id; is --url a nodewright server?",
                       status=200, foreign=True)  # fmt: skip
    return value


@nodes_app.command("logs")
def nodes_logs(
    node: NodeArg,
    follow_: Annotated[
        bool, typer.Option("--follow", "-f", help="Keep printing until the job is done.")
    ] = False,
    every: Annotated[
        bool, typer.Option("--all", help="Every job of the node (provision, checks, release), oldest first.")
    ] = False,
    url: UrlOption = None,
    token_file: TokenFile = None,
) -> None:
    """The log of the node's latest job (acquire, provision, verify or release); --follow streams it
    live (Ctrl-C detaches, the job goes on); --all prints the logs of all its jobs."""
    try:
        with client(url, token_file) as api:
            node_id = resolve(api, node)
            jobs = _node_jobs(api, node_id) if every else []
            answered = api.get(f"/api/nodes/{node_id}")["job_id"]
            if answered is None:
                if not jobs:
                    fail(f"node {node_id} has no job yet", code=3)
                answered = jobs[-1]["id"]
            latest = _job_id(answered)
            for job in jobs:
                if (job_id := _job_id(job["id"])) != latest:
                    say(f"== job {job_id} {clean_line(str(job['kind']))}: {clean_line(str(job['state']))}")
                    print_events(api, job_id, follow=False)
            if every:
                say(f"== job {latest} (the node's latest)")
            page = print_events(api, latest, follow=follow_)
    except ApiError as exc:
        die(exc)
    except KeyboardInterrupt:
        raise detached(f"nodewright nodes logs {node} --follow") from None
    if follow_:
        unless_succeeded(latest, page)
