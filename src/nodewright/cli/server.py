"""The commands that run nodewright: ``serve`` and the ``db`` group (the only local commands, with
``demo`` and ``worker``, that may create an installation), and the pieces ``serve`` and ``demo``
share: opening the installation, the welcome lines, the HTTP server."""

from __future__ import annotations

import gc
import logging
import signal
import socket
import sys
from typing import TYPE_CHECKING, Annotated, Any

import typer

from nodewright.cli.errors import friendly_errors
from nodewright.cli.local import installed_settings, migrate_schema

if TYPE_CHECKING:
    import uvicorn

    from nodewright.config import Settings
    from nodewright.context import AppContext
    from nodewright.security.accounts import Bootstrap

db_app = typer.Typer(help="Database schema.", no_args_is_help=True)


def _exit_on_sigterm(signum: int, _frame: object) -> None:
    raise SystemExit(128 + signum)


def public_url(settings: Settings) -> str:
    return settings.public_url or f"http://{settings.host}:{settings.port}"


def open_installation(settings: Settings) -> tuple[AppContext, Bootstrap | None]:
    """Logging, schema, the application context; the bootstrap admin when this start made it."""
    from nodewright.config import scrub_secret_environment
    from nodewright.context import AppContext
    from nodewright.logging_setup import configure_logging
    from nodewright.security.accounts import bootstrap_admin_once

    configure_logging(settings.log_level)
    migrate_schema(settings)
    ctx = AppContext.open(settings)
    # The keys are in `settings` and the open key ring now; children started from here on (process
    # workers, ssh, Ansible) must not inherit them through the environment.
    scrub_secret_environment()
    try:
        return ctx, bootstrap_admin_once(ctx.database)
    except BaseException:
        ctx.close()
        raise


def welcome(settings: Settings, bootstrap: Bootstrap | None, banner: str) -> list[str]:
    """Where to go and how to sign in (the bootstrap admin's password, the one time there is one)."""
    lines = [f"{banner}: {public_url(settings)}"]
    if bootstrap is not None:
        lines.append(f"First start: sign in as '{bootstrap.username}' with password: {bootstrap.password}")
        lines.append(
            "This password is shown once. Reset it with `nodewright users reset-password admin --local`."
        )
    else:
        lines.append(
            "Sign in with an existing user (`nodewright users reset-password NAME --local` if forgotten)."
        )
    return lines


def build_server(settings: Settings, ctx: AppContext) -> uvicorn.Server:
    import uvicorn

    from nodewright.app import create_app
    from nodewright.http_limits import ConnectionLimits, connection_cap, protocol_class, raise_nofile_limit
    from nodewright.logging_setup import uvicorn_log_config

    application = create_app(settings, ctx=ctx)
    # Half-sent requests, huge heads and connection floods are bounded below uvicorn (see
    # nodewright.http_limits); the open-file limit is raised so that the cap, not EMFILE, decides.
    nofile = raise_nofile_limit()
    limits = ConnectionLimits(
        max_header_bytes=settings.http_max_header_bytes,
        max_headers=settings.http_max_headers,
        header_timeout=settings.http_header_timeout_seconds,
        body_timeout=settings.http_body_timeout_seconds,
        max_connections=connection_cap(settings.http_max_connections, nofile, settings.http_fd_reserve),
    )
    logging.getLogger("nodewright.serve").info(
        "open-file limit %d; at most %d client connections", nofile, limits.max_connections
    )
    config = uvicorn.Config(
        application,
        host=settings.host,
        port=settings.port,
        log_config=uvicorn_log_config(settings.log_level),
        proxy_headers=False,
        http=protocol_class(limits),
        # h11's own buffer cap stays above ours, so ours answers (431, not a bare 400).
        h11_max_incomplete_event_size=settings.http_max_header_bytes + 4096,
        timeout_keep_alive=settings.http_keepalive_timeout_seconds,
    )
    return uvicorn.Server(config)


def run_server(server: uvicorn.Server, ctx: AppContext, sock: socket.socket) -> None:
    """Serve on ``sock`` until a signal stops the server; the context is closed afterwards."""
    # Everything built so far (modules, the app, the context) lives as long as the process: out of
    # the collector's reach, a full collection scans only what requests made. With 500 open event
    # streams that cut the longest collection pause from about 100 ms to about 50 ms.
    gc.collect()
    gc.freeze()
    try:
        server.run(sockets=[sock])
    finally:
        gc.unfreeze()  # for a caller that goes on (the tests run this in their own process)
        sock.close()
        ctx.close()
    if not server.started:  # the app did not start (uvicorn logged why), as `uvicorn.run` exits
        raise SystemExit(3)


def _run_server(settings: Settings, *, banner: str) -> None:
    from nodewright.cli.ports import bind_or_explain

    sock = bind_or_explain(settings.host, settings.port, flag="--port")
    try:
        ctx, bootstrap = open_installation(settings)
    except BaseException:
        sock.close()
        raise
    for line in welcome(settings, bootstrap, banner):
        typer.echo(line)
    sys.stdout.flush()
    server = build_server(settings, ctx)
    # uvicorn shuts down gracefully on SIGTERM, then raises the signal again once it has put the
    # previous handler back. With Python's default handler that kills the process before any
    # ``finally`` runs; this one turns it into an orderly exit with the conventional status.
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    run_server(server, ctx, sock)


@friendly_errors
def serve(
    host: Annotated[
        str | None,
        typer.Option(
            help="Address to listen on [default: NODEWRIGHT_HOST, else 127.0.0.1].", show_default=False
        ),
    ] = None,
    port: Annotated[
        int | None,
        typer.Option(help="Port to listen on [default: NODEWRIGHT_PORT, else 8400].", show_default=False),
    ] = None,
    workers: Annotated[
        int | None,
        typer.Option(
            help="Embedded job workers [default: NODEWRIGHT_EMBEDDED_WORKERS, else 2].",
            min=0,
            show_default=False,
        ),
    ] = None,
    no_worker: Annotated[bool, typer.Option("--no-worker", help="Run no embedded job worker.")] = False,
) -> None:
    """Run the API and dashboard (migrates the database first)."""
    overrides: dict[str, Any] = {}
    if host is not None:
        overrides["host"] = host
    if port is not None:
        overrides["port"] = port
    if workers is not None:
        overrides["embedded_workers"] = workers
    if no_worker:
        overrides["embedded_workers"] = 0
    from nodewright.config import load_settings

    settings = load_settings(**overrides)
    _run_server(settings, banner="nodewright is listening on")


@db_app.command("upgrade")
@friendly_errors
def db_upgrade() -> None:
    """Apply every pending migration (safe to run from several machines at once)."""
    from nodewright.config import load_settings
    from nodewright.db import migrate
    from nodewright.db.engine import make_engine

    settings = load_settings()
    migrate_schema(settings)
    engine = make_engine(settings.resolved_database_url)
    try:
        typer.echo(f"database at revision {migrate.current_revision(engine)}")
    finally:
        engine.dispose()


@db_app.command("current")
@friendly_errors
def db_current() -> None:
    """Print the schema revision of the database and of the code."""
    from nodewright.db import migrate
    from nodewright.db.engine import make_engine

    engine = make_engine(installed_settings().resolved_database_url)
    try:
        typer.echo(
            f"database: {migrate.current_revision(engine) or 'empty'}; code: {migrate.head_revision()}"
        )
    finally:
        engine.dispose()
