"""The unauthenticated work budget of ``POST /login``: throttled per address, per account and per
pair; a cap on password checks at once (over it: 429 at once); throttled refusals counted in one
audit row per window; the password check outside any write transaction."""

from __future__ import annotations

import threading

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from nodewright.context import AppContext
from nodewright.db.models import AuditEvent
from nodewright.security.audit import RefusalTally
from nodewright.security.roles import Role
from nodewright.security.throttle import LoginThrottle, PasswordCheckGate
from tests.integration.test_dashboard_auth import _attempt
from tests.support.apps import TEST_PASSWORD, RoleUser


def test_new_user_names_from_one_address_are_throttled(
    client: TestClient, app_context: AppContext, role_users: dict[Role, RoleUser]
) -> None:
    """A flood with a new name every time never repeats a (name, address) pair: the per-address
    count stops it anyway, and then even a real user's right password waits."""
    app_context.login_throttle = LoginThrottle(max_failures=5, max_failures_per_address=4)
    for i in range(4):
        assert _attempt(client, f"made-up-{i}", "wrong password!").status_code == 401
    refused = _attempt(client, "operator-user", TEST_PASSWORD)
    assert refused.status_code == 429
    assert int(refused.headers["retry-after"]) > 0


def test_one_account_is_throttled_across_addresses() -> None:
    throttle = LoginThrottle(max_failures=5, max_failures_per_address=100, max_failures_per_account=3)
    for i in range(3):
        throttle.failed("alice", f"10.0.0.{i}")
    assert throttle.retry_after("alice", "10.9.9.9") is not None  # a fresh address too
    assert throttle.retry_after("bob", "10.9.9.9") is None
    # A success clears the pair only: the account's and the address's counts stay.
    throttle.succeeded("alice", "10.0.0.1")
    assert throttle.retry_after("alice", "10.0.0.1") is not None


def test_password_checks_over_the_cap_get_429_at_once(
    client: TestClient, app_context: AppContext, role_users: dict[Role, RoleUser]
) -> None:
    gate = app_context.password_gate
    held = [gate.try_acquire() for _ in range(gate.limit)]
    assert all(held)
    try:
        busy = _attempt(client, "viewer-user", TEST_PASSWORD)
        assert busy.status_code == 429
        assert busy.headers["retry-after"] == "1"
        assert "busy" in busy.text
    finally:
        for _ in held:
            gate.release()
    # A refusal for lack of capacity is no failed guess: the right password then works.
    assert _attempt(client, "viewer-user", TEST_PASSWORD).status_code == 303


def test_password_checks_have_a_rate_budget() -> None:
    now = [100.0]
    gate = PasswordCheckGate(2, per_second=0.5, clock=lambda: now[0])
    for _ in range(2):  # a burst up to the cap
        assert gate.try_acquire()
        gate.release()
    assert not gate.try_acquire()  # the bucket is empty: refused although no check is running
    assert gate.retry_after() == 2
    now[0] += 2.0
    assert gate.try_acquire()
    gate.release()


def test_over_the_rate_budget_sign_ins_get_429_at_once(
    client: TestClient, app_context: AppContext, role_users: dict[Role, RoleUser]
) -> None:
    app_context.password_gate = PasswordCheckGate(1, per_second=0.001)
    assert _attempt(client, "made-up", "wrong password!").status_code == 401
    refused = _attempt(client, "viewer-user", TEST_PASSWORD)
    assert refused.status_code == 429 and int(refused.headers["retry-after"]) >= 1
    assert "nw_session" not in refused.headers.get("set-cookie", "")


def test_throttled_refusals_are_one_audit_row_with_a_count(
    client: TestClient, app_context: AppContext, role_users: dict[Role, RoleUser]
) -> None:
    app_context.refusal_tally = RefusalTally(window_seconds=900, flush_seconds=0)
    limit = app_context.login_throttle.max_failures
    for _ in range(limit):
        assert _attempt(client, "viewer-user", "wrong password!").status_code == 401
    for _ in range(12):
        assert _attempt(client, "viewer-user", "wrong password!").status_code == 429
    with app_context.database.session() as session:
        rows = list(
            session.scalars(
                select(AuditEvent).where(AuditEvent.action == "login", AuditEvent.outcome == "throttled")
            )
        )
    assert [(r.actor, r.count) for r in rows] == [("anonymous:viewer-user", 12)]


def test_password_check_holds_no_write_lock(
    client: TestClient,
    app_context: AppContext,
    role_users: dict[Role, RoleUser],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """While argon2 runs, another writer must get through: the check reads, closes its
    transaction, then verifies. Before, it ran inside BEGIN IMMEDIATE (SQLite: 'database is locked'
    for everyone else under a sign-in flood). Here a writer commits *during* the verification."""
    import argon2

    database = app_context.database
    wrote = threading.Event()
    original = argon2.PasswordHasher.verify

    def verify_while_someone_writes(self: argon2.PasswordHasher, hash: str, password: str) -> bool:
        def writer() -> None:
            with database.session(write=True) as session:
                session.add(AuditEvent(actor="test", action="t.write", target="x", outcome="ok", detail={}))
            wrote.set()

        thread = threading.Thread(target=writer)
        thread.start()
        # A write transaction held here would keep the writer waiting until the verify returns.
        assert wrote.wait(10), "a writer was blocked while the password was being verified"
        thread.join()
        return bool(original(self, hash, password))

    monkeypatch.setattr(argon2.PasswordHasher, "verify", verify_while_someone_writes)
    assert _attempt(client, "viewer-user", TEST_PASSWORD).status_code == 303
    assert wrote.is_set()


@pytest.mark.parametrize("root_path", ["", "/nw"])
def test_a_spent_budget_refuses_sign_ins_before_reading_them(
    client: TestClient, app_context: AppContext, root_path: str
) -> None:
    """While every password check is taken, ``POST /login`` is answered 429 by the middleware on the
    event loop: the request's body is never awaited (here it never comes), so a flood costs no form
    parse, no CSRF check and no thread-pool hop."""
    import asyncio

    gate = app_context.password_gate
    held = [gate.try_acquire() for _ in range(gate.limit)]
    assert all(held) and gate.would_refuse()
    sent: list[dict[str, object]] = []
    read = asyncio.Event()

    async def receive() -> dict[str, object]:
        read.set()
        await asyncio.Event().wait()  # the body never arrives
        raise AssertionError("unreachable")

    async def send(message: dict[str, object]) -> None:
        sent.append(message)

    scope = {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST",
        "scheme": "http", "path": root_path + "/login", "raw_path": root_path.encode() + b"/login",
        "root_path": root_path, "query_string": b"",
        "headers": [(b"host", b"testserver"), (b"content-type", b"application/x-www-form-urlencoded"),
                    (b"content-length", b"64")],
        "client": ("203.0.113.9", 50000), "server": ("testserver", 80), "app": client.app,
    }  # fmt: skip
    try:
        asyncio.run(asyncio.wait_for(client.app(scope, receive, send), timeout=5))  # type: ignore[arg-type]
    finally:
        for _ in held:
            gate.release()
    assert not read.is_set()
    start = sent[0]
    assert start["status"] == 429
    headers = dict(start["headers"])  # type: ignore[call-overload]
    assert headers[b"retry-after"] == b"1"
    assert headers[b"x-content-type-options"] == b"nosniff"  # the security headers still apply


def test_would_refuse_takes_nothing() -> None:
    now = [0.0]
    gate = PasswordCheckGate(1, per_second=1.0, clock=lambda: now[0])
    assert not gate.would_refuse() and not gate.would_refuse()
    assert gate.try_acquire()
    assert gate.would_refuse()  # the one slot is taken (and the bucket empty)
    gate.release()
    now[0] += 1.0
    assert not gate.would_refuse()  # the slot is free and the bucket refilled


def test_an_unmatched_release_does_not_skew_the_count() -> None:
    gate = PasswordCheckGate(1)
    with pytest.raises(ValueError):
        gate.release()
    assert gate.try_acquire()
    assert gate.would_refuse()  # the one slot is taken: the count agrees with the semaphore


def test_ipv6_clients_are_throttled_per_64() -> None:
    """One IPv6 subscriber has a whole /64: a new address per guess must not escape the count."""
    throttle = LoginThrottle(max_failures=5, max_failures_per_address=3)
    for i in range(3):
        throttle.failed(f"made-up-{i}", f"2001:db8:1:2::{i + 1}")
    assert throttle.retry_after("anyone", "2001:db8:1:2:ffff::9") is not None  # same /64
    assert throttle.retry_after("anyone", "2001:db8:1:3::1") is None  # the next /64
    # IPv4, also written as IPv4-mapped IPv6, stays per address.
    for i in range(3):
        throttle.failed(f"other-{i}", "::ffff:192.0.2.7")
    assert throttle.retry_after("anyone", "192.0.2.7") is not None
    assert throttle.retry_after("anyone", "192.0.2.8") is None


def test_ipv4_clients_behind_nat64_are_counted_per_ipv4_address() -> None:
    from nodewright.security.throttle import address_key

    assert address_key("64:ff9b::203.0.113.5") == "203.0.113.5"
    assert address_key("64:ff9b::203.0.113.6") != address_key("64:ff9b::203.0.113.5")
    assert address_key("2001:db8:1:2::7") == "2001:db8:1:2::/64"
    assert address_key("unknown") == "unknown"
