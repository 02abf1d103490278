"""Shared fixtures. ``db_url`` runs a test on SQLite and, when NODEWRIGHT_TEST_POSTGRES_URL is set,
again on PostgreSQL, each time on its own freshly migrated database."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from nodewright.app import create_app
from nodewright.config import Settings
from nodewright.context import AppContext
from nodewright.db.database import Database
from nodewright.security.roles import Role
from tests.support.apps import RoleUser, create_role_users, make_settings, opened_context
from tests.support.databases import (
    PostgresTemplates,
    build_sqlite_template,
    clone_sqlite,
    postgres_admin_url,
)
from tests.support.system import in_ci

DB_KINDS = ["sqlite", "postgresql"]


def _worker_tempdir() -> None:
    """Under xdist each test process gets a temp dir of its own (TMPDIR too, for the processes it
    starts): the scans of "what a run left behind" (ssh masters in nw-cp-*, files in nw-*) then
    see this process's runs only, never the other worker's, which come and go meanwhile."""
    worker = os.environ.get("PYTEST_XDIST_WORKER")
    if not worker:
        return
    own = Path(tempfile.gettempdir()) / f"nwt-{worker}-{os.getpid()}"  # short: unix socket paths
    own.mkdir(mode=0o700, exist_ok=True)
    os.environ["TMPDIR"] = str(own)
    tempfile.tempdir = str(own)
    _OWN_TEMPDIRS.append(own)


_OWN_TEMPDIRS: list[Path] = []


def pytest_unconfigure(config: pytest.Config) -> None:
    for own in _OWN_TEMPDIRS:
        shutil.rmtree(own, ignore_errors=True)


def pytest_configure(config: pytest.Config) -> None:
    _worker_tempdir()
    # The CLI's saved contexts (`nodewright login`) of whoever runs the tests must not steer the
    # commands the tests run: none unless a test makes its own.
    os.environ["NODEWRIGHT_CLI_CONFIG"] = os.path.join(
        tempfile.gettempdir(), "nwt-no-contexts", "contexts.json"
    )
    os.environ.pop("NODEWRIGHT_CONTEXT", None)
    config.addinivalue_line(
        "markers",
        "db_only(kind, reason): run this database test on one database only (the other one is "
        "deselected, not skipped: it is not a missing part)",
    )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    keep: list[pytest.Item] = []
    dropped: list[pytest.Item] = []
    for item in items:
        marker = item.get_closest_marker("db_only")
        callspec = getattr(item, "callspec", None)
        kind = callspec.params.get("db_kind") if callspec is not None else None
        if marker is not None and kind is not None and kind != marker.args[0]:
            dropped.append(item)
        else:
            keep.append(item)
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        items[:] = keep


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_sqlite_template(tmp_path_factory.mktemp("sqlite-template"))


@pytest.fixture(scope="session")
def postgres_templates() -> Iterator[PostgresTemplates | None]:
    admin = postgres_admin_url()
    if admin is None:
        yield None
        return
    templates = PostgresTemplates(admin)
    templates.create_template()
    try:
        yield templates
    finally:
        templates.close()


@pytest.fixture(params=DB_KINDS)
def db_kind(request: pytest.FixtureRequest) -> str:
    kind: str = request.param
    if kind == "postgresql" and postgres_admin_url() is None:
        if in_ci():
            pytest.fail("NODEWRIGHT_TEST_POSTGRES_URL must be set in CI")
        pytest.skip("PostgreSQL run needs NODEWRIGHT_TEST_POSTGRES_URL")
    return kind


@pytest.fixture
def db_url(
    db_kind: str,
    tmp_path: Path,
    sqlite_template: Path,
    postgres_templates: PostgresTemplates | None,
) -> Iterator[str]:
    """URL of an isolated database migrated to head."""
    if db_kind == "sqlite":
        yield clone_sqlite(sqlite_template, tmp_path)
        return
    assert postgres_templates is not None
    name, url = postgres_templates.clone()
    try:
        yield url
    finally:
        postgres_templates.drop(name)


@pytest.fixture
def database(db_url: str) -> Iterator[Database]:
    db = Database(db_url)
    try:
        yield db
    finally:
        db.dispose()


# --- the app --------------------------------------------------------------------------------------


@pytest.fixture
def settings(db_url: str, tmp_path: Path) -> Settings:
    return make_settings(db_url, tmp_path / "data")


@pytest.fixture
def app_context(settings: Settings) -> Iterator[AppContext]:
    with opened_context(settings) as ctx:
        yield ctx


@pytest.fixture
def role_users(app_context: AppContext) -> dict[Role, RoleUser]:
    """One user per role, each with an API token (``.headers`` gives the Authorization header)."""
    return create_role_users(app_context)


@pytest.fixture
def client(settings: Settings, app_context: AppContext) -> Iterator[TestClient]:
    """A TestClient on the real app (no embedded workers) over the test database."""
    app = create_app(settings, ctx=app_context, start_workers=False)
    with TestClient(app, base_url="http://testserver") as test_client:
        yield test_client
