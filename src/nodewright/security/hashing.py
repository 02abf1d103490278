"""Hashes for high-entropy bearer values (API tokens, session ids).

These values are 256-bit random strings, so a fast hash is enough and allows an indexed lookup;
passwords, which are guessable, use argon2 instead (``passwords.py``).
"""

from __future__ import annotations

import hashlib


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()
