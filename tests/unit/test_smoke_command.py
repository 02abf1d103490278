# ruff: noqa: F811  (pytest fixtures are imported by name and then requested as parameters)
"""``nodewright smoke`` against a scripted server (a real HTTP server on loopback, see
test_cli_hostile_answers): which connection it picks, what it asks for, what it releases, its exit
codes, and the reports it writes from answers whose every text is hostile. The whole path against a
real server, simulator, sshd and Ansible is tests/e2e/test_nodes_cli.py (and, with --keep, the
secret canary's cycle)."""

from __future__ import annotations

import json
import secrets
from pathlib import Path
from typing import Any
from xml.etree import ElementTree

from tests.support.cli import Done
from tests.unit.test_cli_hostile_answers import Scripted, cli, server  # noqa: F401
from tests.unit.test_smoke_report import HOSTILE, assert_tables_hold, events, evidence, node, poison

READY_EVENTS = events(("acquire", 10.566), ("connect", 0.325), ("provision", 16.11), ("verify", 0.374))


class Provider:
    """The answers of a server with ``connections``, whose one node becomes ``ready`` and, once
    deleted, ``released``."""

    def __init__(self, server: Scripted, connections: list[dict[str, Any]], *, hostile: bool = False,
                 check_ok: bool = True, echo: str = "") -> None:  # fmt: skip
        self.server, self.connections, self.deleted = server, connections, False
        self.evidence = evidence()
        self.evidence["checks"][1].update(ok=check_ok, detail=f"status: done {echo}")
        self.node = node()
        self.released_evidence = {**evidence(), "release": {"server_id": 4200001, "deleted": True,
                                                            "calls": [], "actions": []}}  # fmt: skip
        self.released_evidence["stages"]["release"] = {"ok": True, "started_at": "2026-12-07T23:54:33Z",
                                                       "seconds": 1.041}  # fmt: skip
        if hostile:
            self.evidence, self.released_evidence = poison(self.evidence), poison(self.released_evidence)
            self.node["name"] = HOSTILE
            for connection in connections:
                connection["kind"] = HOSTILE
        self.evidence["checks"][0]["name"] = f"echo {echo}"  # before any cut

    def __call__(self, path: str, _query: dict[str, list[str]]) -> Any:
        method = self.server.method
        if path == "/api/providers":
            return self.connections
        if path.startswith("/api/providers/"):
            return next(c for c in self.connections if str(c["id"]) == path.rsplit("/", 1)[1])
        if path == "/api/nodes" and method == "POST":
            return {"node": node("pending"), "job": {"id": 11, "kind": "nodes.provision"}}
        if path == "/api/nodes/7" and method == "DELETE":
            self.deleted = True
            return {"job": {"id": 23, "kind": "nodes.release"}}
        if path == "/api/nodes/7":
            if self.deleted:
                return {**self.node, "status": "released", "released_at": "2026-12-07T23:54:34Z"}
            return self.node
        if path == "/api/nodes/7/evidence":
            return {"node_id": 7, "evidence": self.released_evidence if self.deleted else self.evidence}
        if path in ("/api/jobs/11", "/api/jobs/23"):
            return {"id": int(path.rsplit("/", 1)[1]), "state": "succeeded"}
        if path == "/api/jobs/11/events":
            return {"items": READY_EVENTS, "next_after": len(READY_EVENTS), "job_state": "succeeded",
                    "finished": True}  # fmt: skip
        if path == "/api/jobs/23/events":
            return {"items": events(("release", 1.041)), "next_after": 3, "job_state": "succeeded",
                    "finished": True}  # fmt: skip
        raise AssertionError(f"unexpected {method} {path}")


def smoke(server: Scripted, provider: Provider, tmp_path: Path, *args: str, token: str = "") -> Done:
    env = {"NODEWRIGHT_TOKEN": token} if token else None
    return cli(server, provider, "smoke", "--evidence-dir", str(tmp_path / "ev"), *args, env=env)


def created(server: Scripted) -> dict[str, Any]:
    (body,) = [
        json.loads(sent) for method, path, sent in server.requests if (method, path) == ("POST", "/api/nodes")
    ]
    assert isinstance(body, dict)
    return body


def folder_of(tmp_path: Path) -> Path:
    (folder,) = (tmp_path / "ev").iterdir()
    return folder


def test_one_connection_needs_no_provider_and_hostile_answers_make_inert_reports(
    server: Scripted, tmp_path: Path
) -> None:
    token = "nwt_" + secrets.token_hex(20)
    provider = Provider(server, [{"id": 1, "name": "sim"}], hostile=True, echo=token)
    junit = tmp_path / "ci" / "junit.xml"
    done = smoke(server, provider, tmp_path, "--junit", str(junit), token=token)
    assert done.returncode == 0, done.stdout + done.stderr
    body = created(server)
    assert body["provider_id"] == 1 and body["profile"] == "baseline" and body["image"] == "ubuntu-24.04"
    assert ("DELETE", "/api/nodes/7") in [(m, p) for m, p, _ in server.requests]
    folder = folder_of(tmp_path)
    text = (folder / "summary.md").read_text()
    assert text.startswith("# nodewright smoke: PASSED\n")
    assert_tables_hold(text)
    assert "<script" not in text and "\x1b" not in text and "&lt;script&gt;" in text
    report = junit.read_bytes()
    suite = ElementTree.fromstring(report)[0]
    assert suite.get("name") == "nodewright smoke" and suite.get("tests") == "7"
    # The token the server echoed (in a check's output) is in neither report, nor on the terminal.
    for shown in (text, report.decode(), done.stdout, done.stderr):
        assert token not in shown
    assert 'name="echo [REDACTED]"' in report.decode() and "| echo \\[REDACTED\\] " in text
    summary = json.loads((folder / "summary.json").read_text())
    assert (
        summary["ok"] and summary["provider_id"] == 1 and summary["stages"]["release"]["result"] == "passed"
    )


def test_several_connections_need_provider_and_nothing_is_made(server: Scripted, tmp_path: Path) -> None:
    provider = Provider(server, [{"id": 1, "name": "lab"}, {"id": 2, "name": "prod"}])
    done = smoke(server, provider, tmp_path, "--junit", str(tmp_path / "junit.xml"))
    assert done.returncode == 2 and "--provider is needed" in done.stderr and "1 lab, 2 prod" in done.stderr
    assert [m for m, _, _ in server.requests] == ["GET"]  # nothing was made
    text = (folder_of(tmp_path) / "summary.md").read_text()
    assert text.startswith("# nodewright smoke: FAILED\n\n- error: --provider is needed")
    assert "nothing to release (no node was made)" in text
    (error,) = ElementTree.parse(tmp_path / "junit.xml").getroot().iter("error")
    assert "--provider is needed" in (error.get("message") or "")

    unknown = smoke(server, provider, tmp_path, "--provider", "staging")
    assert (
        unknown.returncode == 3 and "no provider connection with the id or name 'staging'" in unknown.stderr
    )


def test_provider_by_name_what_to_test_and_keep(server: Scripted, tmp_path: Path) -> None:
    provider = Provider(server, [{"id": 1, "name": "lab"}, {"id": 2, "name": "prod"}])
    done = smoke(server, provider, tmp_path, "--provider", "prod", "--keep", "--profile", "web",
                 "--location", "nbg1", "--type", "cx33", "--image", "debian-12")  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    body = created(server)
    assert {k: body[k] for k in ("provider_id", "profile", "location", "server_type", "image")} == {
        "provider_id": 2, "profile": "web", "location": "nbg1", "server_type": "cx33", "image": "debian-12"
    }  # fmt: skip
    assert "DELETE" not in [m for m, _, _ in server.requests]  # --keep: the node is left
    folder = folder_of(tmp_path)
    assert not (folder / "node-released.json").exists()
    text = (folder / "summary.md").read_text()
    assert "| release   | skipped |" in text and "kept (\\-\\-keep)" not in text
    assert "kept (--keep): release it with: nodewright nodes delete smoke-20261207235404" in text
    assert "| provider connection | prod (id 2, ?) " in text


def test_a_failed_check_fails_the_run_with_exit_1_and_the_node_is_still_released(
    server: Scripted, tmp_path: Path
) -> None:
    provider = Provider(server, [{"id": 1, "name": "lab"}], check_ok=False)
    done = smoke(server, provider, tmp_path, "--junit", str(tmp_path / "junit.xml"))
    assert done.returncode == 1 and "smoke FAILED" in done.stdout
    assert "check 'cloud-init finished' failed: status: done" in done.stderr
    assert provider.deleted
    (failure,) = ElementTree.parse(tmp_path / "junit.xml").getroot().iter("failure")
    assert (failure.get("message") or "").startswith("check failed: status: done")


def test_an_evidence_dir_that_cannot_be_made_stops_before_anything_is_made(
    server: Scripted, tmp_path: Path
) -> None:
    (tmp_path / "ev").write_text("a file, not a directory")
    done = smoke(server, Provider(server, [{"id": 1, "name": "lab"}]), tmp_path)
    assert done.returncode == 2 and "cannot write the evidence" in done.stderr
    assert server.requests == []


def test_answers_of_another_shape_end_the_run_as_unreachable_with_its_reports(
    server: Scripted, tmp_path: Path
) -> None:
    provider = Provider(server, [{"id": 1, "name": "lab"}])

    def odd(path: str, query: dict[str, list[str]]) -> Any:
        if path == "/api/providers/1":
            return ["not", "a", "connection"]
        if path == "/api/nodes":
            return {"node": {"id": 7}, "job": "eleven"}
        return provider(path, query)

    done = cli(
        server, odd, "smoke", "--evidence-dir", str(tmp_path / "ev"), "--junit", str(tmp_path / "j.xml")
    )
    assert done.returncode == 5 and "unexpected answer from the server (TypeError)" in done.stderr
    assert "Traceback" not in done.stderr
    folder = folder_of(tmp_path)
    assert (folder / "summary.md").read_text().startswith("# nodewright smoke: FAILED\n")
    assert json.loads((folder / "summary.json").read_text())["provision_job"] is None
    assert (
        ElementTree.parse(tmp_path / "j.xml").getroot().find("testsuite/testcase[@name='run']/error")
        is not None
    )
