"""``nodewright gates``: feature gates, read and switched over the HTTP API (admin to switch), or
with ``--local`` in the installation's database on its machine (the break-glass path)."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from nodewright.cli.client import ApiError
from nodewright.cli.errors import die, fail, friendly_errors, say
from nodewright.cli.local import local_session
from nodewright.cli.options import JsonOption, LocalOption, TokenFile, UrlOption, client
from nodewright.cli.output import OutputOption, emit, parse
from nodewright.cli.times import relative
from nodewright.security.text import clean_line

gates_app = typer.Typer(
    help="Feature gates: `nodewright gates` lists them, `nodewright gates set NAME on|off` switches one.",
    invoke_without_command=True,
)
ON = ("on", "true")
VALUES = (*ON, "off", "false")


def _line(gate: dict[str, Any]) -> str:
    name = clean_line(str(gate.get("name")))
    state = "on" if gate.get("enabled") is True else "off"
    if gate.get("updated_by"):
        where = f"set by {clean_line(str(gate['updated_by']))} {relative(gate.get('updated_at'))}"
    else:
        where = "default"
    return f"{name}: {state} ({where})"


def _local_gates(changes: dict[str, bool] | None) -> list[dict[str, Any]]:
    from nodewright import gates

    with local_session(write=changes is not None) as (ctx, session):
        if changes is None:
            states = gates.read_gates(session, ctx.settings)
        else:
            states = gates.set_gates(session, ctx.settings, changes, actor="cli")
        return [{**vars(s), "updated_at": s.updated_at and s.updated_at.isoformat()} for s in states]


@gates_app.callback()
@friendly_errors
def gates_list(
    invocation: typer.Context,
    local: LocalOption = False,
    url: UrlOption = None,
    token_file: TokenFile = None,
    as_json: JsonOption = False,
    output: OutputOption = "table",
) -> None:
    """List the feature gates with their values."""
    if invocation.invoked_subcommand is not None:
        return
    shape = parse(output, as_json=as_json)
    if local:
        rows = _local_gates(None)
    else:
        try:
            with client(url, token_file) as api:
                rows = api.get("/api/gates")["gates"]
        except ApiError as exc:
            die(exc)
    if not emit(rows, shape):
        for gate in rows:
            say(_line(gate))


@gates_app.command("set")
@friendly_errors
def gates_set(
    name: Annotated[str, typer.Argument(help="Gate name, e.g. provider_create.")],
    value: Annotated[str, typer.Argument(help="on or off.")],
    local: LocalOption = False,
    url: UrlOption = None,
    token_file: TokenFile = None,
) -> None:
    """Switch a gate; every serve and worker process sees it at once (no restart)."""
    from nodewright import gates

    if value.lower() not in VALUES:
        fail(f"value must be on or off, not {clean_line(value)!r}")
    if name not in gates.DESCRIPTIONS:
        fail(f"unknown gate {clean_line(name)!r} (known: {', '.join(sorted(gates.DESCRIPTIONS))})")
    change = {name: value.lower() in ON}
    if local:
        rows = _local_gates(change)
        where = "in the local installation"
    else:
        try:
            with client(url, token_file) as api:
                rows = api.request("PUT", "/api/gates", json=change)["gates"]
                where = f"on {api.base_url}"
        except ApiError as exc:
            die(exc)
    for gate in rows:
        if gate.get("name") == name:
            say(f"{_line(gate)} {where}")
