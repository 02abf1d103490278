"""What a running app (or CLI command) holds: settings, database, secret box, cookie signer."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TypeVar

from sqlalchemy.exc import IntegrityError

from nodewright.config import Settings
from nodewright.db.database import Database
from nodewright.security.accounts import KnownUsernames
from nodewright.security.audit import RefusalTally
from nodewright.security.login_failures import SharedLoginThrottle
from nodewright.security.secretbox import (
    SecretBox,
    SecretKeyError,
    database_has_secrets,
    key_file_path,
    load_key_ring,
)
from nodewright.security.throttle import LoginThrottle, PasswordCheckGate
from nodewright.security.web_sessions import SessionSigner, load_signing_key

T = TypeVar("T")


@dataclass
class AppContext:
    settings: Settings
    database: Database
    box: SecretBox
    signer: SessionSigner
    login_throttle: LoginThrottle | SharedLoginThrottle = field(default_factory=LoginThrottle)
    password_gate: PasswordCheckGate = field(default_factory=lambda: PasswordCheckGate(2))
    refusal_tally: RefusalTally = field(default_factory=lambda: RefusalTally(window_seconds=900.0))
    known_usernames: KnownUsernames = field(init=False)

    def __post_init__(self) -> None:
        self.known_usernames = KnownUsernames(self.database)

    @classmethod
    def open(
        cls, settings: Settings, *, create_keys: bool = True, create_data_dir: bool = True
    ) -> AppContext:
        """Open the database and the key ring; raise ``SecretKeyError`` when the keys do not fit.
        ``create_data_dir=False``: a local command on an existing installation (``installation``)."""
        if create_data_dir:
            settings.ensure_data_dir()
        database = Database(settings.resolved_database_url)
        try:
            if (
                create_keys
                and settings.secret_keys is None
                and not key_file_path(settings).exists()
                and database_has_secrets(database)
            ):
                # Creating a fresh key here would only lead to "keys do not match" (and leave a
                # useless key file behind): say what is actually wrong.
                raise SecretKeyError(
                    f"the key file {key_file_path(settings)} is missing, but this database holds "
                    "secrets encrypted with it. Restore the file (or set NODEWRIGHT_SECRET_KEYS); "
                    "stored secrets cannot be read without it."
                )
            box = SecretBox(load_key_ring(settings, create=create_keys))
            signing_key = _initialise(database, box)
        except BaseException:
            database.dispose()
            raise
        from nodewright import runtime

        runtime.install(settings, box)
        signer = SessionSigner(signing_key, settings.session_max_age_seconds)
        return cls(
            settings,
            database,
            box,
            signer,
            login_throttle=SharedLoginThrottle(
                database,
                LoginThrottle(
                    max_failures=settings.login_max_failures,
                    max_failures_per_address=settings.login_max_failures_per_address,
                    max_failures_per_account=settings.login_max_failures_per_account,
                    window_seconds=settings.login_throttle_window_seconds,
                ),
                signer.account_digest,
            ),
            password_gate=PasswordCheckGate(
                settings.max_concurrent_password_checks, settings.password_checks_per_second
            ),
            refusal_tally=RefusalTally(window_seconds=settings.login_throttle_window_seconds),
        )

    def close(self) -> None:
        self.database.dispose()


def _initialise(database: Database, box: SecretBox) -> str:
    """Check (or store, on first start) the key check value, and load (or make) the cookie key.

    Several processes may start at once on a fresh PostgreSQL database: all see no row and insert,
    and all but one fail with a unique violation. Those try again, and then find the winner's rows.
    """
    _once_more_on_conflict(lambda: box.verify_or_initialise(database))

    def signing_key() -> str:
        with database.session(write=True) as session:
            return load_signing_key(session, box)

    return _once_more_on_conflict(signing_key)


def _once_more_on_conflict(step: Callable[[], T]) -> T:
    try:
        return step()
    except IntegrityError:
        return step()  # the conflicting row is committed now: this run reads it
