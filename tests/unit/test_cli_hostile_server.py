"""The CLI against a server that is not nodewright, or a hostile one (a real HTTP server on loopback):
one error line and a documented exit code, never a traceback or a forged line."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

ANSWERS: dict[str, tuple[int, str, str]] = {
    # path -> (status, content type, body)
    "forged": (404, "application/problem+json",
               json.dumps({"detail": "gone", "code": "not_found]: gone\nnode 7 web-1: ready\x1b[2J"})),
    "proxy404": (404, "text/html", "<html>nginx: not found</html>"),
    "redirect": (301, "text/html", "<html>moved</html>"),
    "html200": (200, "text/html", "<html>welcome</html>"),
    "shape": (200, "application/json", json.dumps({"unexpected": True})),
}  # fmt: skip


class Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        kind = self.server.kind  # type: ignore[attr-defined]
        status, content_type, body = ANSWERS[kind]
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        if status == 301:
            self.send_header("Location", "https://example.invalid/")
        self.end_headers()
        self.wfile.write(body.encode())

    def log_message(self, *_args: object) -> None:
        pass


@pytest.fixture
def server() -> Iterator[ThreadingHTTPServer]:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield httpd
    finally:
        httpd.shutdown()
        httpd.server_close()


def run(server: ThreadingHTTPServer, kind: str, *args: str) -> subprocess.CompletedProcess[str]:
    server.kind = kind  # type: ignore[attr-defined]
    url = f"http://127.0.0.1:{server.server_address[1]}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("NODEWRIGHT_")}
    env["NODEWRIGHT_TOKEN"] = "nwt_test"
    return subprocess.run([sys.executable, "-m", "nodewright.cli", *args, "--url", url], env=env,
                          capture_output=True, text=True, timeout=60, check=False)  # fmt: skip


def test_a_forged_problem_code_cannot_print_a_line_of_its_own(server: ThreadingHTTPServer) -> None:
    result = run(server, "forged", "nodes", "show", "7")
    assert result.returncode == 3, result.stderr  # still the server's 404 problem: not found
    assert result.stderr.count("\n") == 1 and result.stderr.startswith("error: gone")
    assert "web-1: ready" not in result.stderr and "\x1b" not in result.stderr


@pytest.mark.parametrize(
    ("kind", "code", "words"),
    [
        ("proxy404", 5, "not a nodewright answer"),  # a proxy's 404 says nothing about node 7
        ("redirect", 5, "redirect"),
        ("html200", 5, "did not answer with JSON"),
        ("shape", 1, "unexpected"),
    ],
)
def test_a_server_that_is_not_nodewright_is_one_clear_line(
    server: ThreadingHTTPServer, kind: str, code: int, words: str
) -> None:
    result = run(server, kind, "nodes", "show", "7")
    assert result.returncode == code, (result.returncode, result.stderr)
    assert words in result.stderr and "Traceback" not in result.stderr
    assert result.stderr.startswith("error")


def test_a_broken_url_is_a_usage_error() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("NODEWRIGHT_")}
    env["NODEWRIGHT_TOKEN"] = "nwt_test"
    result = subprocess.run([sys.executable, "-m", "nodewright.cli", "nodes", "list", "--url", "http://[::1"],
                            env=env, capture_output=True, text=True, timeout=60, check=False)  # fmt: skip
    assert result.returncode == 2 and "--url" in result.stderr and "Traceback" not in result.stderr


def test_smoke_refuses_without_a_token_before_making_anything_and_says_unreachable(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("NODEWRIGHT_")}
    smoke = [sys.executable, "-m", "nodewright.cli", "smoke", "--provider", "1", "--url", "http://127.0.0.1:9",
             "--evidence-dir", str(tmp_path / "ev")]  # fmt: skip
    no_token = subprocess.run(smoke, env=env, capture_output=True, text=True, timeout=60, check=False)
    assert no_token.returncode == 2 and "NODEWRIGHT_TOKEN" in no_token.stderr
    assert not (tmp_path / "ev").exists()
    down = subprocess.run(smoke, env={**env, "NODEWRIGHT_TOKEN": "nwt_test"}, capture_output=True, text=True,
                          timeout=60, check=False)  # fmt: skip
    assert down.returncode == 5 and "cannot reach" in down.stderr, down.stderr
    (folder,) = (tmp_path / "ev").iterdir()
    summary = json.loads((folder / "summary.json").read_text())
    assert summary["ok"] is False and "cannot reach" in summary["error"]
