"""The ``nodewright`` command. Thin: each command calls a service, and every error the operator can
fix becomes a one-line message and a non-zero exit, never a traceback."""

from __future__ import annotations

import functools
import gc
import logging
import os
import signal
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer
from sqlalchemy.exc import ArgumentError, OperationalError

from nodewright import (
    cli_ssh,  # noqa: F401  (registers `nodes ssh`)
    installation,
)
from nodewright.cli_nodes import maintenance_app, nodes_app, smoke_command
from nodewright.cli_webhooks import webhooks_app
from nodewright.config import (
    ConfigError,
    Settings,
    load_settings,
    reexec_without_secret_environment,
    scrub_secret_environment,
)
from nodewright.installation import InstallationMissing, InstallationUnreadable
from nodewright.jobs.cli import worker_command
from nodewright.security.accounts import AccountError
from nodewright.security.secretbox import SecretKeyError
from nodewright.sim.cli import sim_command

if TYPE_CHECKING:
    from nodewright.context import AppContext

app = typer.Typer(
    name="nodewright",
    help="Control plane for server fleets: acquire nodes from cloud providers, provision and watch them.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
db_app = typer.Typer(help="Database schema.", no_args_is_help=True)
users_app = typer.Typer(help="Dashboard and API users.", no_args_is_help=True)
tokens_app = typer.Typer(help="API tokens.", no_args_is_help=True)
secrets_app = typer.Typer(help="Encryption keys for secrets at rest.", no_args_is_help=True)
gates_app = typer.Typer(
    help="Feature gates: `nodewright gates` lists them, `nodewright gates set NAME on|off` switches one.",
    invoke_without_command=True,
)
app.add_typer(db_app, name="db")
app.add_typer(users_app, name="users")
app.add_typer(tokens_app, name="tokens")
app.add_typer(secrets_app, name="secrets")
app.add_typer(gates_app, name="gates")
app.add_typer(nodes_app, name="nodes")
app.add_typer(maintenance_app, name="maintenance")
app.add_typer(webhooks_app, name="webhooks")

F = TypeVar("F", bound=Callable[..., Any])


def fail(message: str, code: int = 2) -> None:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code)


def friendly_errors(func: F) -> F:
    """Turn the errors an operator can fix into a message and exit code 2."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except ConfigError as exc:
            fail(str(exc))
        except SecretKeyError as exc:
            fail(str(exc), code=4)
        except InstallationMissing as exc:
            fail(str(exc), code=3)
        except InstallationUnreadable as exc:
            fail(str(exc), code=4)
        except AccountError as exc:
            fail(f"{exc.field}: {exc.message}", code={"not_found": 3, "conflict": 4}.get(exc.kind, 2))
        except ArgumentError as exc:
            fail(f"NODEWRIGHT_DATABASE_URL is not a database URL: {exc}")
        except OperationalError as exc:
            reason = (str(exc.orig).strip().splitlines() or ["unknown"])[0]
            fail(f"database unavailable: {exc.orig.__class__.__name__}: {reason}", code=5)
        return None

    return wrapper  # type: ignore[return-value]


def _settings() -> Settings:
    return load_settings()


def _migrate(settings: Settings, *, create: bool = True) -> None:
    """Bring the schema to the code's. ``create=False`` (local commands): only an installation that
    exists is upgraded; a database without nodewright's schema is refused, and no directory made."""
    from sqlalchemy.engine import make_url

    from nodewright.db import migrate
    from nodewright.db.engine import make_engine

    if create:
        settings.ensure_data_dir()
    engine = make_engine(settings.resolved_database_url)
    try:
        if not create and migrate.current_revision(engine) is None:
            where = make_url(settings.resolved_database_url).render_as_string(hide_password=True)
            raise InstallationMissing(where, "the database holds no nodewright schema:")
        migrate.upgrade(engine)
    finally:
        engine.dispose()


# --- serve / demo ----------------------------------------------------------------------------------


def _exit_on_sigterm(signum: int, _frame: object) -> None:
    raise SystemExit(128 + signum)


def _run_server(
    settings: Settings, *, banner: str, prepare: Callable[[AppContext], str] | None = None
) -> None:
    """``prepare``: run once the database is ready, before serving; its line is printed."""
    import uvicorn

    from nodewright.app import create_app
    from nodewright.context import AppContext
    from nodewright.http_limits import ConnectionLimits, connection_cap, protocol_class, raise_nofile_limit
    from nodewright.logging_setup import configure_logging, uvicorn_log_config
    from nodewright.security.accounts import bootstrap_admin_once

    configure_logging(settings.log_level)
    _migrate(settings)
    ctx = AppContext.open(settings)
    # The keys are in `settings` and the open key ring now; children started from here on (process
    # workers, ssh, Ansible) must not inherit them through the environment.
    scrub_secret_environment()
    bootstrap = bootstrap_admin_once(ctx.database)
    url = settings.public_url or f"http://{settings.host}:{settings.port}"
    typer.echo(f"{banner}: {url}")
    if bootstrap is not None:
        typer.echo(f"First start: sign in as '{bootstrap.username}' with password: {bootstrap.password}")
        typer.echo("This password is shown once. Reset it with `nodewright users reset-password admin`.")
    else:
        typer.echo("Sign in with an existing user (`nodewright users reset-password NAME` if forgotten).")
    if prepare is not None:
        typer.echo(prepare(ctx))
    sys.stdout.flush()
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
    # uvicorn shuts down gracefully on SIGTERM, then raises the signal again once it has put the
    # previous handler back. With Python's default handler that kills the process before any
    # ``finally`` runs (the demo's simulator would leave its nodes' layers behind); this one turns
    # it into an orderly exit with the conventional status.
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    # Everything built so far (modules, the app, the context) lives as long as the process: out of
    # the collector's reach, a full collection scans only what requests made. With 500 open event
    # streams that cut the longest collection pause from about 100 ms to about 50 ms.
    gc.collect()
    gc.freeze()
    try:
        uvicorn.run(
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
    finally:
        gc.unfreeze()  # for a caller that goes on (the tests run this in their own process)
        ctx.close()


@app.command()
@friendly_errors
def serve(
    host: Annotated[str | None, typer.Option(help="Address to listen on.")] = None,
    port: Annotated[int | None, typer.Option(help="Port to listen on.")] = None,
    workers: Annotated[int | None, typer.Option(help="Embedded job workers.", min=0)] = None,
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
    settings = load_settings(**overrides)
    _run_server(settings, banner="nodewright is listening on")


@app.command()
@friendly_errors
def demo(
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8400,
    sim_port: Annotated[int, typer.Option(help="Port of the Hetzner Cloud simulator (0: any).")] = 8480,
) -> None:
    """Run nodewright on its embedded defaults: SQLite in the data directory, an embedded worker, and
    the Hetzner Cloud simulator with real SSH nodes standing in for the provider."""
    from nodewright.demo import connect_simulator
    from nodewright.sim.config import SimConfig
    from nodewright.sim.server import SimServer

    settings = load_settings(host=host, port=port)
    sim_config = SimConfig(protected_paths=(str(settings.data_dir),))
    with SimServer(host="127.0.0.1", port=sim_port, config=sim_config) as sim:
        nodes = "on" if sim.ssh_nodes else f"off ({sim.ssh_nodes_reason})"
        typer.echo(f"Hetzner Cloud simulator: {sim.api_url} (SSH nodes: {nodes})")
        url = settings.public_url or f"http://{settings.host}:{settings.port}"
        settings.allow_provider_endpoint(sim.base_url + "/")

        def prepare(ctx: AppContext) -> str:
            line = connect_simulator(ctx, sim.api_url, sim.config.ssh_port)
            return f"{line} Create a node at {url}/nodes"

        _run_server(settings, banner="nodewright demo is running at", prepare=prepare)


# --- db ----------------------------------------------------------------------------------------------


@db_app.command("upgrade")
@friendly_errors
def db_upgrade() -> None:
    """Apply every pending migration (safe to run from several machines at once)."""
    from nodewright.db import migrate
    from nodewright.db.engine import make_engine

    settings = _settings()
    _migrate(settings)
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

    engine = make_engine(_installed_settings().resolved_database_url)
    try:
        typer.echo(
            f"database: {migrate.current_revision(engine) or 'empty'}; code: {migrate.head_revision()}"
        )
    finally:
        engine.dispose()


# --- users and tokens ------------------------------------------------------------------------------------


def _read_password() -> tuple[str, bool]:
    """The password from stdin when one is piped in, else a generated one (second value True)."""
    from nodewright.security.passwords import generate_password

    if not sys.stdin.isatty():
        piped = sys.stdin.readline().rstrip("\r\n")
        if piped:
            return piped, False
    return generate_password(), True


def _installed_settings() -> Settings:
    """The settings of an installation that exists (see ``installation``): local commands other
    than serve, demo, worker and db upgrade never create one."""
    settings = _settings()
    installation.require(settings)
    return settings


def _context() -> Any:
    from nodewright.context import AppContext

    settings = _installed_settings()
    _migrate(settings, create=False)
    return AppContext.open(settings, create_data_dir=False)


@users_app.command("create")
@friendly_errors
def users_create(
    username: Annotated[str, typer.Option(help="Login name.")],
    role: Annotated[str, typer.Option(help="viewer, operator or admin.")] = "viewer",
) -> None:
    """Create a user. The password is read from stdin, or generated and printed once."""
    from nodewright.security import accounts, audit

    password, generated = _read_password()
    ctx = _context()
    try:
        with ctx.database.session(write=True) as session:
            user = accounts.create_user(session, username, password, role)
            audit.record(
                session,
                actor="cli",
                action="user.create",
                target=f"user:{user.username}",
                outcome="ok",
                detail={"role": user.role},
            )
    finally:
        ctx.close()
    typer.echo(f"created user {username!r} with role {role}")
    if generated:
        typer.echo(f"password: {password}")


@users_app.command("reset-password")
@friendly_errors
def users_reset_password(username: Annotated[str, typer.Argument(help="Login name.")]) -> None:
    """Set a new password (from stdin, or generated and printed) and end the user's sessions."""
    from sqlalchemy import delete

    from nodewright.db.models import WebSession
    from nodewright.security import accounts, audit
    from nodewright.security.passwords import hash_password

    password, generated = _read_password()
    accounts.validate_password(password)
    ctx = _context()
    try:
        with ctx.database.session(write=True) as session:
            user = accounts.get_user(session, username)
            if user is None:
                fail(f"no user named {username!r}", code=3)
                return
            user.password_hash = hash_password(password)
            session.execute(delete(WebSession).where(WebSession.user_id == user.id))
            audit.record(
                session, actor="cli", action="user.reset_password", target=f"user:{username}", outcome="ok"
            )
    finally:
        ctx.close()
    typer.echo(f"password of {username!r} changed; their sessions were ended")
    if generated:
        typer.echo(f"password: {password}")


@tokens_app.command("create")
@friendly_errors
def tokens_create(
    user: Annotated[str, typer.Option("--user", help="User the token acts as.")],
    name: Annotated[str, typer.Option(help="Label to recognise the token by.")],
) -> None:
    """Create an API token; it is printed once, alone on the last line."""
    from nodewright.security import api_tokens

    ctx = _context()
    try:
        with ctx.database.session(write=True) as session:
            _token, _owner, plaintext = api_tokens.issue_token(session, user, name, actor="cli")
    finally:
        ctx.close()
    typer.echo(f"token {name!r} for {user!r} (shown once, store it now):")
    typer.echo(plaintext)


@tokens_app.command("revoke")
@friendly_errors
def tokens_revoke(token_id: Annotated[int, typer.Argument(help="Token id (see GET /api/tokens).")]) -> None:
    """Revoke an API token."""
    from nodewright.security import api_tokens

    ctx = _context()
    try:
        with ctx.database.session(write=True) as session:
            if api_tokens.revoke_token(session, token_id, actor="cli") is None:
                fail(f"no token with id {token_id}", code=3)
    finally:
        ctx.close()
    typer.echo(f"token {token_id} revoked")


# --- gates -----------------------------------------------------------------------------------------


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

    ctx = _context()
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
    ctx = _context()
    try:
        with ctx.database.session(write=True) as session:
            states = gates.set_gates(
                session, ctx.settings, {name: value.lower() in ("on", "true")}, actor="cli"
            )
            _print_gates([s for s in states if s.name == name])
    finally:
        ctx.close()


# --- secrets ---------------------------------------------------------------------------------------


@secrets_app.command("rotate")
@friendly_errors
def secrets_rotate() -> None:
    """Re-encrypt every stored secret under a new primary key; old keys keep decrypting."""
    from nodewright.db.database import Database
    from nodewright.security.secretbox import rotate_keys

    settings = _installed_settings()
    _migrate(settings, create=False)
    database = Database(settings.resolved_database_url)
    try:
        count, ring = rotate_keys(settings, database)
        from nodewright.security import audit

        with database.session(write=True) as session:
            audit.record(
                session,
                actor="cli",
                action="secrets.rotate",
                target="secret-keys",
                outcome="ok",
                detail={"reencrypted": count, "keys": len(ring.keys)},
            )
    finally:
        database.dispose()
    if ring.from_file:
        typer.echo(f"new primary key added to {ring.source}; {count} secret(s) re-encrypted")
    else:
        typer.echo(f"{count} secret(s) re-encrypted under the first key of NODEWRIGHT_SECRET_KEYS")


@secrets_app.command("generate-key")
def secrets_generate_key() -> None:
    """Print a new random key for NODEWRIGHT_SECRET_KEYS."""
    from nodewright.security.secretbox import generate_key

    typer.echo(generate_key())


# Commands whose implementation lives with its domain.
app.command("worker")(worker_command)
app.command("smoke")(smoke_command)
app.command("sim")(sim_command)


# Commands that keep running (and start children): they must not keep the master keys in their
# start-up environment, which /proc/<pid>/environ shows for the life of the process.
LONG_RUNNING_COMMANDS = frozenset({"serve", "demo", "worker"})


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] in LONG_RUNNING_COMMANDS:
        reexec_without_secret_environment(sys.argv[1:])
    try:
        app()
    except (KeyError, TypeError, IndexError, ValueError) as exc:
        # An answer of a shape this CLI does not know (another server, another version) or a bug:
        # one line, not a traceback (NODEWRIGHT_DEBUG=1 shows it).
        if os.environ.get("NODEWRIGHT_DEBUG"):
            raise
        typer.echo(
            f"error: unexpected failure ({exc.__class__.__name__}): the server's answer was not what this "
            "command expects (is --url a nodewright server of this version?), or this is a bug; "
            "NODEWRIGHT_DEBUG=1 shows the traceback",
            err=True,
        )
        raise SystemExit(1) from None


if __name__ == "__main__":
    main()
