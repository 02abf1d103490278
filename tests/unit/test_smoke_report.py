"""``summary.md`` and the JUnit report of ``nodewright smoke``, from hand-made API answers: a run that
passed, runs that failed in each way, and answers whose every text is hostile (table pipes, newlines,
backticks, HTML, links, control characters, lone surrogates, very long text) or of the wrong shape.

Markdown is checked by parsing it (markdown-it, CommonMark with GFM tables and strikethrough) and by
counting each table line's unescaped pipes; JUnit by parsing it with ``xml.etree`` (expat refuses
ill-formed XML and characters XML cannot carry)."""

from __future__ import annotations

import copy
import math
import secrets
from typing import Any
from xml.etree import ElementTree

import pytest
from markdown_it import MarkdownIt
from markdown_it.token import Token

from nodewright.cli import smoke_report
from nodewright.cli.smoke_report import SmokeRun
from nodewright.security.secret import Secret

T0 = 1_796_687_645.5  # 2026-12-07 23:54:05.5 UTC
HOSTILE = (
    "a|b\\|c\nnext line\r\n`code` ``x`` <script>alert(1)</script> <img src=x onerror=alert(1)> "
    "[link](javascript:alert(1)) ![img](https://evil.example/x.png) https://evil.example www.evil.example "
    "someone@evil.example *em* _em_ **strong** ~~gone~~ $x^2$ &#124; &lt; \x1b[2J\x1b]0;title\x07 \x00 "
    "\u202egnp.exe \ud800 \uffff <!-- c --> </td></tr> # heading\n- item\n1. one\n---\n> quote "
)
LONG = "x" * 10_000 + "|" * 50


def event(seq: int, second: float, kind: str, message: str, **data: Any) -> dict[str, Any]:
    return {"seq": seq, "at": f"2026-12-07T23:54:{second:06.3f}Z", "type": kind, "level": "info",
            "message": message, "data": data, "attempt": 1}  # fmt: skip


def events(*stages: tuple[str, float], failed: str | None = None) -> list[dict[str, Any]]:
    """Job events as the API sends them: each stage started and done (``failed``: started only)."""
    out = [event(1, 5.5, "state", "running (attempt 1 of 12)", state="running")]
    at = 6.0
    for name, took in stages:
        out.append(event(len(out) + 1, at, "log", f"stage {name} started", stage=name))
        at += took
        out.append(
            event(len(out) + 1, at, "log", f"stage {name} done in {took:g} s", stage=name, seconds=took)
        )
    if failed is not None:
        out.append(event(len(out) + 1, at, "log", f"stage {failed} started", stage=failed))
        out.append(event(len(out) + 1, at + 2.5, "state", "failed", state="failed"))
    return out


def call(method: str, endpoint: str, status: int, at: float, error: str | None = None) -> dict[str, Any]:
    return {
        "method": method,
        "endpoint": endpoint,
        "status": status,
        "error_code": error,
        "correlation_id": f"corr{int(at * 1000) % 100000:05d}",
        "started_at": at,
        "duration_ms": 6.81,
    }


def node(
    status: str = "ready", stage: str | None = None, error: dict[str, Any] | None = None
) -> dict[str, Any]:
    return {
        "id": 7,
        "name": "smoke-20261207235404",
        "provider_id": 1,
        "location": "fsn1",
        "server_type": "cx23",
        "image": "ubuntu-24.04",
        "profile": "baseline",
        "status": status,
        "stage": stage,
        "error": error,
        "server": {"id": 4200001, "name": "smoke-20261207235404", "status": "running"},
        "ssh": {"address": "198.19.163.1", "port": 22, "user": "nodewright", "provision_user": "root"},
        "host_key_fingerprint": "SHA256:LZ90tghOICblLN",
        "released_at": None,
    }


def evidence() -> dict[str, Any]:
    return {
        "acquisition": {
            "server_id": 4200001,
            "server_name": "smoke-20261207235404",
            "adopted": False,
            "addresses": {"ipv4": "198.19.163.1", "ipv6": "2001:db8:d2:101::1"},
            "actions": [
                {
                    "id": 91000001,
                    "command": "create_server",
                    "status": "success",
                    "seconds": 1.01,
                    "polls": 11,
                },
                {
                    "id": 91000002,
                    "command": "start_server",
                    "status": "success",
                    "seconds": 10.489,
                    "polls": 11,
                },
            ],
            "calls": [call("POST", "/servers", 201, T0), call("GET", "/servers/4200001", 200, T0 + 10.5)],
        },
        "stages": {
            "acquire": {"ok": True, "started_at": "2026-12-07T23:54:05.514572+00:00", "seconds": 10.566},
            "connect": {"ok": True, "started_at": "2026-12-07T23:54:16.088486+00:00", "seconds": 0.325},
            "provision": {"ok": True, "started_at": "2026-12-07T23:54:16.440412+00:00", "seconds": 16.11},
            "verify": {"ok": True, "started_at": "2026-12-07T23:54:32.553948+00:00", "seconds": 0.374},
        },
        "connect": {"tries": 1, "seconds": 0.322, "host_key_fingerprint": "SHA256:LZ90tghOICblLN"},
        "provision": {
            "profile": "baseline",
            "profile_version": "1+e4cad0343d2a",
            "recap": {"node": {"ok": 19, "changed": 10, "skipped": 3}},
            "tasks": 22,
            "seconds": 16.076,
        },
        "checks": [
            {"name": "ssh with the pinned host key", "ok": True, "detail": "SHA256:LZ90", "timed_out": False},
            {"name": "cloud-init finished", "ok": True, "detail": "status: done", "timed_out": False},
        ],
        "host_key": {"public_key": "ssh-ed25519 AAAAC3Nza", "fingerprint": "SHA256:LZ90tghOICblLN"},
    }


def passing_run(*, keep: bool = False) -> SmokeRun:
    run = SmokeRun(
        name="smoke-20261207235404",
        request={
            "provider_id": 1,
            "location": "fsn1",
            "server_type": "cx23",
            "image": "ubuntu-24.04",
            "profile": "baseline",
        },
        keep=keep,
        started_at="2026-12-07T23:54:04.9+00:00",
        finished_at="2026-12-07T23:54:35.1+00:00",
        provider={"id": 1, "name": "simulator", "kind": "hetzner"},
        created={"node": node("pending"), "job": {"id": 11, "kind": "nodes.provision"}},
        node=node(),
        evidence=evidence(),
        provision_events=events(
            ("acquire", 10.566), ("connect", 0.325), ("provision", 16.11), ("verify", 0.374)
        ),
    )
    if not keep:
        run.release_job = {"job": {"id": 23, "kind": "nodes.release"}}
        run.released = {**node("released"), "ssh": None, "released_at": "2026-12-07T23:54:34.62Z"}
        run.released_evidence = {
            **evidence(),
            "release": {
                "server_id": 4200001,
                "deleted": True,
                "actions": [
                    {
                        "id": 91000003,
                        "command": "delete_server",
                        "status": "success",
                        "seconds": 1.0,
                        "polls": 2,
                    }
                ],
                "calls": [
                    call("DELETE", "/servers/4200001", 200, T0 + 28),
                    call("GET", "/servers/4200001", 404, T0 + 29, "not_found"),
                ],
            },
        }
        run.released_evidence["stages"] = {
            **run.released_evidence["stages"],
            "release": {"ok": True, "started_at": "2026-12-07T23:54:33.5Z", "seconds": 1.041},
        }
        run.release_events = events(("release", 1.041))
    return run


# --- reading Markdown back ------------------------------------------------------------------------

PARSER = MarkdownIt("commonmark").enable(["table", "strikethrough"])


def unescaped_pipes(line: str) -> int:
    """The ``|`` of ``line`` that end a cell (a backslash escapes the character after it)."""
    count, i = 0, 0
    while i < len(line):
        if line[i] == "\\":
            i += 2
            continue
        count += line[i] == "|"
        i += 1
    return count


def tables(text: str) -> list[list[str]]:
    """The Markdown's tables, each as its lines."""
    found: list[list[str]] = []
    current: list[str] = []
    for line in [*text.split("\n"), ""]:
        if line.startswith("|"):
            current.append(line)
        elif current:
            found.append(current)
            current = []
    return found


def shape(text: str) -> list[str]:
    """The parsed document's structure: every token's type, inline children included (what a value
    could change if it escaped its cell: a new row, cell, block, link, image, code span or emphasis)."""

    def walk(tokens: list[Token]) -> list[str]:
        out: list[str] = []
        for token in tokens:
            out.append(token.type)
            out.extend(walk(token.children or []))
        return [t for t in out if t != "text"]

    return walk(PARSER.parse(text))


def assert_tables_hold(text: str) -> None:
    for table in tables(text):
        columns = unescaped_pipes(table[0]) - 1
        assert columns >= 2
        for line in table:
            assert unescaped_pipes(line) == columns + 1, line[:300]
            assert line.endswith("|") and not line.endswith("\\|"), line[-50:]


def poison(value: Any, keep: frozenset[str] = frozenset({"status", "type", "message", "stage"})) -> Any:
    """Every text of an answer made hostile, but the few words the run is judged by."""
    if isinstance(value, dict):
        return {k: (v if k in keep and isinstance(v, str) else poison(v, keep)) for k, v in value.items()}
    if isinstance(value, list):
        return [poison(v, keep) for v in value]
    if isinstance(value, str):
        return HOSTILE + value + LONG
    return value


def hostile_run() -> SmokeRun:
    run = passing_run()
    for name in (
        "request",
        "provider",
        "created",
        "node",
        "evidence",
        "release_job",
        "released",
        "released_evidence",
    ):
        setattr(run, name, poison(getattr(run, name)))
    run.name = HOSTILE + run.name
    for ev in (run.evidence, run.released_evidence):
        ev["provision"]["recap"] = {HOSTILE + "node": {"ok": HOSTILE, "changed": 10, "failed": LONG}}
        ev["acquisition"]["actions"][0]["status"] = HOSTILE
        ev["acquisition"]["calls"][0]["status"] = HOSTILE
        ev["acquisition"]["addresses"] = {HOSTILE: HOSTILE}
    return run


# --- the tests ------------------------------------------------------------------------------------


def test_a_passing_run_says_so_first_and_shows_what_was_made_where() -> None:
    run = passing_run()
    assert smoke_report.passed(run) and smoke_report.reasons(run) == []
    text = smoke_report.markdown(run, ["node.json", "summary.md"])
    assert text.startswith("# nodewright smoke: PASSED\n\n## What was made, where\n")
    for row in (
        "| node                | smoke-20261207235404 (id 7)",
        "| simulator (id 1, hetzner)",
        "| fsn1 ",
        "| cx23 ",
        "| ubuntu-24.04 ",
        "| baseline 1+e4cad0343d2a ",
        "| 4200001 smoke-20261207235404 ",
        "ipv4 198.19.163.1, ipv6 2001:db8:d2:101::1",
        "root\\@198.19.163.1:22",
        "| SHA256:LZ90tghOICblLN ",
        "| provision 11, release 23 ",
        "| 2026-12-07 23:54:04Z ",
    ):
        assert row.replace("|", "").strip() in text.replace("|", ""), row
    assert "| acquire   | passed | 23:54:05.514  | 10.566  |" in text
    assert "| release   | passed | 23:54:33.500  | 1.041   |" in text
    # Every provider call, in the order made, with its status, error code and correlation id.
    lines = [line for line in text.split("\n") if line.startswith("| ") and "/servers" in line]
    assert [line.split("|")[4].strip() for line in lines] == ["POST", "GET", "DELETE", "GET"]
    assert "| 404    | not_found  | corr" in lines[3] and "6.8" in lines[3]
    assert "| release | 91000003  | delete_server | success | 1.000   | 2     |" in text
    assert "| node | 19  | 10      | 0           | 0      | 3       | 0       | 0       |" in text
    assert "| cloud-init finished          | pass   | status: done |" in text
    assert "server 4200001 deleted at the provider and confirmed gone" in text
    assert "GET /servers/4200001, answered 404" in text
    assert "- node.json\n- summary.md\n" in text
    assert_tables_hold(text)
    assert "html_inline" not in shape(text) and "link_open" not in shape(text)


def test_markdown_columns_line_up_for_a_terminal() -> None:
    for table in tables(smoke_report.markdown(passing_run())):
        assert len({len(line) for line in table}) == 1, table


def test_hostile_values_cannot_break_a_table_or_become_markup() -> None:
    benign, hostile = passing_run(), hostile_run()
    assert smoke_report.passed(hostile)  # the words it is judged by were kept
    plain, text = smoke_report.markdown(benign), smoke_report.markdown(hostile, [HOSTILE + "file.json"])
    assert_tables_hold(text)
    # The same document: no value added a line, a row, a cell, a block or any inline markup.
    files_section = [
        "heading_open",
        "inline",
        "heading_close",
        "bullet_list_open",
        "list_item_open",
        "paragraph_open",
        "inline",
        "paragraph_close",
        "list_item_close",
        "bullet_list_close",
    ]
    assert shape(text) == shape(plain) + files_section
    assert text.count("\n") == plain.count("\n") + 4  # the Files heading, its blank lines, one item
    for raw in (
        "<script",
        "<img",
        "\x1b",
        "\x00",
        "\r",
        "\u202e",
        "\ud800",
        "\uffff",
        "`code`",
        "https://",
        "www.evil",
        "someone@",
        "<!--",
        "</td>",
    ):
        assert raw not in text, repr(raw)
    text.encode("utf-8")  # no lone surrogate: the file can be written
    # What was sent is still there to read (up to its cell's length), visible and inert.
    assert "| a\\|b\\\\\\|c\\\\nnext line\\\\n\\`code\\` " in text
    shown = {
        "<script>": "&lt;script&gt;",
        "[link](javascript:x)": "\\[link\\](javascript:x)",
        "![img](https://e.example/x.png)": "!\\[img\\](https:\\//e.example/x.png)",
        "www.evil.example": "www\\.evil.example",
        "someone@evil.example": "someone\\@evil.example",
        "*em* _em_ **b** ~~s~~ $x^2$": "\\*em\\* \\_em\\_ \\*\\*b\\*\\* \\~\\~s\\~\\~ \\$x^2\\$",
        "&#124; &lt;": "&amp;#124; &amp;lt;",
        "\x1b[2J\x07\x00": "\\\\x1b\\[2J\\\\x07\\\\x00",
        "\u202egnp.exe \ud800 \uffff": "\\\\u202egnp.exe \\\\ud800 \\\\uffff",
        "# h\n- item\n1. one\n---": "\\# h\\\\n- item\\\\n1. one\\\\n---",
    }
    for sent, cell in shown.items():
        assert smoke_report.md(sent) == cell, sent
    # Long text is cut: no line is longer than its cells allow, however long the value.
    assert max(len(line) for line in text.split("\n")) < 12 * 2 * smoke_report.MAX_CELL
    assert "x" * 1000 not in text and "…" in text


def test_a_cell_is_one_line_of_inert_text() -> None:
    assert smoke_report.md(None) == "-" and smoke_report.md("") == "-"
    assert smoke_report.md("create_server") == "create_server"  # intraword: no emphasis, no escape
    assert smoke_report.md("_x_") == "\\_x\\_" and smoke_report.md("a|b") == "a\\|b"
    assert smoke_report.md("1.844") == "1.844" and smoke_report.md("1. item") == "1\\. item"
    assert smoke_report.md("- item") == "\\- item" and smoke_report.md("# h") == "\\# h"
    assert smoke_report.md("x" * 500, 10) == "x" * 9 + "…"
    assert smoke_report.md("line\nnext") == "line\\\\nnext"


def test_answers_of_the_wrong_shape_render_as_nothing_not_a_traceback() -> None:
    run = passing_run()
    odd: list[Any] = [None, 3, "text", [1, 2], {"x": {}}, math.nan, math.inf, True, -1e300, 1e300]
    for i, value in enumerate(odd):
        broken = copy.deepcopy(run)
        broken.evidence = {
            "acquisition": value,
            "stages": value,
            "checks": value,
            "provision": {"recap": value},
            "host_key": value,
            "connect": value,
        }
        broken.node = {**node(), "ssh": value, "server": value, "error": value}
        broken.released_evidence = {
            "release": {"calls": [value, {"started_at": value, "duration_ms": value}], "actions": value},
            "stages": {"release": value},
        }
        broken.provision_events = [
            value,
            {"data": value, "type": "log"},
            {"at": value, "data": {"stage": value}},
        ]
        broken.release_events = value if isinstance(value, list) else []
        text = smoke_report.markdown(broken)
        assert_tables_hold(text)
        ElementTree.fromstring(smoke_report.junit(broken))
        assert "No readiness check ran." in text, i
    assert smoke_report.clock(math.nan) == "-" and smoke_report.clock(1e300) == "-"
    assert smoke_report.stamp("0001-01-01T00:00:00+01:00") == "-" and smoke_report.seconds(True) == "-"


def test_junit_has_one_suite_a_case_per_stage_and_check_and_stays_well_formed() -> None:
    root = ElementTree.fromstring(smoke_report.junit(passing_run()))
    assert root.tag == "testsuites" and len(root) == 1
    suite = root[0]
    assert suite.get("name") == "nodewright smoke" and suite.get("timestamp") == "2026-12-07T23:54:04"
    cases = suite.findall("testcase")
    assert [c.get("name") for c in cases] == [
        *smoke_report.STAGES,
        "ssh with the pinned host key",
        "cloud-init finished",
    ]
    assert [c.get("time") for c in cases[:5]] == ["10.566", "0.325", "16.110", "0.374", "1.041"]
    assert (suite.get("tests"), suite.get("failures"), suite.get("errors"), suite.get("skipped")) == (
        "7",
        "0",
        "0",
        "0",
    )
    properties = {p.get("name"): p.get("value") for p in suite.iter("property")}
    assert properties["provider connection"] == "simulator (id 1, hetzner)"
    assert properties["host key"] == "SHA256:LZ90tghOICblLN" and "confirmed gone" in properties["release"]

    hostile = hostile_run()
    hostile.evidence["checks"][1]["ok"] = False
    hostile_root = ElementTree.fromstring(smoke_report.junit(hostile))
    failures = list(hostile_root.iter("failure"))
    assert len(failures) == 1 and hostile_root[0].get("failures") == "1"
    message, body = failures[0].get("message") or "", failures[0].text or ""
    assert message.startswith("check failed: a|b\\|c\nnext line\n`code`") and "<script>" in message
    assert len(message) <= smoke_report.MAX_MESSAGE and len(body) <= smoke_report.MAX_TEXT
    assert "\\x1b[2J" in body and "\\x00" in body and "\\ud800" in body and "\\uffff" in body
    for element in hostile_root.iter():
        for text in [element.text or "", *element.attrib.values()]:
            assert "\x1b" not in text and "\x00" not in text and "\ud800" not in text


def test_a_failed_stage_is_named_first_with_its_error_and_time() -> None:
    run = passing_run()
    error = {
        "code": "provisioning_failed",
        "message": "task 'install' failed: exit 3",
        "hint": None,
        "retryable": False,
    }
    run.node = node("failed", "provision", error)
    del run.evidence["stages"]["provision"], run.evidence["stages"]["verify"], run.evidence["provision"]
    run.evidence["checks"] = []
    run.provision_events = events(("acquire", 10.566), ("connect", 0.325), failed="provision")
    run.released_evidence["stages"] = {"release": run.released_evidence["stages"]["release"]}
    assert smoke_report.reasons(run) == [
        "the node ended failed at stage provision (provisioning_failed: task 'install' failed: exit 3)"
    ]
    outcomes = {s.name: (s.outcome, s.seconds) for s in smoke_report.stages(run)}
    assert outcomes["connect"] == ("passed", 0.325)
    assert outcomes["provision"] == ("failed", 2.5) and outcomes["verify"] == ("not reached", None)
    assert outcomes["release"] == ("passed", 1.041)  # a failed node is released all the same
    text = smoke_report.markdown(run)
    assert text.startswith(
        "# nodewright smoke: FAILED\n\n- the node ended failed at stage provision "
        "(provisioning_failed: task 'install' failed: exit 3)\n"
    )
    assert (
        "| provision | failed      | 23:54:16.891  | 2.500   "
        "| provisioning_failed: task 'install' failed: exit 3 |" in text
    )
    assert "No Ansible recap is recorded" in text and "No readiness check ran." in text
    suite = ElementTree.fromstring(smoke_report.junit(run))[0]
    failed = [c for c in suite.iter("testcase") if c.find("failure") is not None]
    assert [c.get("name") for c in failed] == ["provision"]
    assert [c.get("name") for c in suite.iter("testcase") if c.find("skipped") is not None] == ["verify"]


def test_failed_checks_and_a_release_that_did_not_finish_fail_the_run() -> None:
    run = passing_run()
    run.evidence["checks"].append(
        {"name": "app answers", "ok": False, "detail": "curl: 503", "timed_out": True}
    )
    run.released = node("failed", "release", {"code": "provider_unavailable", "message": "HTTP 503"})
    run.released_evidence["stages"].pop("release")
    run.release_events = events(failed="release")
    assert smoke_report.reasons(run) == [
        "check 'app answers' timed out: curl: 503",
        "the node was not released (it is failed)",
    ]
    assert {s.name: s.outcome for s in smoke_report.stages(run)}["release"] == "failed"
    text = smoke_report.markdown(run)
    assert "| app answers                  | TIMED OUT | curl: 503" in text
    assert (
        "not released: the node is failed; release it with: nodewright nodes delete smoke-20261207235404"
        in text
    )
    suite = ElementTree.fromstring(smoke_report.junit(run))[0]
    names = [c.get("name") for c in suite.iter("testcase") if c.find("failure") is not None]
    assert names == ["release", "app answers", "run"]  # the run: "not released" is no stage's or check's


def test_keep_skips_the_release_and_says_how_to_do_it() -> None:
    run = passing_run(keep=True)
    assert smoke_report.passed(run)
    assert (
        "kept (--keep): release it with: nodewright nodes delete smoke-20261207235404"
        in smoke_report.markdown(run)
    )
    suite = ElementTree.fromstring(smoke_report.junit(run))[0]
    (skipped,) = [c for c in suite.iter("testcase") if c.find("skipped") is not None]
    assert skipped.get("name") == "release" and suite.get("skipped") == "1"


def test_a_run_that_never_reached_the_server_is_an_error_in_junit() -> None:
    run = SmokeRun(
        name="smoke-1", request={"location": "fsn1"}, error="cannot reach http://127.0.0.1:9: ConnectError"
    )
    assert smoke_report.reasons(run) == ["error: cannot reach http://127.0.0.1:9: ConnectError"]
    text = smoke_report.markdown(run)
    assert text.startswith("# nodewright smoke: FAILED\n\n- error: cannot reach http:\\//127.0.0.1:9")
    assert "nothing to release (no node was made)" in text
    assert {s.outcome for s in smoke_report.stages(run)} == {"not reached"}
    suite = ElementTree.fromstring(smoke_report.junit(run))[0]
    (error,) = suite.iter("error")
    assert "cannot reach" in (error.get("message") or "") and suite.get("errors") == "1"
    assert suite.get("skipped") == "5"


def test_many_calls_are_cut_to_a_readable_table_that_says_how_many_more() -> None:
    run = passing_run()
    run.evidence["acquisition"]["calls"] = [call("GET", f"/servers/{i}", 200, T0 + i) for i in range(1000)]
    text = smoke_report.markdown(run)
    assert "(802 more not shown; the JSON files beside this one hold them all.)" in text
    section = text.split("## Provider calls")[1].split("## Actions")[0]
    assert len(tables(section)[0]) == 2 + smoke_report.MAX_ROWS


def test_a_secret_this_process_knows_is_in_neither_report() -> None:
    canary = "smoke-canary-" + secrets.token_hex(16)
    Secret(canary)  # registered, as the CLI's API token is when it is read
    run = passing_run()
    run.node["name"] = f"node {canary}"
    run.evidence["checks"][0].update(name=canary, detail=f"token={canary}", ok=False)
    run.error = f"echoed {canary}"
    for report in (smoke_report.markdown(run), smoke_report.junit(run).decode()):
        assert canary not in report and "[REDACTED]" in report.replace("\\[REDACTED\\]", "[REDACTED]")


@pytest.mark.parametrize("value", [HOSTILE, LONG, "\ud800", "", "\x00" * 10])
def test_every_hostile_check_name_is_a_well_formed_testcase(value: str) -> None:
    run = passing_run()
    run.evidence["checks"] = [{"name": value, "ok": False, "detail": value, "timed_out": False}]
    suite = ElementTree.fromstring(smoke_report.junit(run))[0]
    (case,) = suite.findall("testcase[@classname='nodewright.smoke.check']")
    assert len(case.get("name") or "") <= smoke_report.MAX_CELL and case.find("failure") is not None
