"""The ``nodewright`` command run in the test's own process (typer's CliRunner): exit code, stdout and
stderr as a subprocess would give them, at a fraction of a subprocess's start-up cost."""

from __future__ import annotations

import os
from dataclasses import dataclass

from typer.testing import CliRunner


@dataclass(frozen=True)
class Done:
    returncode: int
    stdout: str
    stderr: str


def invoke(args: list[str], env: dict[str, str], stdin: str = "") -> Done:
    """``nodewright ARGS`` with exactly ``env`` as its environment (every other variable unset)."""
    from nodewright.cli.app import app

    environment: dict[str, str | None] = {key: None for key in os.environ if key not in env}
    environment.update(env)
    result = CliRunner().invoke(app, args, env=environment, input=stdin, catch_exceptions=False)
    return Done(result.exit_code, result.stdout, result.stderr)
