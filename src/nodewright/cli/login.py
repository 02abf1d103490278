"""``nodewright login [URL]`` and ``nodewright context list|use|delete|active`` (see ``contexts``).

The token is asked for without echo, or read from stdin when one is piped in, or from
``--token-file``; never taken as an argument. It is checked against the server (``GET /api/me``)
before anything is saved.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from nodewright.cli import contexts
from nodewright.cli.client import DEFAULT_URL, ApiClient, ApiError, checked_token, load_token
from nodewright.cli.errors import EXIT_NOT_FOUND, die, say
from nodewright.cli.output import OutputOption, emit, parse
from nodewright.security.secret import Secret
from nodewright.security.text import clean_line

context_app = typer.Typer(
    help="Saved servers and their tokens (`nodewright login` adds one).", no_args_is_help=True
)
LOOPBACK = {"localhost", "127.0.0.1", "::1", "[::1]"}


def _read_token(token_file: Path | None) -> Secret:
    if token_file is not None:
        return load_token(token_file)
    if not sys.stdin.isatty():
        return checked_token(sys.stdin.readline(), "the token on stdin")
    return checked_token(typer.prompt("API token", hide_input=True, err=True), "the token typed")


def login(
    url: Annotated[
        str | None,
        typer.Argument(
            help=f"The nodewright server [default: NODEWRIGHT_URL, else {DEFAULT_URL}].",
            show_default=False,
            envvar="NODEWRIGHT_URL",
        ),
    ] = None,
    name: Annotated[
        str | None,
        typer.Option(
            "--name", help="The context's name [default: the server's host and port].", show_default=False
        ),
    ] = None,
    token_file: Annotated[
        Path | None, typer.Option("--token-file", help="Read the token from this file (else asked for).")
    ] = None,
) -> None:
    """Save a server and a token as a context and make it the active one (the token is verified
    first; it is asked for, read from stdin, or from --token-file, never an argument)."""
    server = (url or DEFAULT_URL).strip().rstrip("/")
    try:
        try:
            scheme, host, _port = contexts.server_key(server)
        except ValueError as exc:
            raise ApiError(
                f"{clean_line(server)!r} is not an http(s) URL of a nodewright server "
                f"({clean_line(str(exc))})",
                usage=True,
            ) from None
        context_name = contexts.check_name(name) if name else contexts.name_for(server)
        contexts.load()  # an unreadable or exposed file is refused before a token is asked for
        if scheme == "http" and host not in LOOPBACK:
            say(f"warning: {clean_line(server)} is plain http: the token crosses the network unencrypted",
                err=True)  # fmt: skip
        token = _read_token(token_file)
        with ApiClient(server, token) as api:
            me = api.get("/api/me")
        saved = contexts.remember(server, token, str(me["username"]), str(me["role"]), context_name)
    except ApiError as exc:
        die(exc)
    say(f"logged in to {server} as {clean_line(str(me['username']))} ({clean_line(str(me['role']))}); "
        f"context {context_name!r} is active (saved in {saved.path})")  # fmt: skip


@context_app.command("list")
def context_list(output: OutputOption = "table") -> None:
    """The saved contexts (never their tokens); `*` marks the active one."""
    shape = parse(output)
    try:
        saved = contexts.load()
        active = saved.current()
    except ApiError as exc:
        die(exc)
    rows = [c.public(active is not None and c.name == active.name) for c in saved.items.values()]
    if emit(rows, shape):
        return
    if not rows:
        say("no contexts: `nodewright login URL` saves one")
        return
    width = max(len(r["name"]) for r in rows)
    say(f"  {'NAME':<{width}}  URL  USER")
    for row in sorted(rows, key=lambda r: r["name"]):
        mark = "*" if row["active"] else " "
        say(clean_line(f"{mark} {row['name']:<{width}}  {row['url']}  {row['username']} ({row['role']})"))


@context_app.command("use")
def context_use(name: Annotated[str, typer.Argument(help="A saved context.")]) -> None:
    """Make a saved context the active one."""
    try:
        saved = contexts.load()
        if name not in saved.items:
            raise ApiError(f"no context named {clean_line(name)!r}", status=404, code="not_found")
        saved.active = name
        saved.save()
    except ApiError as exc:
        die(exc)
    say(f"context {name!r} is active: {clean_line(saved.items[name].url)}")


@context_app.command("active")
def context_active() -> None:
    """Print the active context's name (NODEWRIGHT_CONTEXT chooses one for a command)."""
    try:
        current = contexts.load().current()
    except ApiError as exc:
        die(exc)
    if current is None:
        say("no active context", err=True)
        raise typer.Exit(EXIT_NOT_FOUND)
    say(current.name)


@context_app.command("delete")
def context_delete(name: Annotated[str, typer.Argument(help="A saved context.")]) -> None:
    """Forget a saved context and its token (the token stays valid: revoke it with `tokens revoke`)."""
    try:
        saved = contexts.load()
        if name not in saved.items:
            raise ApiError(f"no context named {clean_line(name)!r}", status=404, code="not_found")
        del saved.items[name]
        if saved.active == name:
            saved.active = None
        saved.save()
    except ApiError as exc:
        die(exc)
    say(f"context {name!r} deleted" + ("" if saved.active else "; no context is active now"))
