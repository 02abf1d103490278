"""How every command ends when something is wrong: one line (the taxonomy code, the message and the
hint) on stderr and a documented exit code (docs/cli.md), never a traceback.

1 failed, 2 usage (the command or its input is wrong), 3 not found, 4 refused (authentication,
permission, a conflict, a closed gate, a rate limit, another user's installation), 5 unreachable (the
server or the database cannot be reached, or what answered is not nodewright).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, NoReturn, TypeVar

import typer

from nodewright.cli.client import ApiError
from nodewright.security.text import clean

EXIT_FAILED, EXIT_USAGE, EXIT_NOT_FOUND, EXIT_REFUSED, EXIT_UNREACHABLE = 1, 2, 3, 4, 5
F = TypeVar("F", bound=Callable[..., Any])


def say(text: str, *, err: bool = False) -> None:
    """Every line the API commands write goes through here: whatever the server sent, no control
    character but newline and tab reaches the terminal raw (``security.text``)."""
    typer.echo(clean(text), err=err)


def fail(message: str, code: int = EXIT_USAGE) -> NoReturn:
    say(f"error: {message}", err=True)
    raise typer.Exit(code)


def die(exc: ApiError) -> NoReturn:
    """Print the problem (its taxonomy code, message and hint) and exit with the code that says
    what kind of failure it was (``exit_code``)."""
    say(f"error [{exc.code}]: {exc.message}" if exc.code else f"error: {exc.message}", err=True)
    raise typer.Exit(exit_code(exc))


def exit_code(exc: ApiError) -> int:
    """The exit code of an API failure (see the module's docstring)."""
    if exc.usage:
        return EXIT_USAGE
    if exc.code == "wait_timeout":  # --wait gave up; the job goes on
        return EXIT_FAILED
    if exc.status is None:
        return EXIT_UNREACHABLE
    if exc.foreign:  # not nodewright's answer (a proxy, a wrong --url): nodewright was not reached
        return EXIT_UNREACHABLE
    if exc.status == 404:
        return EXIT_NOT_FOUND
    if exc.status in (401, 403, 409, 423, 429) or exc.code == "feature_disabled":
        return EXIT_REFUSED
    if 400 <= exc.status < 500:
        return EXIT_USAGE
    if exc.status in (502, 503, 504):
        return EXIT_UNREACHABLE
    return EXIT_FAILED


def friendly_errors(func: F) -> F:
    """Local commands: the errors an operator can fix become a message and their exit code. (The
    classes are imported only when something failed: API commands never pay for the database's.)"""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except Exception as exc:
            _fail_for(exc)
            raise

    return wrapper  # type: ignore[return-value]


def _fail_for(exc: Exception) -> None:
    """Exit with the message and code of an error an operator can fix; return for any other."""
    from sqlalchemy.exc import ArgumentError, OperationalError

    from nodewright.cli.ports import PortUnavailable
    from nodewright.config import ConfigError
    from nodewright.installation import InstallationMissing, InstallationUnreadable
    from nodewright.security.accounts import AccountError
    from nodewright.security.secretbox import SecretKeyError

    if isinstance(exc, ConfigError | PortUnavailable):
        fail(str(exc))
    if isinstance(exc, SecretKeyError | InstallationUnreadable):
        fail(str(exc), code=EXIT_REFUSED)
    if isinstance(exc, InstallationMissing):
        fail(str(exc), code=EXIT_NOT_FOUND)
    if isinstance(exc, AccountError):
        code = {"not_found": EXIT_NOT_FOUND, "conflict": EXIT_REFUSED}.get(exc.kind, EXIT_USAGE)
        fail(f"{exc.field}: {exc.message}", code=code)
    if isinstance(exc, ArgumentError):
        fail(f"NODEWRIGHT_DATABASE_URL is not a database URL: {exc}")
    if isinstance(exc, OperationalError):
        reason = (str(exc.orig).strip().splitlines() or ["unknown"])[0]
        fail(f"database unavailable: {exc.orig.__class__.__name__}: {reason}", code=EXIT_UNREACHABLE)
