"""What the local commands (they open the installation's database themselves, on its machine) share:
its settings, its schema, an application context. Only ``serve``, ``demo``, ``worker`` and
``db upgrade`` may create an installation; every other local command refuses, naming where it looked
(``installation.require``)."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from nodewright.config import Settings
    from nodewright.context import AppContext


def migrate_schema(settings: Settings, *, create: bool = True) -> None:
    """Bring the schema to the code's. ``create=False`` (local commands): only an installation that
    exists is upgraded; a database without nodewright's schema is refused, and no directory made."""
    from sqlalchemy.engine import make_url

    from nodewright.db import migrate
    from nodewright.db.engine import make_engine
    from nodewright.installation import InstallationMissing

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


def installed_settings() -> Settings:
    """The settings of an installation that exists: local commands other than serve, demo, worker
    and db upgrade never create one."""
    from nodewright import installation
    from nodewright.config import load_settings

    settings = load_settings()
    installation.require(settings)
    return settings


def open_context() -> AppContext:
    from nodewright.context import AppContext

    settings = installed_settings()
    migrate_schema(settings, create=False)
    return AppContext.open(settings, create_data_dir=False)


@contextmanager
def local_session(*, write: bool = False) -> Iterator[tuple[AppContext, Session]]:
    """The installation's context and one database session (committed when ``write``), closed after."""
    ctx = open_context()
    try:
        with ctx.database.session(write=write) as session:
            yield ctx, session
    finally:
        ctx.close()


def read_password() -> tuple[str, bool]:
    """The password from stdin when one is piped in, else a generated one (second value True)."""
    from nodewright.security.passwords import generate_password

    if not sys.stdin.isatty():
        piped = sys.stdin.readline().rstrip("\r\n")
        if piped:
            return piped, False
    return generate_password(), True
