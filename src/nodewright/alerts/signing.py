"""Standard Webhooks signatures: ``v1,<base64 HMAC-SHA256(key, "{id}.{timestamp}.{body}")>``.

The secret is ``whsec_`` followed by the base64 of the key bytes (Standard Webhooks' form, as the
reference libraries parse it). During a rotation's overlap every live secret signs, and the header
lists the signatures separated by spaces; a receiver accepts the message if any one matches.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets

from nodewright.security.secret import Secret

SECRET_PREFIX = "whsec_"  # noqa: S105 (a prefix, not a credential)
KEY_BYTES = 24


def new_secret() -> Secret:
    return Secret(SECRET_PREFIX + base64.b64encode(secrets.token_bytes(KEY_BYTES)).decode())


def fingerprint(secret: Secret) -> str:
    """A short, non-reversible name for a secret (shown instead of it)."""
    return "sha256:" + hashlib.sha256(secret.reveal().encode()).hexdigest()[:16]


def _key(secret: Secret) -> bytes:
    return base64.b64decode(secret.reveal().removeprefix(SECRET_PREFIX))


def signature(secret: Secret, message_id: str, timestamp: int, body: bytes) -> str:
    signed = f"{message_id}.{timestamp}.".encode() + body
    digest = hmac.new(_key(secret), signed, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def signature_header(keys: list[Secret], message_id: str, timestamp: int, body: bytes) -> str:
    return " ".join(signature(key, message_id, timestamp, body) for key in keys)
