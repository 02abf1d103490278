"""``nodewright providers ...``: provider connections over the HTTP API.

A provider token is read from a prompt (no echo), from stdin when one is piped in, or from
``--provider-token-file``; never from an argument, which other users can read in ``ps``. No answer
of the API carries a token, so no command can print one.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from nodewright.cli.client import ApiClient, ApiError, load_token
from nodewright.cli.errors import die, say
from nodewright.cli.options import JsonOption, TokenFile, UrlOption, client
from nodewright.cli.output import OutputOption, emit, parse, table
from nodewright.cli.times import relative
from nodewright.security.secret import Secret
from nodewright.security.text import clean_line, for_terminal

providers_app = typer.Typer(
    help="Provider connections: cloud accounts nodes are acquired from.", no_args_is_help=True
)
ProviderArg = Annotated[str, typer.Argument(help="Provider connection id or name.", metavar="PROVIDER")]
ProviderTokenFile = Annotated[
    Path | None,
    typer.Option("--provider-token-file", help="Read the provider's token from this file (else asked for)."),
]


def provider_id(api: ApiClient, ref: str) -> int:
    """A connection's id from its id or its name (digits are an id first, then a name, as hcloud
    reads them: a connection named ``2024`` stays reachable); unknown: not found (exit 3)."""
    text = ref.strip()
    rows = api.get("/api/providers")
    if text.isascii() and text.isdigit():
        for row in rows:
            if row["id"] == int(text):
                return int(text)
    for row in rows:
        if row["name"] == text:
            return int(row["id"])
    raise ApiError(
        f"no provider connection with the id or name {clean_line(text)!r}", status=404, code="not_found"
    )


def _provider_token(path: Path | None, what: str) -> Secret:
    from nodewright.cli.client import checked_token

    if path is not None:
        return load_token(path)
    if not sys.stdin.isatty():
        return checked_token(sys.stdin.readline(), f"the {what} on stdin")
    return checked_token(typer.prompt(what.capitalize(), hide_input=True, err=True), f"the {what} typed")


def _row(p: dict[str, Any]) -> list[str]:
    limit = p.get("rate_limit") or {}
    budget = f"{limit.get('remaining')}/{limit.get('limit')}" if limit.get("limit") else "-"
    return [str(p["id"]), p["name"], p["kind"], p["status"], relative(p.get("last_checked_at")), budget,
            p.get("api_endpoint") or "default"]  # fmt: skip


def _describe(p: dict[str, Any]) -> None:
    fields = ("id", "name", "kind", "status", "ssh_user", "ssh_port", "token_fingerprint", "created_by")
    one = {k: clean_line(str(p[k] if p.get(k) is not None else "-")) for k in fields}
    say(f"provider {one['id']} {one['name']} ({one['kind']}): {one['status']}")
    if p.get("status_message"):
        say(f"  {for_terminal(str(p['status_message']), '    ')}")
    error = p.get("last_error")
    if isinstance(error, dict):
        message = for_terminal(str(error.get("message") or ""), "    ")
        say(f"  last error {clean_line(str(error.get('code')))}: {message}")
        if error.get("hint"):
            say(f"  hint: {for_terminal(str(error['hint']), '    ')}")
    endpoint = clean_line(str(p.get("api_endpoint") or "default"))
    say(f"  endpoint {endpoint}, ssh as {one['ssh_user']} on port {one['ssh_port']}")
    say(f"  token {one['token_fingerprint']} (fingerprint), checked {relative(p.get('last_checked_at'))}")
    say(f"  created by {one['created_by']} {relative(p.get('created_at'))}")


def _finish(value: Any, shape: Any) -> None:
    if not emit(value, shape):
        _describe(value)


@providers_app.command("list")
def providers_list(
    url: UrlOption = None,
    token_file: TokenFile = None,
    as_json: JsonOption = False,
    output: OutputOption = "table",
) -> None:
    """Provider connections with their status and rate-limit budget."""
    shape = parse(output, as_json=as_json)
    try:
        with client(url, token_file) as api:
            rows = api.get("/api/providers")
    except ApiError as exc:
        die(exc)
    if emit(rows, shape):
        return
    if not rows:
        say("no provider connections: `nodewright providers add --name NAME` connects one")
        return
    table(
        ["ID", "NAME", "KIND", "STATUS", "CHECKED", "BUDGET", "ENDPOINT"],
        [_row(p) for p in rows],
        colour=(3,),
    )


@providers_app.command("show")
def providers_show(
    provider: ProviderArg, url: UrlOption = None, token_file: TokenFile = None, as_json: JsonOption = False,
    output: OutputOption = "table",
) -> None:  # fmt: skip
    """One connection: status, last error and hint, endpoint, token fingerprint."""
    shape = parse(output, as_json=as_json)
    try:
        with client(url, token_file) as api:
            shown = api.get(f"/api/providers/{provider_id(api, provider)}")
    except ApiError as exc:
        die(exc)
    _finish(shown, shape)


@providers_app.command("add")
def providers_add(
    name: Annotated[str, typer.Option("--name", help="A name for the connection.")],
    kind: Annotated[str, typer.Option("--kind", help="Provider kind.")] = "hetzner",
    endpoint: Annotated[
        str | None, typer.Option("--endpoint", help="API endpoint (default: the provider's own).")
    ] = None,
    ssh_port: Annotated[int, typer.Option("--ssh-port", min=1, max=65535)] = 22,
    ssh_user: Annotated[str, typer.Option("--ssh-user", help="The user nodewright connects as.")] = "root",
    provider_token_file: ProviderTokenFile = None,
    url: UrlOption = None,
    token_file: TokenFile = None,
    as_json: JsonOption = False,
    output: OutputOption = "table",
) -> None:
    """Connect a provider account; its token is checked with the provider before it is stored."""
    shape = parse(output, as_json=as_json)
    try:
        with client(url, token_file) as api:
            secret = _provider_token(provider_token_file, "provider token")
            body: dict[str, Any] = {"kind": kind, "name": name, "token": secret.reveal(),
                                    "ssh_port": ssh_port, "ssh_user": ssh_user}  # fmt: skip
            if endpoint:
                body["api_endpoint"] = endpoint
            created = api.post("/api/providers", json=body)
    except ApiError as exc:
        die(exc)
    _finish(created, shape)


@providers_app.command("check")
def providers_check(
    provider: ProviderArg, url: UrlOption = None, token_file: TokenFile = None, as_json: JsonOption = False,
    output: OutputOption = "table",
) -> None:  # fmt: skip
    """Check the token with the provider now; exits 1 unless the connection is ok."""
    shape = parse(output, as_json=as_json)
    try:
        with client(url, token_file) as api:
            checked = api.post(f"/api/providers/{provider_id(api, provider)}/check")
    except ApiError as exc:
        die(exc)
    _finish(checked, shape)
    if checked["status"] != "ok":
        raise typer.Exit(1)


@providers_app.command("rotate")
def providers_rotate(
    provider: ProviderArg, provider_token_file: ProviderTokenFile = None, url: UrlOption = None,
    token_file: TokenFile = None, as_json: JsonOption = False, output: OutputOption = "table",
) -> None:  # fmt: skip
    """Replace the connection's token (the new one is checked first; the old stays on failure)."""
    shape = parse(output, as_json=as_json)
    try:
        with client(url, token_file) as api:
            target = provider_id(api, provider)
            secret = _provider_token(provider_token_file, "new provider token")
            rotated = api.request("PATCH", f"/api/providers/{target}", json={"token": secret.reveal()})
    except ApiError as exc:
        die(exc)
    _finish(rotated, shape)


@providers_app.command("remove")
def providers_remove(
    provider: ProviderArg,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
    url: UrlOption = None,
    token_file: TokenFile = None,
) -> None:
    """Remove a connection (refused while nodes use it); its stored token is deleted."""
    try:
        with client(url, token_file) as api:
            target = provider_id(api, provider)
            if not yes and sys.stdin.isatty():
                typer.confirm(f"Remove provider connection {target}?", abort=True, err=True)
            api.request("DELETE", f"/api/providers/{target}")
    except ApiError as exc:
        die(exc)
    say(f"provider connection {target} removed")


@providers_app.command("catalog")
def providers_catalog(
    provider: ProviderArg,
    what: Annotated[str, typer.Option("--show", help="types, locations or images.")] = "types",
    url: UrlOption = None,
    token_file: TokenFile = None,
    as_json: JsonOption = False,
    output: OutputOption = "table",
) -> None:
    """What the provider sells: server types with prices (cheapest first), locations, images."""
    shape = parse(output, as_json=as_json)
    if what not in ("types", "locations", "images"):
        say(f"error: --show {clean_line(what)!r}: use types, locations or images", err=True)
        raise typer.Exit(2)
    try:
        with client(url, token_file) as api:
            catalog = api.get(f"/api/providers/{provider_id(api, provider)}/catalog")
    except ApiError as exc:
        die(exc)
    if emit(catalog, shape):
        return
    if catalog.get("stale"):
        say(f"warning: an earlier copy ({clean_line(str(catalog.get('stale_reason') or ''))})", err=True)
    if what == "locations":
        rows = [[str(loc.get("name")), str(loc.get("city") or "-"), str(loc.get("country") or "-"),
                 str(loc.get("network_zone") or "-")]
                for loc in catalog["locations"]]  # fmt: skip
        table(["NAME", "CITY", "COUNTRY", "ZONE"], sorted(rows))
    elif what == "images":
        rows = [[str(i.get("name")), str(i.get("os_flavor") or "-"), str(i.get("architecture") or "-")]
                for i in catalog["images"]]  # fmt: skip
        table(["NAME", "OS", "ARCH"], sorted(rows))
    else:
        header = ["NAME", "CORES", "MEMORY", "DISK", "EUR/MONTH", "AVAILABLE IN", ""]
        table(header, _types(catalog["server_types"]))


def _types(types: list[dict[str, Any]]) -> list[list[str]]:
    """Cheapest first; where it can be ordered now; ``deprecated`` where it is."""

    def monthly(t: dict[str, Any]) -> float:
        prices = [float(p["monthly_gross"]) for p in t.get("prices") or [] if p.get("monthly_gross")]
        return min(prices) if prices else float("inf")

    rows = []
    for t in sorted(types, key=lambda t: (monthly(t), str(t.get("name")))):
        price = monthly(t)
        where = ",".join(t.get("available_in") or []) or "sold out"
        rows.append([str(t.get("name")), str(t.get("cores")), f"{t.get('memory_gb'):g} GB",
                     f"{t.get('disk_gb')} GB",
                     "-" if price == float("inf") else f"{price:.2f}", where,
                     "deprecated" if t.get("deprecated") else ""])  # fmt: skip
    return rows
