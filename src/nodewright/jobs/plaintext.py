"""Refuse to store a known secret in job args, step outputs or results.

Those columns cannot be redacted like events (a resumed attempt needs their exact values), so a secret
must never enter them: a handler stores the id of an encrypted secret instead. The check compares the
value with its redacted form, so it knows every secret the process has registered.
"""

from __future__ import annotations

from typing import Any

from nodewright.jobs.errors import TerminalError
from nodewright.security.redaction import redact


class SecretInJobData(TerminalError):
    """A handler tried to persist a secret in plaintext: a bug no retry can fix."""

    def __init__(self, where: str) -> None:
        super().__init__(
            "internal_error",
            f"refused to store a secret in plaintext in {where}",
            hint="store the id of an encrypted secret, never the secret itself",
        )


def contains_secret(value: Any) -> bool:
    return bool(redact(value) != value)


def refuse_secrets(value: Any, where: str) -> None:
    if contains_secret(value):
        raise SecretInJobData(where)
