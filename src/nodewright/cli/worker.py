"""``nodewright worker``: a standalone job worker pool, for scaling out on PostgreSQL."""

from __future__ import annotations

from typing import Annotated

import typer


def worker_command(
    concurrency: Annotated[int, typer.Option("--concurrency", "-c", help="Jobs run at once.", min=1)] = 2,
    mode: Annotated[
        str | None, typer.Option(help="thread (default) or process (one child process per job).")
    ] = None,
    shutdown_timeout: Annotated[
        float, typer.Option(help="Seconds running jobs get to finish on SIGTERM before being handed back.")
    ] = 30.0,
) -> None:
    """Run a job worker pool until SIGTERM/SIGINT (several may run on several machines)."""
    from sqlalchemy.exc import OperationalError

    from nodewright.config import ConfigError, load_settings, scrub_secret_environment
    from nodewright.context import AppContext
    from nodewright.db import migrate
    from nodewright.jobs.worker import MODES, WorkerPool
    from nodewright.logging_setup import configure_logging
    from nodewright.security.secretbox import SecretKeyError

    try:
        settings = load_settings()
    except ConfigError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    if mode is not None and mode not in MODES:
        typer.echo(f"error: --mode must be one of {', '.join(MODES)}", err=True)
        raise typer.Exit(2)
    configure_logging(settings.log_level)
    try:
        # Never create keys here: a worker on another machine must use the installation's keys.
        ctx = AppContext.open(settings, create_keys=False)
    except (SecretKeyError, OperationalError) as exc:
        typer.echo(f"error: {str(exc).splitlines()[0]}", err=True)
        raise typer.Exit(2) from None
    # The key ring is open: no child (process-mode job, ssh, ansible-runner) may inherit the keys.
    scrub_secret_environment()
    try:
        if not migrate.is_at_head(ctx.database.engine):
            typer.echo("error: the database schema is not current; run `nodewright db upgrade`", err=True)
            raise typer.Exit(2)
        pool = WorkerPool(ctx.database, settings, concurrency=concurrency, mode=mode or settings.worker_mode)
        typer.echo(f"nodewright worker {pool.worker_id}: {pool.mode} x{pool.concurrency}")
        pool.run_forever(shutdown_timeout=shutdown_timeout)
    finally:
        ctx.close()
