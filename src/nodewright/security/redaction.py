"""Process-wide redaction of known secret values.

Every secret that enters the process in plaintext (a provider token being validated, a decrypted
secret, an SSH private key) is registered here, so any string that later heads for a log line, a job
event, an API response or an Ansible artifact can be scrubbed of it, wherever it was copied to.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

REDACTED = "[REDACTED]"
# Short values would redact ordinary words; real secrets (tokens, keys) are far longer.
MIN_SECRET_LENGTH = 8

_lock = threading.Lock()
_secrets: frozenset[str] = frozenset()


def register_secret(value: str) -> None:
    """Remember ``value`` so that :func:`redact` scrubs it from now on."""
    global _secrets
    if not value or len(value) < MIN_SECRET_LENGTH:
        return
    with _lock:
        if value not in _secrets:
            # Longest first at scrub time, so a secret containing another is removed whole.
            _secrets = frozenset((*_secrets, value))


def registered_count() -> int:
    return len(_secrets)


def redact_text(text: str) -> str:
    secrets = _secrets
    if not secrets:
        return text
    for secret in sorted(secrets, key=len, reverse=True):
        if secret in text:
            text = text.replace(secret, REDACTED)
    return text


def redact(value: Any) -> Any:
    """Return ``value`` with registered secrets replaced, recursing into dicts, lists and tuples."""
    if isinstance(value, str):
        return redact_text(value)
    if isinstance(value, dict):
        return {redact(k): redact(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(redact(v) for v in value)
    # Local import: Secret depends on this module.
    from nodewright.security.secret import Secret

    if isinstance(value, Secret):
        return REDACTED
    return value


class RedactingFilter(logging.Filter):
    """Scrubs registered secrets from every record, message and arguments alike."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        clean = redact_text(message)
        if clean != message or record.args:
            record.msg = clean
            record.args = None
        if record.exc_info and record.exc_info[1] is not None:
            record.exc_text = redact_text(logging.Formatter().formatException(record.exc_info))
            record.exc_info = None
        return True


def install_logging_filter(logger: logging.Logger | None = None) -> None:
    """Attach the filter to every handler of ``logger`` (root by default), once."""
    target = logger or logging.getLogger()
    for handler in target.handlers:
        if not any(isinstance(f, RedactingFilter) for f in handler.filters):
            handler.addFilter(RedactingFilter())
