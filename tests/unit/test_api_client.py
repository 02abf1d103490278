"""The CLI's API token: a token that cannot go into an HTTP header is a usage error naming the
source, not a stack trace, and the token itself is never echoed."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from nodewright.cli import app

BAD_TOKENS = ["nwt_secr\u00e9t-value", "nwt_secret value", "nwt_secret\tvalue"]


@pytest.mark.parametrize("token", BAD_TOKENS)
def test_unusable_token_from_the_environment_is_a_usage_error(token: str) -> None:
    result = CliRunner().invoke(
        app, ["nodes", "list", "--url", "http://127.0.0.1:9"], env={"NODEWRIGHT_TOKEN": token}
    )
    assert result.exit_code == 2, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
    assert "NODEWRIGHT_TOKEN" in result.output
    assert "secr" not in result.output


@pytest.mark.parametrize("token", [*BAD_TOKENS, "nwt_secret\x00value", "nwt_secret\nvalue"])
def test_unusable_token_from_a_file_is_a_usage_error(tmp_path: Path, token: str) -> None:
    path = tmp_path / "token"
    path.write_text(token + "\n")
    result = CliRunner().invoke(
        app, ["nodes", "list", "--url", "http://127.0.0.1:9", "--token-file", str(path)], env={}
    )
    assert result.exit_code == 2, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
    assert "token file" in result.output
    assert "secr" not in result.output
