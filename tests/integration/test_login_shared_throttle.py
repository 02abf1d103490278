"""The sign-in throttle is shared by every ``serve`` process through the database: guesses spread
over several processes (behind a load balancer) are counted together. Two app contexts on one
database stand for two processes; each has its own in-process state, as two processes would."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import event, func, select

from nodewright.app import create_app
from nodewright.config import Settings
from nodewright.context import AppContext
from nodewright.db.models import LoginFailure
from nodewright.db.types import utcnow
from nodewright.security.login_failures import SharedLoginThrottle
from nodewright.security.roles import Role
from nodewright.security.throttle import LoginThrottle
from tests.integration.test_dashboard_auth import CSRF_RE, _attempt
from tests.support.apps import TEST_PASSWORD, RoleUser, opened_context


def _shared(ctx: AppContext, **limits: Any) -> SharedLoginThrottle:
    return SharedLoginThrottle(ctx.database, LoginThrottle(**limits), ctx.signer.account_digest)


@pytest.fixture
def other_context(settings: Settings, app_context: AppContext) -> Iterator[AppContext]:
    """A second "process": its own context (throttle, budget, pool) on the same database."""
    with opened_context(settings) as ctx:
        yield ctx


@pytest.fixture
def other_client(settings: Settings, other_context: AppContext) -> Iterator[TestClient]:
    app = create_app(settings, ctx=other_context, start_workers=False)
    with TestClient(app, base_url="http://testserver") as test_client:
        yield test_client


def test_guesses_spread_over_two_processes_are_counted_together(
    client: TestClient,
    other_client: TestClient,
    app_context: AppContext,
    other_context: AppContext,
    role_users: dict[Role, RoleUser],
) -> None:
    limits = {"max_failures": 5, "max_failures_per_address": 4}
    app_context.login_throttle = _shared(app_context, **limits)
    other_context.login_throttle = _shared(other_context, **limits)
    for i in range(2):
        assert _attempt(client, f"made-up-a{i}", "wrong password!").status_code == 401
        assert _attempt(other_client, f"made-up-b{i}", "wrong password!").status_code == 401
    # Four failures from this address in all, two in each process: both refuse now, even the
    # right password (each process alone has seen only two).
    for each in (client, other_client):
        refused = _attempt(each, "operator-user", TEST_PASSWORD)
        assert refused.status_code == 429, refused.text
        assert 0 < int(refused.headers["retry-after"]) <= 900


def test_a_refusal_learned_from_the_database_costs_no_further_query(
    other_context: AppContext, app_context: AppContext
) -> None:
    first = _shared(app_context, max_failures=3)
    second = _shared(other_context, max_failures=3)
    for _ in range(3):
        first.failed("alice", "10.0.0.1")
    statements: list[str] = []

    def count(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        statements.append(statement)

    engine = other_context.database.engine
    event.listen(engine, "before_cursor_execute", count)
    try:
        wait = second.retry_after("Alice", "10.0.0.1")
        asked = len(statements)
        for _ in range(20):
            assert second.retry_after("alice", "10.0.0.1") == wait
    finally:
        event.remove(engine, "before_cursor_execute", count)
    assert wait is not None and 0 < wait <= 900
    assert asked > 0 and len(statements) == asked  # the 20 later refusals asked nothing
    # Another pair from the same address is not refused (the pair's limit was reached, not the
    # address's, whose default is 30).
    assert second.retry_after("bob", "10.0.0.1") is None


def test_a_right_password_clears_the_pair_everywhere_but_not_the_address_or_account(
    other_context: AppContext, app_context: AppContext
) -> None:
    first = _shared(app_context, max_failures=3, max_failures_per_address=5, max_failures_per_account=100)
    second = _shared(other_context, max_failures=3, max_failures_per_address=5, max_failures_per_account=100)
    for _ in range(2):
        first.failed("alice", "10.0.0.1")
    second.succeeded("alice", "10.0.0.1")
    for _ in range(2):
        first.failed("alice", "10.0.0.1")
    # Four failures of the pair, but two since the success: below the pair's limit of 3.
    assert first.retry_after("alice", "10.0.0.1") is None
    assert second.retry_after("alice", "10.0.0.1") is None
    # The address still counts all four: one more and it is refused.
    first.failed("alice", "10.0.0.1")
    assert second.retry_after("carol", "10.0.0.1") is not None


def test_failures_older_than_the_window_stop_counting_and_are_deleted(app_context: AppContext) -> None:
    throttle = _shared(app_context, max_failures=2, window_seconds=60)
    old = utcnow() - dt.timedelta(seconds=61)
    with app_context.database.session(write=True) as session:
        account = app_context.signer.account_digest("alice")
        session.add_all([LoginFailure(account=account, address="10.0.0.1", failed_at=old) for _ in range(5)])
    assert throttle.retry_after("alice", "10.0.0.1") is None
    throttle.failed("alice", "10.0.0.1")
    with app_context.database.session() as session:
        assert session.scalar(select(func.count()).select_from(LoginFailure)) == 1
    throttle.failed("alice", "10.0.0.1")
    wait = throttle.retry_after("alice", "10.0.0.1")
    assert wait is not None and 59 <= wait <= 60


def test_a_sign_in_past_the_shed_asks_the_database_nothing_when_the_budget_is_spent(
    client: TestClient, app_context: AppContext, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The shed middleware let the sign-in through, then the budget was spent (another sign-in took
    the last check): it is refused as busy before the shared counts are read, so a flood arriving
    in bursts costs no query per request."""
    gate = app_context.password_gate
    answers = iter([False])  # the middleware's look: not spent; every later look: spent

    monkeypatch.setattr(gate, "would_refuse", lambda: next(answers, True))
    statements: list[str] = []

    def count(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        if "login_failures" in statement:
            statements.append(statement)

    token = CSRF_RE.search(client.get("/login").text)
    assert token
    event.listen(app_context.database.engine, "before_cursor_execute", count)
    try:
        response = client.post(
            "/login",
            data={"username": "someone", "password": "wrong password!", "csrf_token": token.group(1)},
            follow_redirects=False,
        )
    finally:
        event.remove(app_context.database.engine, "before_cursor_execute", count)
    assert response.status_code == 429 and "busy" in response.text
    assert statements == []
