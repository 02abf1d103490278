"""``nodewright secrets ...``: the encryption keys of secrets at rest (local)."""

from __future__ import annotations

import typer

from nodewright.cli.errors import friendly_errors
from nodewright.cli.local import installed_settings, migrate_schema

secrets_app = typer.Typer(help="Encryption keys for secrets at rest.", no_args_is_help=True)


@secrets_app.command("rotate")
@friendly_errors
def secrets_rotate() -> None:
    """Re-encrypt every stored secret under a new primary key; old keys keep decrypting."""
    from nodewright.db.database import Database
    from nodewright.security.secretbox import rotate_keys

    settings = installed_settings()
    migrate_schema(settings, create=False)
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
