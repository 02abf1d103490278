"""``nodewright nodes ...`` and ``nodewright smoke``: node commands over the HTTP API.

Every command talks to a running ``serve`` (``--url``, default http://127.0.0.1:8400) with an API
token, so it works from any machine and obeys the same roles, gates and audit as the API.
"""

from __future__ import annotations

import datetime as dt
import json
import re
import time
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer

from nodewright.api_client import DEFAULT_URL, ApiClient, ApiError, load_token
from nodewright.cli_output import OutputOption, emit, parse
from nodewright.nodes.names import NAME_PATTERN
from nodewright.security.text import clean, clean_line, for_terminal

nodes_app = typer.Typer(
    help="Nodes: create from a provider, list, show, release, retry.", no_args_is_help=True
)

UrlOption = Annotated[str, typer.Option("--url", envvar="NODEWRIGHT_URL", help="The nodewright server.")]
TokenFile = Annotated[
    Path | None, typer.Option("--token-file", help="A file holding the API token (else NODEWRIGHT_TOKEN).")
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print the API's JSON answer.")]
WaitOption = Annotated[bool, typer.Option("--wait", help="Follow the node until its job is done.")]
IDEMPOTENCY_KEY = re.compile(r"[\x21-\x7e]{1,128}")  # the API's rule
NODE_NAME = re.compile(NAME_PATTERN)
SETTLED = {"ready", "degraded", "failed", "released", "lost"}
EXIT_FAILED, EXIT_USAGE, EXIT_NOT_FOUND, EXIT_REFUSED, EXIT_UNREACHABLE = 1, 2, 3, 4, 5


def say(text: str, *, err: bool = False) -> None:
    """Every line this module writes goes through here: whatever the server sent, no control
    character but newline and tab reaches the terminal raw (``security.text``)."""
    typer.echo(clean(text), err=err)


def client(url: str, token_file: Path | None) -> ApiClient:
    return ApiClient(url, load_token(token_file))


def die(exc: ApiError) -> NoReturn:
    """Print the problem (its taxonomy code, message and hint) and exit with the code that says
    what kind of failure it was (``exit_code``; documented in docs/cli.md)."""
    say(f"error [{exc.code}]: {exc.message}" if exc.code else f"error: {exc.message}", err=True)
    raise typer.Exit(exit_code(exc))


def exit_code(exc: ApiError) -> int:
    """1 failed, 2 usage (the command or its input is wrong), 3 not found, 4 refused (authentication,
    permission, a conflict, a closed gate, a rate limit), 5 the server is unreachable or unavailable,
    or what answered is not nodewright (a proxy's page, a redirect, no JSON)."""
    if exc.usage:
        return EXIT_USAGE
    if exc.code == "wait_timeout":  # --wait gave up; the job goes on
        return EXIT_FAILED
    if exc.status is None:
        return EXIT_UNREACHABLE
    if exc.foreign:  # not nodewright's answer (a proxy, a wrong --url): nodewright was not reached
        return EXIT_UNREACHABLE
    if exc.status == 404:
        return EXIT_NOT_FOUND
    if exc.status in (401, 403, 409, 423, 429) or exc.code == "feature_disabled":
        return EXIT_REFUSED
    if 400 <= exc.status < 500:
        return EXIT_USAGE
    if exc.status in (502, 503, 504):
        return EXIT_UNREACHABLE
    return EXIT_FAILED


NodeArg = Annotated[str, typer.Argument(help="Node id or name.", metavar="NODE")]


def resolve(api: ApiClient, ref: str) -> int:
    """A node's id from what the operator typed: an id, or a name (the live node of that name, else
    the newest released one: names are reused after release). Unknown: not found (exit 3)."""
    text = ref.strip()
    if text.isdigit() and text.isascii():
        return int(text)
    if not NODE_NAME.fullmatch(text):
        raise ApiError(f"{clean_line(text)!r} is neither a node id nor a node name", usage=True)
    items = api.get("/api/nodes", params={"name": text, "limit": 500})["items"]
    live = [n for n in items if n["status"] != "released"]
    chosen = live or items
    if not chosen:
        raise ApiError(f"no node named {text!r}", status=404, code="not_found")
    return int(chosen[0]["id"])


def key_values(items: list[str], option: str) -> dict[str, str]:
    """``key=value`` options as a dict. An item without ``=`` is refused: read as the empty value, a
    typo (``--selector rack``) would silently mean something else (every node labelled ``rack=""``)."""
    pairs: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            say(f"error: {option} {item!r} must be key=value", err=True)
            raise typer.Exit(2)
        pairs[key] = value
    return pairs


def health_word(node: dict[str, Any]) -> str:
    health = node.get("health") or {}
    word = str(health.get("health") or "-")
    return word + (" (paused)" if health.get("maintenance") else "")


@nodes_app.command("health")
def nodes_health(
    node: NodeArg,
    url: UrlOption = DEFAULT_URL,
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
    say(f"node {node_id}: {health['health']} (failures in a row {health['consecutive_failures']}, "
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
    url: UrlOption = DEFAULT_URL,
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


maintenance_app = typer.Typer(help="Pause watching's consequences for a node or a label selector.")


@maintenance_app.command("list")
def maintenance_list(
    url: UrlOption = DEFAULT_URL,
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
    url: UrlOption = DEFAULT_URL,
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
    url: UrlOption = DEFAULT_URL,
    token_file: TokenFile = None,
) -> None:
    """End a pause now (its record stays)."""
    try:
        with client(url, token_file) as api:
            api.request("DELETE", f"/api/maintenance/{window_id}")
    except ApiError as exc:
        die(exc)
    say(f"maintenance {window_id} ended")


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
    url: UrlOption = DEFAULT_URL,
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
    url: UrlOption = DEFAULT_URL,
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
    url: UrlOption = DEFAULT_URL,
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
    url: UrlOption = DEFAULT_URL,
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
    url: UrlOption = DEFAULT_URL,
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
    url: UrlOption = DEFAULT_URL,
    token_file: TokenFile = None,
) -> None:
    """The node's acquisition and provisioning evidence, as JSON."""
    try:
        with client(url, token_file) as api:
            node_id = resolve(api, node)
            say(json.dumps(api.get(f"/api/nodes/{node_id}/evidence"), indent=2))
    except ApiError as exc:
        die(exc)


def smoke_command(
    provider: Annotated[int, typer.Option("--provider", help="Provider connection to acquire from.")],
    location: Annotated[str, typer.Option("--location")] = "fsn1",
    server_type: Annotated[str, typer.Option("--type")] = "cx22",
    image: Annotated[str, typer.Option("--image")] = "ubuntu-24.04",
    evidence_dir: Annotated[Path, typer.Option("--evidence-dir", help="Where the evidence is kept.")] = Path(
        "smoke-evidence"
    ),
    keep: Annotated[bool, typer.Option("--keep", help="Keep the node (default: release it).")] = False,
    timeout: Annotated[float, typer.Option(help="Seconds to wait for ready, then for release.")] = 1800.0,
    url: UrlOption = DEFAULT_URL,
    token_file: TokenFile = None,
) -> None:
    """The whole path on a provider-acquired node: create -> ready -> evidence -> release -> gone.

    Keeps everything it saw in --evidence-dir/<node name>/ (node, evidence, job logs, summary).
    Exits 0 only when the node became ready, passed its checks and (unless --keep) was released.
    """
    try:
        token = load_token(token_file)  # a usage error ends it before anything is made
    except ApiError as exc:
        die(exc)
    name = f"smoke-{dt.datetime.now(dt.UTC):%Y%m%d%H%M%S}"
    folder = evidence_dir / name
    folder.mkdir(parents=True, exist_ok=True)
    failure = EXIT_FAILED
    summary: dict[str, Any] = {
        "name": name,
        "provider_id": provider,
        "started_at": dt.datetime.now(dt.UTC).isoformat(),
    }
    ok = False
    try:
        with ApiClient(url, token) as api:
            body = {"provider_id": provider, "name": name, "location": location, "server_type": server_type,
                    "image": image, "labels": {"purpose": "smoke"}}  # fmt: skip
            created = api.post("/api/nodes", json=body, headers={"Idempotency-Key": name})
            node_id = created["node"]["id"]
            summary["node_id"], summary["provision_job"] = node_id, created["job"]["id"]
            started = time.monotonic()
            node = follow(api, node_id, until=SETTLED, timeout=timeout)
            summary["seconds_to_settle"] = round(time.monotonic() - started, 2)
            summary["status"] = node["status"]
            (folder / "node.json").write_text(json.dumps(node, indent=2))
            evidence = api.get(f"/api/nodes/{node_id}/evidence")
            (folder / "evidence.json").write_text(json.dumps(evidence, indent=2))
            events = api.get(f"/api/jobs/{created['job']['id']}/events", params={"limit": 1000})
            (folder / "provision-log.json").write_text(json.dumps(events, indent=2))
            checks = evidence["evidence"].get("checks") or []
            summary["checks"] = {c["name"]: c["ok"] for c in checks}
            ok = node["status"] == "ready" and bool(checks) and all(c["ok"] for c in checks)
            if not keep:
                released = api.request("DELETE", f"/api/nodes/{node_id}")
                summary["release_job"] = released["job"]["id"]
                final = follow(api, node_id, until={"released", "failed"}, timeout=timeout)
                (folder / "node-released.json").write_text(json.dumps(final, indent=2))
                log = api.get(f"/api/jobs/{released['job']['id']}/events", params={"limit": 1000})
                (folder / "release-log.json").write_text(json.dumps(log, indent=2))
                summary["released"] = final["status"] == "released"
                ok = ok and final["status"] == "released"
    except ApiError as exc:
        summary["error"] = exc.message
        summary["error_code"] = exc.code
        failure = exit_code(exc)
        say(f"error [{exc.code}]: {exc.message}" if exc.code else f"error: {exc.message}", err=True)
    summary["ok"] = ok
    (folder / "summary.json").write_text(json.dumps(summary, indent=2))
    say(f"smoke {'passed' if ok else 'FAILED'}; evidence in {folder}")
    if not ok:
        raise typer.Exit(failure)
