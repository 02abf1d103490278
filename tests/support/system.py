"""Skip-or-fail for tests that need a part of the system (sshd, hcloud CLI, Chromium, root).

Outside CI a missing part skips the test with the reason. Under ``CI=true`` .ci/run must have
installed every part, so a missing one fails the test instead of hiding behind a skip.
"""

from __future__ import annotations

import os
import shutil

import pytest


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() == "true"


def missing(reason: str) -> None:
    """Skip (or, in CI, fail) the calling test because ``reason`` is not available."""
    if in_ci():
        pytest.fail(f"required system part missing in CI: {reason}")
    pytest.skip(reason)


def require_binary(name: str, *candidates: str) -> str:
    """Return the path of an executable, or skip/fail the test naming it."""
    for candidate in (name, *candidates):
        found = shutil.which(candidate)
        if found:
            return found
        if os.path.isabs(candidate) and os.access(candidate, os.X_OK):
            return candidate
    missing(f"executable {name!r} not found (install it; .ci/run does)")
    raise AssertionError("unreachable")


def require_root() -> None:
    if os.geteuid() != 0:
        missing("needs root (namespaces, binding sshd on 127.x addresses)")
