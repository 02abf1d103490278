"""docs/cli.md's command reference is made from the commands (``nodewright.cli.reference``): it
cannot drift from them. Shell completion scripts are generated for bash, zsh and fish."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from nodewright.cli import reference

DOC = Path(__file__).resolve().parents[2] / "docs" / "cli.md"


def test_docs_cli_md_is_what_the_commands_say() -> None:
    text = DOC.read_text()
    assert reference.rewrite(text) == text, (
        "docs/cli.md is stale: run `python -m nodewright.cli.reference docs/cli.md`"
    )
    for command in (
        "login",
        "providers add",
        "jobs logs",
        "audit",
        "orphans adopt",
        "users set-role",
        "nodes ssh",
    ):
        assert f"#### `nodewright {command}`" in text


def test_the_reference_follows_a_changed_command(monkeypatch: pytest.MonkeyPatch) -> None:
    from nodewright.cli import jobs

    before = reference.render()
    monkeypatch.setattr(jobs.jobs_cancel, "__doc__", "Something else entirely.")
    assert "Something else entirely." in reference.render()
    assert "Something else entirely." not in before


@pytest.mark.parametrize("shell", ["bash", "zsh", "fish"])
def test_completion_scripts_for_each_shell(shell: str) -> None:
    env = {**os.environ, "_NODEWRIGHT_COMPLETE": f"source_{shell}"}
    program = "import sys; sys.argv[0] = 'nodewright'; from nodewright.cli import main; main()"
    done = subprocess.run(
        [sys.executable, "-c", program], env=env, capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    assert "_NODEWRIGHT_COMPLETE" in done.stdout or "nodewright" in done.stdout
    marker = {"bash": "complete -o", "zsh": "compdef", "fish": "complete --command nodewright"}[shell]
    assert marker in done.stdout, done.stdout[:400]
