"""The API commands against a scripted server (a real HTTP server on loopback) that answers what a
hostile or broken one would: pages that do not move on, odd shapes, forged lines, far dates. Each
case is one clear line and a documented exit code, never a traceback, a busy loop or a lie."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import typer

from nodewright.cli import contexts
from nodewright.cli.nodes import public_key
from tests.support.cli import Done, invoke

Answer = Callable[[str, dict[str, list[str]]], Any]


class Scripted(ThreadingHTTPServer):
    answer: Answer
    seen: list[tuple[str, dict[str, list[str]], str]]
    requests: list[tuple[str, str, bytes]]  # method, path, body
    method: str  # of the request being answered


class Handler(BaseHTTPRequestHandler):
    def _reply(self) -> None:
        server = self.server
        assert isinstance(server, Scripted)
        parts = urlsplit(self.path)
        query = parse_qs(parts.query, keep_blank_values=True)
        server.seen.append((parts.path, query, self.headers.get("Authorization", "")))
        sent = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        server.requests.append((self.command, parts.path, sent))
        server.method = self.command
        body = json.dumps(server.answer(parts.path, query)).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = do_PATCH = do_DELETE = _reply

    def log_message(self, *_args: object) -> None:
        pass


@pytest.fixture
def server() -> Iterator[Scripted]:
    httpd = Scripted(("127.0.0.1", 0), Handler)
    httpd.seen, httpd.requests = [], []
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield httpd
    finally:
        httpd.shutdown()
        httpd.server_close()


def url_of(server: Scripted) -> str:
    return f"http://127.0.0.1:{server.server_address[1]}"


def cli(server: Scripted, answer: Answer, *args: str, env: dict[str, str] | None = None) -> Done:
    server.answer = answer
    base = {k: v for k, v in os.environ.items() if not k.startswith("NODEWRIGHT_")}
    base.update({"NODEWRIGHT_TOKEN": "nwt_test", "NODEWRIGHT_URL": url_of(server), "NO_COLOR": "1"})
    return invoke(list(args), {**base, **(env or {})})


def node(i: int, status: str, **extra: Any) -> dict[str, Any]:
    return {"id": i, "name": f"n-{i}", "status": status, "stage": None, "health": None, "ssh": None,
            "location": "fsn1", "server_type": "cx23",
            "price": {"monthly_gross": "4.5101", "currency": "EUR"},
            "created_at": "2026-12-07T10:00:00Z", "provider_id": 1, "image": "ubuntu-24.04",
            "profile": "baseline", "job_id": 1, "server": {"id": None, "name": None, "status": None},
            **extra}  # fmt: skip


def test_nodes_list_asks_the_server_to_leave_released_nodes_out(server: Scripted) -> None:
    """500 released nodes must not hide the live one behind the page limit."""

    def answer(_path: str, query: dict[str, list[str]]) -> Any:
        statuses = query.get("status", [])
        if statuses == ["released"]:
            return {"items": [node(1, "released")], "total": 500, "limit": 1, "offset": 0}
        if statuses and "released" not in statuses:
            return {"items": [node(501, "ready")], "total": 1, "limit": 500, "offset": 0}
        return {
            "items": [node(i, "released") for i in range(1, 501)],
            "total": 501,
            "limit": 500,
            "offset": 0,
        }

    done = cli(server, answer, "nodes", "list")
    assert done.returncode == 0, done.stderr
    assert "n-501" in done.stdout and "4.51 per month; 500 released not shown (--all)" in done.stdout


def test_jobs_logs_reads_every_page(server: Scripted) -> None:
    def answer(_path: str, query: dict[str, list[str]]) -> Any:
        after = int(query["after"][0])
        count = 500 if after == 0 else 200
        items = [{"seq": after + i + 1, "at": "2026-12-07T10:00:00Z", "level": "info",
                  "message": f"event {after + i + 1}"} for i in range(count)]  # fmt: skip
        return {
            "items": items,
            "next_after": after + count,
            "job_state": "succeeded",
            "finished": count < 500,
        }

    done = cli(server, answer, "jobs", "logs", "1")
    assert done.returncode == 0, done.stderr
    assert done.stdout.count("event ") == 700 and "event 700" in done.stdout


@pytest.mark.parametrize("next_after", [1, None, "7", True])
def test_jobs_logs_follow_refuses_pages_that_do_not_move_on(server: Scripted, next_after: object) -> None:
    def answer(_path: str, _query: dict[str, list[str]]) -> Any:
        event = {"seq": 1, "at": "2026-12-07T10:00:00Z", "level": "info", "message": "again"}
        return {"items": [event], "next_after": next_after, "job_state": "running", "finished": False}

    done = cli(server, answer, "jobs", "logs", "1", "--follow")
    assert done.returncode == 5 and "do not move on" in done.stderr
    assert len(server.seen) <= 2  # not a busy loop


def test_server_text_cannot_forge_a_line(server: Scripted) -> None:
    forged = node(7, "failed", name="web-1: ready\nnode 8 db-1", stage="boot\nnode 9 x: ready")
    shown = cli(server, lambda _p, _q: forged, "nodes", "show", "7")
    assert shown.returncode == 0, shown.stderr
    assert not any(
        line.startswith("node 8") or line.startswith("node 9") for line in shown.stdout.splitlines()
    )
    user = {"username": "bob\nerror: everything is on fire", "role": "viewer", "disabled": True}
    disabled = cli(server, lambda _p, _q: user, "users", "disable", "bob")
    assert disabled.returncode == 0 and not any(
        line.startswith("error") for line in disabled.stdout.splitlines()
    )
    job = {"id": 3, "kind": "k\nnode 1 a: ready", "state": "running", "attempt": 1, "max_attempts": 3,
           "created_at": "0001-01-01T00:00:00+14:00", "finished_at": None, "resource_key": None,
           "created_by": None, "error": None, "steps": []}  # fmt: skip
    shown_job = cli(server, lambda _p, _q: job, "jobs", "show", "3")  # a far date is no OverflowError either
    assert shown_job.returncode == 0, shown_job.stderr
    assert not any(line.startswith("node 1") for line in shown_job.stdout.splitlines())


def test_odd_shapes_are_one_line_not_a_traceback(server: Scripted) -> None:
    server.answer = lambda _p, _q: {
        "items": [node(1, "ready", health="x")],
        "total": 1,
        "limit": 500,
        "offset": 0,
    }
    env = {k: v for k, v in os.environ.items() if not k.startswith("NODEWRIGHT_")}
    env.update({"NODEWRIGHT_TOKEN": "nwt_test", "NODEWRIGHT_URL": url_of(server)})
    done = subprocess.run([sys.executable, "-m", "nodewright.cli", "nodes", "list", "--all"], env=env,
                          capture_output=True, text=True, timeout=60, check=False)  # fmt: skip
    assert done.returncode == 1 and "Traceback" not in done.stderr
    assert done.stderr.startswith("error: unexpected failure (AttributeError)")


def test_a_context_token_goes_only_to_its_own_port(server: Scripted, tmp_path: Path) -> None:
    assert not contexts.same_server("http://127.0.0.1:+18400", "http://127.0.0.1:18777")
    assert not contexts.same_server(
        "http://127.0.0.1:\uff11\uff18\uff14\uff10\uff10", "http://127.0.0.1:18400"
    )
    assert contexts.same_server("http://127.0.0.1:80/", "http://127.0.0.1")
    config = {"NODEWRIGHT_CLI_CONFIG": str(tmp_path / "contexts.json")}
    me = {"username": "ann", "role": "admin"}
    odd = cli(server, lambda _p, _q: me, "login", "http://127.0.0.1:+18400", "--name", "lab", env=config)
    assert odd.returncode == 2 and "not an http(s) URL" in odd.stderr
    assert server.seen == []  # no token was sent anywhere

    # A token from the environment does not go to whichever context is active.
    login_env = {**config, "NODEWRIGHT_URL": url_of(server)}
    saved = invoke(["login", url_of(server), "--name", "staging"], login_env, stdin="nwt_staging\n")
    assert saved.returncode == 0, saved.stderr
    server.seen.clear()
    env = {k: v for k, v in os.environ.items() if not k.startswith("NODEWRIGHT_")}
    blind = invoke(["users", "list"], {**env, **config, "NODEWRIGHT_TOKEN": "nwt_production"})
    assert blind.returncode == 2 and "pass --url" in blind.stderr
    assert server.seen == []
    # Both given: the contexts file is not even read (a file with a wrong mode does not block).
    (tmp_path / "contexts.json").chmod(0o644)
    explicit = cli(server, lambda _p, _q: [], "users", "list", env=config)
    assert explicit.returncode == 0, explicit.stderr
    (tmp_path / "contexts.json").write_text("[" * 200_000)
    (tmp_path / "contexts.json").chmod(0o600)
    deep = invoke(["context", "list"], {**env, **config})
    assert deep.returncode == 2 and "not a contexts file" in deep.stderr


def _key(tmp_path: Path, text: str | bytes) -> Path:
    path = tmp_path / "key"
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    return path


PUBLIC = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl"


@pytest.mark.parametrize(
    "text",
    [
        PUBLIC + "\x0bb3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQ",  # private material after a control char
        PUBLIC + "\rb3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQ",
        "PuTTY-User-Key-File-3: ssh-ed25519\nEncryption: none\n",
        "  -----BEGIN ENCRYPTED PRIVATE KEY-----\nMIIB\n-----END ENCRYPTED PRIVATE KEY-----",
    ],
)
def test_private_material_never_leaves_the_machine(tmp_path: Path, text: str) -> None:
    with pytest.raises(typer.Exit) as refused:
        public_key(_key(tmp_path, text))
    assert refused.value.exit_code == 2


def test_only_the_key_and_a_short_label_are_sent(tmp_path: Path) -> None:
    assert public_key(_key(tmp_path, PUBLIC + " ann@laptop\n")) == PUBLIC + " ann@laptop"
    long_data = PUBLIC + " b3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQAAAAAAAAABAAAAMw"
    assert public_key(_key(tmp_path, long_data)) == PUBLIC
    with pytest.raises(typer.Exit):
        public_key(Path("/dev/zero"))  # bounded read: too large, not a hang


def test_nodes_delete_wait_on_a_failed_node_waits_for_its_release_job(server: Scripted) -> None:
    """A failed node stays ``failed`` until its release job starts: ``failed`` alone must not end the
    wait (it would exit 1 for a release that then succeeds)."""
    polls = {"node": 0}

    def answer(path: str, _query: dict[str, list[str]]) -> Any:
        if server.method == "DELETE":
            return {"job": {"id": 5, "kind": "nodes.release", "state": "queued"}}
        if path == "/api/jobs/5":
            return {"id": 5, "state": "succeeded" if polls["node"] >= 3 else "queued"}
        polls["node"] += 1
        return node(7, "released" if polls["node"] >= 3 else "failed")

    done = cli(server, answer, "nodes", "delete", "7", "--wait")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "n-7: released" in done.stdout


def test_a_node_whose_server_is_gone_shows_no_address_in_the_list() -> None:
    from nodewright.cli.nodes import live_address

    ssh = {"address": "203.0.113.7"}
    assert live_address({"status": "ready", "ssh": ssh}) == "203.0.113.7"
    assert live_address({"status": "lost", "ssh": ssh}) == "-"
    assert live_address({"status": "released", "ssh": ssh}) == "-"
    assert live_address({"status": "pending", "ssh": None}) == "-"


@pytest.mark.parametrize(
    "option",
    ["KnownHostsCommand=/bin/echo %H ssh-ed25519 AAAA", "knownhostscommand /bin/true",
     "VerifyHostKeyDNS=yes", "verifyhostkeydns yes"],
)  # fmt: skip
def test_nodes_ssh_refuses_options_that_add_host_keys_to_the_pinned_one(
    server: Scripted, tmp_path: Path, option: str
) -> None:
    """Options ssh takes first-come cannot be overridden, but these two add keys of their own (a
    command's, the DNS's SSHFP records) beside the pinned one: the pinning would be off."""
    from nodewright.providers.acquisition import generate_host_key

    host_key = generate_host_key().public_openssh
    ready = {**node(4, "ready"), "ssh": {"address": "127.0.0.1", "port": 22}}

    def answer(path: str, _q: dict[str, list[str]]) -> Any:
        return {"evidence": {"host_key": {"public_key": host_key}}} if path.endswith("/evidence") else ready

    called = tmp_path / "called"
    fake = tmp_path / "bin" / "ssh"
    fake.parent.mkdir()
    fake.write_text(f'#!/bin/sh\necho "$@" > {called}\n')
    fake.chmod(0o755)
    done = cli(server, answer, "nodes", "ssh", "4", "-o", option, env={"PATH": str(fake.parent)})
    assert done.returncode == 2, done
    assert "pinning" in done.stderr
    assert not called.exists()  # ssh was never run
    allowed = cli(server, answer, "nodes", "ssh", "4", "-o", "BatchMode=yes", env={"PATH": str(fake.parent)})
    assert allowed.returncode == 0, allowed
    ran = called.read_text()
    assert "BatchMode=yes" in ran
    # Off before anything else is read (ssh keeps the first value: ~/.ssh/config cannot turn it on).
    assert ran.index("VerifyHostKeyDNS=no") < ran.index("BatchMode=yes")


@pytest.mark.parametrize("every", [True, False])
def test_nodes_logs_job_ids_from_the_server_cannot_forge_a_line(server: Scripted, every: bool) -> None:
    forged = "12\nnode 1 db-1: ready"

    def answer(path: str, _q: dict[str, list[str]]) -> Any:
        if path == "/api/jobs":
            return {"items": [{"id": "5\nnode 2 web-2: ready", "kind": "nodes.provision",
                               "state": "succeeded"}], "total": 1}  # fmt: skip
        if path.startswith("/api/jobs/"):
            return {"items": [], "next_after": 0, "job_state": "succeeded", "finished": True}
        return node(3, "ready", job_id=forged)

    done = cli(server, answer, "nodes", "logs", "3", *(["--all"] if every else []))
    assert done.returncode == 5, done  # not nodewright's answer
    assert "job id" in done.stderr
    assert not any(line.startswith("node ") for line in (done.stdout + done.stderr).splitlines())


@pytest.mark.parametrize(
    "args",
    [["nodes", "list", "--label", ""], ["nodes", "list", "--provider", " "],
     ["orphans", "list", "--provider", ""], ["nodes", "list", "--status", ""],
     ["nodes", "list", "--health", " "]],
    ids=lambda a: "-".join(a),
)  # fmt: skip
def test_an_empty_filter_is_a_usage_error_in_the_lists_too(server: Scripted, args: list[str]) -> None:
    """Dropped, ``--label ""`` would list every node; sent, it would match none."""
    done = cli(server, lambda _p, _q: {"items": [], "total": 0, "limit": 500, "offset": 0}, *args)
    assert done.returncode == 2, done
    assert "is empty" in done.stderr
    assert server.seen == []  # refused before anything was asked
