"""The ``nodewright`` command: the Typer application with every command group registered.

Thin: each command calls a service (local commands) or the HTTP API (the rest), and every error the
operator can fix becomes a one-line message and a documented exit code (``cli.errors``), never a
traceback.
"""

from __future__ import annotations

import os
import sys

import typer

from nodewright.cli import ssh, watching  # noqa: F401  (register `nodes ssh`, `nodes health`, `nodes brakes`)
from nodewright.cli.accounts import tokens_app, users_app
from nodewright.cli.audit import audit_command
from nodewright.cli.backup import db_backup
from nodewright.cli.demo import demo
from nodewright.cli.gates import gates_app
from nodewright.cli.jobs import jobs_app
from nodewright.cli.login import context_app, login
from nodewright.cli.maintenance import maintenance_app
from nodewright.cli.nodes import nodes_app
from nodewright.cli.orphans import orphans_app
from nodewright.cli.providers import providers_app
from nodewright.cli.secrets import secrets_app
from nodewright.cli.server import db_app, serve
from nodewright.cli.smoke import smoke_command
from nodewright.cli.webhooks import webhooks_app
from nodewright.cli.worker import worker_command
from nodewright.sim.cli import sim_command

app = typer.Typer(
    name="nodewright",
    help="Control plane for server fleets: acquire nodes from cloud providers, provision and watch them.",
    no_args_is_help=True,
    add_completion=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)
app.command()(login)
app.add_typer(context_app, name="context")
app.command()(serve)
app.command()(demo)
app.command("worker")(worker_command)
app.command("smoke")(smoke_command)
app.command("sim")(sim_command)
db_app.command("backup")(db_backup)
app.add_typer(db_app, name="db")
app.add_typer(users_app, name="users")
app.add_typer(tokens_app, name="tokens")
app.add_typer(secrets_app, name="secrets")
app.add_typer(gates_app, name="gates")
app.add_typer(providers_app, name="providers")
app.add_typer(nodes_app, name="nodes")
app.add_typer(jobs_app, name="jobs")
app.add_typer(orphans_app, name="orphans")
app.command("audit")(audit_command)
app.add_typer(maintenance_app, name="maintenance")
app.add_typer(webhooks_app, name="webhooks")


# Commands that keep running (and start children): they must not keep the master keys in their
# start-up environment, which /proc/<pid>/environ shows for the life of the process.
LONG_RUNNING_COMMANDS = frozenset({"serve", "demo", "worker"})


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] in LONG_RUNNING_COMMANDS:
        from nodewright.config import reexec_without_secret_environment

        reexec_without_secret_environment(sys.argv[1:])
    try:
        app()
    except (
        KeyError,
        TypeError,
        IndexError,
        ValueError,
        AttributeError,
        ArithmeticError,
        RecursionError,
    ) as exc:
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
