"""Validation of request bodies: the rules the real API enforces, reported as it reports them."""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from typing import Any

from nodewright.sim.errors import ApiError, invalid_input
from nodewright.sim.labels import label_problems

USER_DATA_LIMIT = 32 * 1024
_LABEL = r"[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_HOSTNAME = re.compile(rf"^{_LABEL}(\.{_LABEL})*$")
_TOKEN = re.compile(r"^[A-Za-z0-9]{64}$")
KEY_TYPES = {
    "ssh-ed25519",
    "ssh-rsa",
    "ssh-dss",
    "ecdsa-sha2-nistp256",
    "ecdsa-sha2-nistp384",
    "ecdsa-sha2-nistp521",
    "sk-ssh-ed25519@openssh.com",
    "sk-ecdsa-sha2-nistp256@openssh.com",
}


def user_data_problem(value: object) -> str | None:
    """What is wrong with a ``user_data`` value (None: nothing, or it is absent)."""
    if value is None:
        return None
    if not isinstance(value, str):
        return "must be a string"
    try:
        size = len(value.encode())
    except UnicodeEncodeError:
        return "must be valid UTF-8 text"
    return "is too long (limited to 32KiB)" if size > USER_DATA_LIMIT else None


def decimal_id(ref: str) -> int | None:
    """A reference's id when it is one (ASCII digits that fit the API's ids), else None."""
    if ref.isascii() and ref.isdigit() and len(ref) <= 16:
        return int(ref)
    return None


def well_formed_token(token: str) -> bool:
    return bool(_TOKEN.match(token))


def server_name_problem(name: object) -> str | None:
    if not isinstance(name, str) or not name:
        return "is required"
    if len(name) > 63 or not _HOSTNAME.match(name):
        return "must be a valid hostname"
    return None


def ssh_key_name_problem(name: object) -> str | None:
    if not isinstance(name, str) or not name.strip():
        return "is required"
    if len(name) > 128:
        return "is too long"
    return None


def fingerprint(public_key: str) -> str:
    """MD5 over the key blob, colon-separated hex: the form the API reports and filters on."""
    blob = base64.b64decode(public_key.split()[1])
    digest = hashlib.md5(blob, usedforsecurity=False).hexdigest()
    return ":".join(digest[i : i + 2] for i in range(0, len(digest), 2))


def public_key_problem(public_key: object) -> str | None:
    if not isinstance(public_key, str) or not public_key.strip():
        return "is required"
    parts = public_key.split()
    if len(parts) < 2 or parts[0] not in KEY_TYPES:
        return "invalid public key"
    try:
        blob = base64.b64decode(parts[1], validate=True)
    except (binascii.Error, ValueError):
        return "invalid public key"
    if len(blob) < 4:
        return "invalid public key"
    length = int.from_bytes(blob[:4], "big")
    if blob[4 : 4 + length].decode(errors="replace") != parts[0]:
        return "invalid public key"
    return None


def require_object(body: Any) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise ApiError("invalid_input", "request body must be a JSON object", {"fields": []})
    return body


def check_labels(body: dict[str, Any], problems: dict[str, list[str]]) -> None:
    if "labels" in body and body["labels"] is not None:
        found = label_problems(body["labels"])
        if found:
            problems["labels"] = found


def raise_if(problems: dict[str, list[str]]) -> None:
    if problems:
        raise invalid_input(problems)


def is_ref(value: object) -> bool:
    """IDs or names: hcloud-python sends either, hcloud-go sends ints (and locations as strings)."""
    return (isinstance(value, int) and not isinstance(value, bool) and value > 0) or (
        isinstance(value, str) and bool(value)
    )
