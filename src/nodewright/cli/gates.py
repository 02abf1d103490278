"""``nodewright gates``: feature gates, read and switched in the installation's database (local)."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from nodewright.cli.errors import fail, friendly_errors
from nodewright.cli.local import open_context

gates_app = typer.Typer(
    help="Feature gates: `nodewright gates` lists them, `nodewright gates set NAME on|off` switches one.",
    invoke_without_command=True,
)


def _print_gates(states: list[Any]) -> None:
    for state in states:
        where = (
            f"set by {state.updated_by} at {state.updated_at:%Y-%m-%d %H:%M:%S}Z"
            if state.updated_by
            else "default"
        )
        typer.echo(f"{state.name}: {'on' if state.enabled else 'off'} ({where})")


@gates_app.callback()
@friendly_errors
def gates_list(invocation: typer.Context) -> None:
    """List the feature gates with their values."""
    if invocation.invoked_subcommand is not None:
        return
    from nodewright import gates

    ctx = open_context()
    try:
        with ctx.database.session() as session:
            _print_gates(gates.read_gates(session, ctx.settings))
    finally:
        ctx.close()


@gates_app.command("set")
@friendly_errors
def gates_set(
    name: Annotated[str, typer.Argument(help="Gate name, e.g. provider_create.")],
    value: Annotated[str, typer.Argument(help="on or off.")],
) -> None:
    """Switch a gate; every serve and worker process sees it at once (no restart)."""
    from nodewright import gates

    if value.lower() not in ("on", "off", "true", "false"):
        fail(f"value must be on or off, not {value!r}")
    if name not in gates.DESCRIPTIONS:
        fail(f"unknown gate {name!r} (known: {', '.join(sorted(gates.DESCRIPTIONS))})")
    ctx = open_context()
    try:
        with ctx.database.session(write=True) as session:
            states = gates.set_gates(
                session, ctx.settings, {name: value.lower() in ("on", "true")}, actor="cli"
            )
            _print_gates([s for s in states if s.name == name])
    finally:
        ctx.close()
