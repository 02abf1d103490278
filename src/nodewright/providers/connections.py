"""Provider connections as a service: connect, rotate, check, delete, catalog, status for operators.

The API, the dashboard and the CLI all call these functions; none of them sees a token after it
was handed in. A token is validated with real calls *before* anything is written, so a failing
token leaves no row, no secret and no half-made connection behind. Audit entries name the
connection and the token's fingerprint, never the token.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from nodewright.db.database import Database
from nodewright.db.models import ProviderConnection, StoredSecret
from nodewright.db.types import utcnow
from nodewright.providers.base import Catalog, ConnectionInfo
from nodewright.providers.errors import ErrorCode, ProviderError
from nodewright.providers.registry import make_adapter
from nodewright.security import audit
from nodewright.security.secret import Secret
from nodewright.security.secretbox import SecretBox

KINDS = ("hetzner",)
CATALOG_TTL_SECONDS = 300.0
TOKEN_PURPOSE = "provider_token"  # noqa: S105 (a label, not a credential)

# Status values and what an operator reads for each.
STATUS_OK = "ok"
STATUS_UNCHECKED = "unchecked"
STATUS_FROM_CODE = {
    ErrorCode.credentials_invalid: "invalid",
    ErrorCode.permission_denied: "read_only",
    ErrorCode.rate_limited: "rate_limited",
    ErrorCode.provider_unavailable: "unavailable",
}


class ConnectionError_(Exception):
    """A refused connection change: ``field`` names the input, ``status`` the HTTP status."""

    def __init__(self, status: int, code: str, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.field = field


# Other parts (nodes) register a counter of the rows that use a connection; DELETE is refused while
# any counts above zero. A registry keeps providers/ from importing nodes/.
_usage_counters: list[Callable[[Session, int], int]] = []


def register_usage_counter(counter: Callable[[Session, int], int]) -> None:
    if counter not in _usage_counters:
        _usage_counters.append(counter)


def token_fingerprint(token: Secret) -> str:
    """A short, non-reversible name for a token (shown instead of it)."""
    return "sha256:" + hashlib.sha256(token.reveal().encode()).hexdigest()[:16]


def connection_info(box: SecretBox, session: Session, row: ProviderConnection) -> ConnectionInfo:
    return ConnectionInfo(
        id=row.id,
        kind=row.kind,
        token=box.load(session, row.token_secret_id),
        api_endpoint=row.api_endpoint,
        ssh_port=row.ssh_port,
        ssh_user=row.ssh_user,
    )


def status_message(row: ProviderConnection, now: dt.datetime | None = None) -> str:
    """What the operator should read (and do), in one line."""
    now = now or utcnow()
    if row.status == STATUS_OK:
        return "Connected: Read & Write token works."
    if row.status == "invalid":
        return "Token rejected: paste a new token."
    if row.status == "read_only":
        return "Read-only token: create a Read & Write token."
    if row.status == "rate_limited":
        until = row.rate_reset_at.strftime("%H:%M UTC") if row.rate_reset_at else "the limit resets"
        left = int(row.rate_remaining or 0)
        total = f" of {row.rate_limit}" if row.rate_limit else ""
        return f"Rate limited until {until} ({left}{total} left)."
    if row.status == "unavailable":
        since = row.unavailable_since.strftime("%H:%M UTC") if row.unavailable_since else "recently"
        return f"Hetzner unavailable since {since}, retrying."
    if row.status == "error":
        return f"Provider error: {row.last_error_message or 'unknown'}"
    return "Not checked yet."


DEFAULT_ENDPOINTS = {"hetzner": "https://api.hetzner.cloud/v1"}
# The same rules as the API's schema, here so that every entry point (API, dashboard) holds to them.
NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9 ._-]{0,63}")
ENDPOINT_RE = re.compile(r"https?://\S{1,247}")


def check_name(name: str) -> None:
    if not NAME_RE.fullmatch(name):
        raise ConnectionError_(
            422,
            "invalid_request",
            "the name must be 1-64 letters, digits, spaces, dots, dashes or underscores, "
            "starting with a letter or digit",
            "name",
        )


# The form of each kind's API tokens, checked before a token goes anywhere near a request. Hetzner
# Cloud tokens are 64 letters and digits; one of another form cannot work, and one with a character
# outside Latin-1 cannot even be sent (the HTTP client raises UnicodeEncodeError on the header).
TOKEN_FORMS: dict[str, tuple[re.Pattern[str], str]] = {
    "hetzner": (re.compile(r"[A-Za-z0-9]{64}"), "a Hetzner Cloud API token is 64 letters and digits"),
}


def check_token(kind: str, token: Secret) -> None:
    """Refuse a token of the wrong form (422 ``credentials_invalid`` on ``token``), never quoting it."""
    form = TOKEN_FORMS.get(kind)
    if form is not None and not form[0].fullmatch(token.reveal()):
        raise ConnectionError_(
            422,
            ErrorCode.credentials_invalid.value,
            f"this is not a token of that form: {form[1]}; paste the token exactly as the console showed it",
            "token",
        )


def _endpoint_host(url: str) -> tuple[str, str | None]:
    try:
        parts = urlsplit(url)
        return parts.scheme.lower(), parts.hostname
    except ValueError:  # e.g. an unclosed IPv6 bracket
        return "", None


def check_endpoint(kind: str, endpoint: str | None, allowed: tuple[str, ...] | None) -> None:
    """Refuse an endpoint (or the provider's default one) outside ``NODEWRIGHT_PROVIDER_ENDPOINTS``.

    A prefix match alone is not enough: ``http://127.0.0.1:@evil.example/`` starts with
    ``http://127.0.0.1:`` but names the host ``evil.example`` (what precedes ``@`` is a user name),
    and ``https://api.hetzner.cloud.evil.example`` starts with ``https://api.hetzner.cloud``. So an
    endpoint may carry no user information, and it must name the same scheme and host as the prefix
    it matches."""
    effective = endpoint or DEFAULT_ENDPOINTS.get(kind, "")
    if not ENDPOINT_RE.fullmatch(effective) or not effective.isascii() or not effective.isprintable():
        raise ConnectionError_(
            422,
            "invalid_request",
            "the API endpoint must be an http(s) URL of at most 255 characters, without spaces",
            "api_endpoint",
        )
    try:
        netloc = urlsplit(effective).netloc
    except ValueError:
        netloc = ""
    if "@" in netloc or "\\" in netloc or _endpoint_host(effective)[1] is None:
        raise ConnectionError_(
            422,
            "invalid_request",
            "the API endpoint must be an http(s) URL with a host and no user name or password",
            "api_endpoint",
        )
    if allowed is None:
        return
    scheme, host = _endpoint_host(effective)
    for prefix in allowed:
        prefix_scheme, prefix_host = _endpoint_host(prefix)
        if (
            effective.startswith(prefix)
            and scheme == prefix_scheme
            and (prefix_host is None or host == prefix_host)
        ):
            return
    raise ConnectionError_(
        422,
        "invalid_request",
        f"the API endpoint {effective} is not allowed here (NODEWRIGHT_PROVIDER_ENDPOINTS allows: "
        f"{', '.join(allowed)})",
        "api_endpoint",
    )


def _validate(kind: str, token: Secret, api_endpoint: str | None, ssh_port: int, ssh_user: str) -> None:
    adapter = make_adapter(ConnectionInfo(0, kind, token, api_endpoint, ssh_port, ssh_user))
    try:
        adapter.validate()
    finally:
        adapter.close()


def _refusal(error: ProviderError) -> ConnectionError_:
    return ConnectionError_(422, error.code.value, f"{error.message} {error.hint or ''}".strip(), "token")


def create_connection(
    database: Database,
    box: SecretBox,
    *,
    actor: str,
    kind: str,
    name: str,
    token: Secret,
    api_endpoint: str | None,
    ssh_port: int = 22,
    ssh_user: str = "root",
    allowed_endpoints: tuple[str, ...] | None = None,
) -> ProviderConnection:
    if kind not in KINDS:
        raise ConnectionError_(422, "invalid_request", f"unknown provider kind {kind!r}", "kind")
    check_name(name)
    check_endpoint(kind, api_endpoint, allowed_endpoints)
    check_token(kind, token)
    with database.session() as session:
        if session.scalar(select(ProviderConnection.id).where(ProviderConnection.name == name)) is not None:
            raise ConnectionError_(409, "conflict", f"a provider connection named {name!r} exists", "name")
    try:
        _validate(kind, token, api_endpoint, ssh_port, ssh_user)
    except ProviderError as error:
        with database.session(write=True) as session:
            audit.record(
                session,
                actor=actor,
                action="provider.create",
                target=f"provider:{name}",
                outcome="refused",
                detail={"code": error.code.value, "token_fingerprint": token_fingerprint(token)},
            )
        raise _refusal(error) from None
    now = utcnow()
    with database.session(write=True) as session:
        secret = box.store(session, TOKEN_PURPOSE, token)
        row = ProviderConnection(
            kind=kind,
            name=name,
            token_secret_id=secret.id,
            token_fingerprint=token_fingerprint(token),
            api_endpoint=api_endpoint,
            ssh_port=ssh_port,
            ssh_user=ssh_user,
            status=STATUS_OK,
            last_checked_at=now,
            created_by=actor[:128],
        )
        session.add(row)
        session.flush()
        audit.record(
            session,
            actor=actor,
            action="provider.create",
            target=f"provider:{row.id}",
            outcome="ok",
            detail={"name": name, "kind": kind, "token_fingerprint": row.token_fingerprint},
        )
        session.expunge(row)
    return row


def get_connection(database: Database, connection_id: int) -> ProviderConnection | None:
    with database.session() as session:
        row = session.get(ProviderConnection, connection_id)
        if row is not None:
            session.expunge(row)
        return row


def list_connections(database: Database) -> list[ProviderConnection]:
    with database.session() as session:
        rows = list(session.scalars(select(ProviderConnection).order_by(ProviderConnection.id)))
        for row in rows:
            session.expunge(row)
        return rows


def _require(session: Session, connection_id: int) -> ProviderConnection:
    row = session.get(ProviderConnection, connection_id)
    if row is None:
        raise ConnectionError_(404, "not_found", f"no provider connection {connection_id}")
    return row


def update_connection(
    database: Database,
    box: SecretBox,
    connection_id: int,
    *,
    actor: str,
    token: Secret | None = None,
    name: str | None = None,
    api_endpoint: str | None = None,
    ssh_port: int | None = None,
    ssh_user: str | None = None,
    allowed_endpoints: tuple[str, ...] | None = None,
) -> ProviderConnection:
    """Rotate the token (validated first, like a new one) and/or change the other settings."""
    with database.session() as session:
        current = _require(session, connection_id)
        kind, endpoint = current.kind, current.api_endpoint
        if token is not None:
            check_token(kind, token)
        if api_endpoint is not None or token is not None:
            # Only what will be sent somewhere is checked: a new endpoint, or a new token that goes
            # to the stored one. Renaming a connection made before the allowlist narrowed stays possible.
            check_endpoint(kind, api_endpoint if api_endpoint is not None else endpoint, allowed_endpoints)
        port, user = current.ssh_port, current.ssh_user
        if name is not None:
            check_name(name)
        if name is not None and name != current.name:
            taken = session.scalar(select(ProviderConnection.id).where(ProviderConnection.name == name))
            if taken is not None:
                raise ConnectionError_(
                    409, "conflict", f"a provider connection named {name!r} exists", "name"
                )
    new_endpoint = api_endpoint if api_endpoint is not None else endpoint
    if new_endpoint != endpoint and token is None:
        # The stored token goes only to the endpoint it was handed in for: sending it to a new one
        # would let whoever may edit the connection collect it at a URL of their choosing.
        raise ConnectionError_(
            422,
            "invalid_request",
            "changing the API endpoint needs the token again: paste it with the new endpoint",
            "token",
        )
    if token is not None:
        try:
            _validate(kind, token, new_endpoint, ssh_port or port, ssh_user or user)
        except ProviderError as error:
            with database.session(write=True) as session:
                audit.record(
                    session,
                    actor=actor,
                    action="provider.update",
                    target=f"provider:{connection_id}",
                    outcome="refused",
                    detail={"code": error.code.value, "token_fingerprint": token_fingerprint(token)},
                )
            raise _refusal(error) from None
    with database.session(write=True) as session:
        row = _require(session, connection_id)
        changed: dict[str, Any] = {}
        if token is not None:
            box.replace(session, row.token_secret_id, token)
            row.token_fingerprint = token_fingerprint(token)
            _mark_ok(row, utcnow())
            changed["token_fingerprint"] = row.token_fingerprint
        if name is not None:
            row.name = name
            changed["name"] = name
        if api_endpoint is not None:
            row.api_endpoint = api_endpoint
            changed["api_endpoint"] = api_endpoint
        if ssh_port is not None:
            row.ssh_port = ssh_port
            changed["ssh_port"] = ssh_port
        if ssh_user is not None:
            row.ssh_user = ssh_user
            changed["ssh_user"] = ssh_user
        row.updated_at = utcnow()
        audit.record(
            session,
            actor=actor,
            action="provider.update",
            target=f"provider:{row.id}",
            outcome="ok",
            detail=changed,
        )
        session.flush()
        session.expunge(row)
    return row


def delete_connection(database: Database, connection_id: int, *, actor: str) -> None:
    with database.session(write=True) as session:
        row = _require(session, connection_id)
        in_use = sum(counter(session, connection_id) for counter in _usage_counters)
        if in_use:
            raise ConnectionError_(
                409,
                "conflict",
                f"{in_use} node(s) still use provider connection {connection_id}: release them first",
            )
        secret_ids = [row.token_secret_id, row.client_key_secret_id]
        name = row.name
        session.delete(row)
        session.flush()
        for secret_id in secret_ids:
            if secret_id is not None:
                secret = session.get(StoredSecret, secret_id)
                if secret is not None:
                    session.delete(secret)
        audit.record(
            session,
            actor=actor,
            action="provider.delete",
            target=f"provider:{connection_id}",
            outcome="ok",
            detail={"name": name},
        )


def _mark_ok(row: ProviderConnection, now: dt.datetime) -> None:
    row.status = STATUS_OK
    row.last_checked_at = now
    row.unavailable_since = None
    row.last_error_code = None
    row.last_error_message = None
    row.last_error_hint = None
    row.last_error_retryable = None


def record_outcome(database: Database, connection_id: int, error: ProviderError | None) -> None:
    """Fold the outcome of a provider call (a check, an acquisition) into the connection's status."""
    now = utcnow()
    with database.session(write=True) as session:
        row = session.get(ProviderConnection, connection_id)
        if row is None:
            return
        if error is None:
            _mark_ok(row, now)
            return
        row.last_checked_at = now
        status = STATUS_FROM_CODE.get(error.code)
        if status is None:
            # Errors about one request (capacity, a bad combination) say nothing about the connection.
            row.last_error_code = error.code.value
            row.last_error_message = error.message
            row.last_error_hint = error.hint
            row.last_error_retryable = error.retryable
            return
        if status == "unavailable" and row.status != "unavailable":
            row.unavailable_since = now
        if status == "rate_limited":
            row.rate_remaining = 0.0
            if error.retry_after is not None and row.rate_reset_at is None:
                row.rate_reset_at = now + dt.timedelta(seconds=error.retry_after)
        row.status = status
        row.last_error_code = error.code.value
        row.last_error_message = error.message
        row.last_error_hint = error.hint
        row.last_error_retryable = error.retryable


def check_connection(
    database: Database, box: SecretBox, connection_id: int, *, actor: str
) -> ProviderConnection:
    with database.session() as session:
        info = connection_info(box, session, _require(session, connection_id))
    outcome: ProviderError | None = None
    adapter = make_adapter(info, database=database)
    try:
        adapter.validate()
    except ProviderError as error:
        outcome = error
    finally:
        adapter.close()
    record_outcome(database, connection_id, outcome)
    with database.session(write=True) as session:
        audit.record(
            session,
            actor=actor,
            action="provider.check",
            target=f"provider:{connection_id}",
            outcome="ok" if outcome is None else "failed",
            detail={} if outcome is None else {"code": outcome.code.value},
        )
    row = get_connection(database, connection_id)
    assert row is not None
    return row


# --- catalog ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CatalogView:
    catalog: Catalog
    fetched_at: dt.datetime
    stale: bool
    error: ProviderError | None = None


_catalog_lock = threading.Lock()
# Keyed by (database, connection): ids repeat across databases (tests, several installations).
_catalog_cache: dict[tuple[str, int], tuple[float, CatalogView]] = {}
_fetch_locks: dict[tuple[str, int], threading.Lock] = {}


def _cache_key(database: Database, connection_id: int) -> tuple[str, int]:
    return (database.engine.url.render_as_string(hide_password=True), connection_id)


def get_catalog(
    database: Database, box: SecretBox, connection_id: int, *, max_age: float = CATALOG_TTL_SECONDS
) -> CatalogView:
    """The catalog, fresh within ``max_age``; while the provider fails, the last good copy, stale.
    One fetch per connection at a time: fifty acquisitions starting together share it."""
    key = _cache_key(database, connection_id)
    with _catalog_lock:
        fetch_lock = _fetch_locks.setdefault(key, threading.Lock())
    with fetch_lock:
        with _catalog_lock:
            cached = _catalog_cache.get(key)
        if cached is not None and time.monotonic() - cached[0] < max_age:
            return cached[1]
        view = _fetch_catalog(database, box, connection_id)
        if not view.stale:
            with _catalog_lock:
                _catalog_cache[key] = (time.monotonic(), view)
        return view


def _fetch_catalog(database: Database, box: SecretBox, connection_id: int) -> CatalogView:
    with database.session() as session:
        row = _require(session, connection_id)
        info = connection_info(box, session, row)
        stored = (row.catalog, row.catalog_fetched_at)
    adapter = make_adapter(info, database=database)
    try:
        catalog = adapter.catalog()
    except ProviderError as error:
        record_outcome(database, connection_id, error)
        if stored[0] is not None and stored[1] is not None:
            return CatalogView(Catalog.from_dict(stored[0]), stored[1], stale=True, error=error)
        raise
    finally:
        adapter.close()
    now = utcnow()
    with database.session(write=True) as session:
        row = _require(session, connection_id)
        row.catalog = catalog.to_dict()
        row.catalog_fetched_at = now
    return CatalogView(catalog, now, stale=False)


def forget_catalog(database: Database, connection_id: int) -> None:
    with _catalog_lock:
        _catalog_cache.pop(_cache_key(database, connection_id), None)


def count_connections(session: Session) -> int:
    return int(session.scalar(select(func.count(ProviderConnection.id))) or 0)
