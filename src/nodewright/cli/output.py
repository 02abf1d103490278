"""``-o/--output`` for the CLI's API commands: the human table (default), or the API's answer as
``json`` or ``yaml``, ``columns=a,b.c`` (chosen fields, dotted paths into nested objects, one row per
item) or ``ids`` (one id per line, for scripts: ``nodewright nodes list -o ids | xargs ...``).

Whatever the server sent, no control character reaches the terminal: JSON and YAML escape them, and
columns are cleaned to one line each (``security.text``).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Annotated, Any

import typer
import yaml

from nodewright.security.text import clean, clean_line

FORMATS = "table, json, yaml, ids, or columns=FIELD,... (dotted paths, e.g. columns=id,name,ssh.address)"
OutputOption = Annotated[str, typer.Option("-o", "--output", help=f"Output: {FORMATS}.", metavar="FORMAT")]
_FIELD = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z0-9_]+)*$")


@dataclass(frozen=True)
class Output:
    kind: str  # table, json, yaml, ids, columns
    columns: tuple[str, ...] = ()


def parse(value: str, *, as_json: bool = False) -> Output:
    """The format an operator asked for; a wrong one is a usage error (exit 2) that names the choices."""
    if as_json:
        return Output("json")
    text = value.strip()
    if text in ("table", "json", "yaml", "ids"):
        return Output(text)
    if text.startswith("columns="):
        columns = tuple(c.strip() for c in text[len("columns=") :].split(",") if c.strip())
        bad = [c for c in columns if not _FIELD.match(c)]
        if columns and not bad:
            return Output("columns", columns)
        typer.echo(f"error: -o {clean_line(text)!r}: name fields like columns=id,name,ssh.address", err=True)
        raise typer.Exit(2)
    typer.echo(f"error: -o {clean_line(text)!r} is not a format; use {FORMATS}", err=True)
    raise typer.Exit(2)


def _field(row: Any, path: str) -> str:
    value = row
    for part in path.split("."):
        if isinstance(value, dict):
            value = value.get(part)
        elif isinstance(value, list) and part.isdigit() and int(part) < len(value):
            value = value[int(part)]
        else:
            value = None
        if value is None:
            return "-"
    if isinstance(value, dict | list):
        return json.dumps(value, sort_keys=True)
    return str(value)


def rows_of(value: Any) -> list[Any]:
    """The rows of an answer: a list, a page's ``items``, or the one object."""
    if isinstance(value, list):
        return value
    if isinstance(value, dict) and isinstance(value.get("items"), list):
        return list(value["items"])
    return [value]


# Health and status words in colour on a terminal (never in pipes, never with NO_COLOR set).
COLOURS = {
    "passing": "green", "ready": "green", "ok": "green", "succeeded": "green", "active": "green",
    "degraded": "yellow", "failing": "yellow", "paused": "yellow", "queued": "yellow",
    "retrying": "yellow", "unknown": "yellow",
    "failed": "red", "lost": "red", "dead": "red", "error": "red", "invalid": "red",
    "canceled": "red", "ENGAGED": "red", "disabled": "red",
}  # fmt: skip


def _colour_on() -> bool:
    import os
    import sys

    return sys.stdout.isatty() and not os.environ.get("NO_COLOR")


def table(header: list[str], rows: list[list[str]], *, colour: tuple[int, ...] = ()) -> None:
    """Aligned columns under an upper-case header; the cells in the ``colour`` columns are
    coloured by their first word (``COLOURS``). Every cell is cleaned to one line."""
    cells = [[clean_line(str(cell)) for cell in row] for row in rows]
    widths = [max(len(c) for c in column) for column in zip(header, *cells, strict=False)]
    styled = _colour_on()
    for index, line in enumerate([header, *cells]):
        out = []
        for position, (cell, width) in enumerate(zip(line, widths, strict=True)):
            text = cell.ljust(width)
            hue = COLOURS.get(cell.split(" ")[0]) if cell else None
            if styled and index and position in colour and hue:
                text = typer.style(cell, fg=hue) + " " * (width - len(cell))
            out.append(text)
        typer.echo("  ".join(out).rstrip())


def emit(value: Any, output: Output) -> bool:
    """Print ``value`` in a machine format and return True; False for ``table`` (the caller prints
    its own human view)."""
    if output.kind == "table":
        return False
    if output.kind == "json":
        typer.echo(json.dumps(value, indent=2))
    elif output.kind == "yaml":
        typer.echo(
            yaml.safe_dump(value, sort_keys=False, allow_unicode=False, default_flow_style=False), nl=False
        )
    elif output.kind == "ids":
        for row in rows_of(value):
            if isinstance(row, dict) and row.get("id") is not None:
                typer.echo(clean_line(str(row["id"])))
    else:
        rows = [[clean_line(_field(row, c)) for c in output.columns] for row in rows_of(value)]
        header = [c.upper() for c in output.columns]
        widths = [max(len(cell) for cell in column) for column in zip(header, *rows, strict=False)]
        for line in [header, *rows]:
            typer.echo(clean("  ".join(cell.ljust(w) for cell, w in zip(line, widths, strict=True)).rstrip()))
    return True
