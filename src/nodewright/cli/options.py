"""The options every API command shares, and where its server and token come from.

The server: ``--url`` (or ``NODEWRIGHT_URL``), else the active context (``nodewright login``), else
http://127.0.0.1:8400. The token: ``--token-file``, else ``NODEWRIGHT_TOKEN``, else the active
context's, but only when the command talks to that context's own server. Never a command-line
argument: other users of the machine can read those in ``ps``.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated

import typer

from nodewright.cli import contexts
from nodewright.cli.client import DEFAULT_URL, ApiClient, ApiError, load_token, token_from_environment
from nodewright.cli.errors import fail
from nodewright.nodes.names import NAME_PATTERN
from nodewright.security.secret import Secret
from nodewright.security.text import clean_line

UrlOption = Annotated[
    str | None,
    typer.Option(
        "--url",
        envvar="NODEWRIGHT_URL",
        help=f"The nodewright server [default: the active context's, else {DEFAULT_URL}].",
        show_default=False,
    ),
]
TokenFile = Annotated[
    Path | None,
    typer.Option(
        "--token-file", help="A file holding the API token (else NODEWRIGHT_TOKEN, else the context's)."
    ),
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print the API's JSON answer (same as -o json).")]
WaitOption = Annotated[bool, typer.Option("--wait", help="Follow the work until it is done.")]
LocalOption = Annotated[
    bool,
    typer.Option(
        "--local",
        help="Open the installation's database on this machine instead of asking the server (the "
        "break-glass path: no token needed; run it where serve runs, with its settings).",
    ),
]
NodeArg = Annotated[str, typer.Argument(help="Node id or name.", metavar="NODE")]
NODE_NAME = re.compile(NAME_PATTERN)


def credentials(url: str | None, token_file: Path | None) -> tuple[str, Secret]:
    """The server to talk to and the token to show it (see the module's docstring)."""
    token = load_token(token_file) if token_file is not None else token_from_environment()
    if url is not None and token is not None:  # both explicit: the contexts file is not read
        return url, token
    saved = contexts.load().current()
    if token is not None:
        if saved is not None:
            # A token tied to no server must not go to whichever context happens to be active.
            where = "--token-file" if token_file is not None else "NODEWRIGHT_TOKEN"
            raise ApiError(
                f"{where} gives a token but not where it goes, and the active context {saved.name!r} "
                f"is {saved.url}: pass --url (or NODEWRIGHT_URL), or drop {where} to use the context's",
                usage=True,
            )
        return DEFAULT_URL, token
    chosen = url or (saved.url if saved else DEFAULT_URL)
    if saved is not None and contexts.same_server(chosen, saved.url):
        return chosen, saved.secret
    hint = (
        f" (the active context {saved.name!r} is for {saved.url}, not {clean_line(chosen)})" if saved else ""
    )
    raise ApiError(
        "no API token: `nodewright login` saves one, or set NODEWRIGHT_TOKEN, or pass --token-file "
        f"(create one on the server's machine with `nodewright tokens create --local`){hint}",
        usage=True,
    )


def client(url: str | None, token_file: Path | None) -> ApiClient:
    return ApiClient(*credentials(url, token_file))


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


def filters(pairs: dict[str, str | int | list[str] | None]) -> dict[str, str | int | list[str]]:
    """The filter options given, by query name. An empty one (or an empty item of a repeatable one)
    is refused (exit 2): dropping it would widen the filter silently, sending it would match nothing;
    neither is what was meant."""
    chosen: dict[str, str | int | list[str]] = {}
    for option, value in pairs.items():
        items = value if isinstance(value, list) else [value]
        if any(isinstance(item, str) and not item.strip() for item in items):
            fail(f"--{option.replace('_', '-')} is empty: give a value or leave the option out")
        if value is not None:
            chosen[option] = value
    return chosen


def key_values(items: list[str], option: str) -> dict[str, str]:
    """``key=value`` options as a dict. An item without ``=`` is refused: read as the empty value, a
    typo (``--selector rack``) would silently mean something else (every node labelled ``rack=""``)."""
    pairs: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            fail(f"{option} {clean_line(item)!r} must be key=value")
        pairs[key] = value
    return pairs
