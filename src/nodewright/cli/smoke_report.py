"""What a ``nodewright smoke`` run saw, for people and for CI: ``summary.md`` and a JUnit XML file.

The input is what the API answered (the node, its evidence, its jobs' events) and is not trusted: a
node writes its check output, a provider its error codes and correlation ids, and a server that is
not what it claims can send any shape at all. So every field is read defensively (a list where a
dict belongs is nothing, not a traceback) and every value is made inert before it is written:

- Markdown: one line (control characters and newlines shown as escapes, ``security.text``), at most
  ``MAX_CELL`` characters, HTML's ``& < >`` as entities, and every character that starts inline
  markup (emphasis, code, links, images, math, table pipes) escaped with a backslash; ``://``,
  ``www.`` and ``@`` are broken up so that nothing becomes a link. A value can neither end its table
  cell nor its row, nor become markup.
- JUnit: built with ``xml.etree`` (which escapes ``& < > "``), after the characters XML 1.0 cannot
  carry at all (C0 controls, lone surrogates, U+FFFE/U+FFFF) were made visible escapes.

Both go through ``security.redaction`` first: a secret this process knows (its API token) cannot be
copied into either, whatever the server sent back.
"""

from __future__ import annotations

import datetime as dt
import math
import re
import xml.etree.ElementTree as ET
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from nodewright.security.redaction import redact_text
from nodewright.security.text import clean, clean_line

STAGES = ("acquire", "connect", "provision", "verify", "release")
MAX_CELL = 200  # characters of one Markdown cell (before escaping)
MAX_ROWS = 200  # rows of one Markdown table (provider calls, checks, actions)
MAX_TESTCASES = 500  # checks in the JUnit file
MAX_MESSAGE = 500  # characters of a JUnit failure message attribute
MAX_TEXT = 4000  # characters of a JUnit failure body
SUITE = "nodewright smoke"
EMPTY = "-"

# Characters XML 1.0 cannot carry (tab, newline and carriage return aside: ``clean`` has dealt with
# the other C0 controls and a lone CR already; this is the rest).
_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")
# What starts inline Markdown (CommonMark + GFM: code, emphasis, links and images, tables,
# strikethrough; GitHub's $math$), and what GFM turns into a link by itself (a URL, www., e-mail).
_MARKUP = re.compile(r"([\\`*\[\]|~$]|(?<![^\W_])_|_(?![^\W_]))")  # "a_b" is no emphasis
_LINKISH = re.compile(r"(?<=:)(?=//)|(?<=www)(?=\.)|(?=@)", re.IGNORECASE)
# What would start a block (a heading, a list, a setext underline) at the start of a line.
_BLOCK_START = re.compile(r"^(?:[#+=-]|\d+(?=[.)](?:\s|$)))")


# --- reading untrusted answers ---------------------------------------------------------------------


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def field_of(value: Any, *keys: str) -> Any:
    """``value[k1][k2]...``, or None where a part is missing or not an object."""
    for key in keys:
        value = value.get(key) if isinstance(value, dict) else None
    return value


def _dicts(value: Any) -> list[dict[str, Any]]:
    return [v for v in _list(value) if isinstance(v, dict)]


def _number(value: Any) -> float | None:
    """A finite number, or None (a bool, a string, NaN or infinity is not a duration)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    number = float(value)
    return number if math.isfinite(number) else None


def _text(value: Any) -> str:
    return "" if value is None else str(value)


def _moment(value: Any) -> dt.datetime | None:
    """An ISO time or Unix seconds as an aware UTC time; None for anything else."""
    if isinstance(value, str):
        try:
            when = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
            return when.replace(tzinfo=dt.UTC) if when.tzinfo is None else when.astimezone(dt.UTC)
        except (ValueError, OverflowError):  # "0001-01-01T00:00+01:00" is before the first UTC time
            return None
    number = _number(value)
    if number is None or not 0 <= number < 32_503_680_000:  # before the year 3000
        return None
    return dt.datetime.fromtimestamp(number, tz=dt.UTC)


def clock(value: Any) -> str:
    """``HH:MM:SS.mmm`` UTC, or ``-``."""
    when = _moment(value)
    return EMPTY if when is None else when.strftime("%H:%M:%S.") + f"{when.microsecond // 1000:03d}"


def stamp(value: Any) -> str:
    """``YYYY-MM-DD HH:MM:SSZ``, or ``-``."""
    when = _moment(value)
    return EMPTY if when is None else when.strftime("%Y-%m-%d %H:%M:%SZ")


def seconds(value: Any) -> str:
    number = _number(value)
    return EMPTY if number is None else f"{number:.3f}"


# --- what the run saw --------------------------------------------------------------------------------


@dataclass
class SmokeRun:
    """Everything one run got from the API (each part as it was answered, or missing)."""

    name: str
    request: dict[str, Any]  # what was asked for: provider_id, location, server_type, image, profile
    keep: bool = False
    started_at: str | None = None
    finished_at: str | None = None
    provider: dict[str, Any] = field(default_factory=dict)  # GET /api/providers/{id}
    created: dict[str, Any] = field(default_factory=dict)  # POST /api/nodes: {node, job}
    node: dict[str, Any] = field(default_factory=dict)  # the node once it settled
    evidence: dict[str, Any] = field(default_factory=dict)  # its evidence then
    provision_events: list[Any] = field(default_factory=list)
    release_job: dict[str, Any] = field(default_factory=dict)  # DELETE /api/nodes/{id}: {job}
    released: dict[str, Any] = field(default_factory=dict)  # the node after its release
    released_evidence: dict[str, Any] = field(default_factory=dict)
    release_events: list[Any] = field(default_factory=list)
    error: str | None = None  # what ended the run early (the API's problem, a timeout)
    error_code: str | None = None

    @property
    def node_id(self) -> Any:
        return _dict(self.node).get("id") or _dict(_dict(self.created).get("node")).get("id")


@dataclass(frozen=True)
class Stage:
    name: str
    outcome: str  # passed, failed, skipped, not reached
    started_at: Any = None
    seconds: float | None = None
    detail: str = ""


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    detail: str
    timed_out: bool


@dataclass(frozen=True)
class Call:
    stage: str
    method: str
    endpoint: str
    status: Any
    error_code: Any
    correlation_id: Any
    started_at: Any
    duration_ms: Any


def _stage_events(events: Iterable[Any], stage: str) -> tuple[dict[str, Any], dict[str, Any], Any]:
    """The last attempt's ``stage X started`` and ``stage X done`` events, and the time of the last
    event after that start (how long a stage that failed ran)."""
    started: dict[str, Any] = {}
    done: dict[str, Any] = {}
    last_at: Any = None
    for event in _dicts(list(events)):
        data = _dict(event.get("data"))
        if data.get("stage") == stage and event.get("type") == "log":
            if "seconds" in data:
                done = event
            elif event.get("message") == f"stage {stage} started":  # not "already done: skipped"
                started, done = event, {}
        if started:
            last_at = event.get("at")
    return started, done, last_at


def _node_error(node: dict[str, Any]) -> str:
    error = _dict(node.get("error"))
    if not error:
        return ""
    return f"{_text(error.get('code'))}: {_text(error.get('message'))}".strip(": ")


def stages(run: SmokeRun) -> list[Stage]:
    """Each stage's outcome and time: from the node's evidence (``stages``), else its job's events."""
    recorded = _dict(_dict(run.evidence).get("stages"))
    after_release = _dict(_dict(run.released_evidence).get("stages"))
    node = _dict(run.node)
    out: list[Stage] = []
    for name in STAGES:
        record = _dict(after_release.get(name) or recorded.get(name))
        events = run.release_events if name == "release" else run.provision_events
        started, done, last_at = _stage_events(events, name)
        if record.get("ok") is True:
            took = _number(record.get("seconds"))
            if took is None:
                took = _number(_dict(done.get("data")).get("seconds"))
            out.append(Stage(name, "passed", record.get("started_at") or started.get("at"), took))
            continue
        if name == "release" and run.keep:
            out.append(Stage(name, "skipped", detail="--keep: the node is left as it is"))
            continue
        failed_here = (node.get("stage") == name and node.get("status") == "failed") or (
            name == "release" and _dict(run.released).get("status") not in (None, "released")
        )
        if failed_here or started:
            begun, ended = _moment(started.get("at")), _moment(last_at)
            took = (ended - begun).total_seconds() if begun and ended else None
            holder = _dict(run.released) if name == "release" else node
            detail = _node_error(holder) or ("did not finish" if started else "failed")
            out.append(Stage(name, "failed", started.get("at"), took, detail))
            continue
        out.append(Stage(name, "not reached"))
    return out


def checks(run: SmokeRun) -> list[Check]:
    return [
        Check(_text(c.get("name")), c.get("ok") is True, _text(c.get("detail")), c.get("timed_out") is True)
        for c in _dicts(_dict(run.evidence).get("checks"))
    ]


def calls(run: SmokeRun) -> list[Call]:
    """Every provider call the evidence records (acquisition and release), in the order made."""
    found: list[Call] = []
    for stage, section in (
        ("acquire", _dict(_dict(run.evidence).get("acquisition"))),
        ("release", _dict(_dict(run.released_evidence).get("release"))),
    ):
        for c in _dicts(section.get("calls")):
            found.append(Call(stage, _text(c.get("method")), _text(c.get("endpoint")), c.get("status"),
                              c.get("error_code"), c.get("correlation_id"), c.get("started_at"),
                              c.get("duration_ms")))  # fmt: skip
    return found


def actions(run: SmokeRun) -> list[tuple[str, dict[str, Any]]]:
    acquired = _dicts(_dict(_dict(run.evidence).get("acquisition")).get("actions"))
    released = _dicts(_dict(_dict(run.released_evidence).get("release")).get("actions"))
    return [("acquire", a) for a in acquired] + [("release", a) for a in released]


def reasons(run: SmokeRun) -> list[str]:
    """Why the run did not pass; empty when it did."""
    why: list[str] = []
    if run.error is not None:
        why.append(f"error [{run.error_code}]: {run.error}" if run.error_code else f"error: {run.error}")
    node = _dict(run.node)
    if node and node.get("status") != "ready":
        where = f" at stage {_text(node.get('stage'))}" if node.get("stage") else ""
        error = _node_error(node)
        why.append(f"the node ended {_text(node.get('status'))}{where}" + (f" ({error})" if error else ""))
    found = checks(run)
    if node.get("status") == "ready" and not found:
        why.append("no readiness check ran")
    why.extend(
        f"check {c.name!r} {'timed out' if c.timed_out else 'failed'}: {c.detail}" for c in found if not c.ok
    )
    if node and not run.keep and _dict(run.released).get("status") != "released":
        status = _dict(run.released).get("status")
        why.append(
            f"the node was not released (it is {_text(status)})" if status else "the node was not released"
        )
    if not node and run.error is None:
        why.append("the node never settled")
    return why


def passed(run: SmokeRun) -> bool:
    return not reasons(run)


# --- Markdown ----------------------------------------------------------------------------------------


def _one_line(value: Any, limit: int) -> str:
    """Redacted, one line of visible characters, at most ``limit`` characters (then ``…``)."""
    text = _unsurrogate(clean_line(redact_text(_text(value))))
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _unsurrogate(text: str) -> str:
    """XML's forbidden characters (lone surrogates too, which no UTF-8 file can hold) as escapes."""
    return _NOT_XML.sub(lambda m: f"\\u{ord(m.group()):04x}", text)


def md(value: Any, limit: int = MAX_CELL) -> str:
    """``value`` as inert inline Markdown (see the module's docstring); ``-`` for nothing."""
    text = _one_line(value, limit)
    if not text:
        return EMPTY
    text = text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    text = _MARKUP.sub(r"\\\1", text)
    # "https\://", "www\." and "\@" read the same and link nothing (an escaped character is text
    # of its own to the autolinker, which needs the scheme, www or local part next to it).
    text = _LINKISH.sub("\\\\", text)
    if _BLOCK_START.match(text):  # only in a list item or a line of its own, but never harmful
        text = "\\" + text if not text[0].isdigit() else re.sub(r"^(\d+)([.)])", r"\1\\\2", text)
    return text


def _table(headers: Sequence[str], rows: Sequence[Sequence[str]], *, more: int = 0) -> list[str]:
    """A GFM table (cells already escaped), its columns padded so that it reads in a terminal too."""
    widths = [max(3, len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(headers)]

    def line(cells: Sequence[str]) -> str:
        return "| " + " | ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)) + " |"

    lines = [line(headers), "| " + " | ".join("-" * w for w in widths) + " |", *(line(r) for r in rows)]
    if more > 0:
        lines += ["", f"({more} more not shown; the JSON files beside this one hold them all.)"]
    return lines


def _kept(items: Sequence[Any]) -> tuple[Sequence[Any], int]:
    return items[:MAX_ROWS], max(0, len(items) - MAX_ROWS)


def _where(run: SmokeRun) -> list[tuple[str, str]]:
    """What was made, where, and how to reach it: label and value pairs."""
    node = _dict(run.node) or _dict(_dict(run.created).get("node"))
    request, provider, evidence = _dict(run.request), _dict(run.provider), _dict(run.evidence)
    acquisition = _dict(evidence.get("acquisition"))
    version = _text(_dict(evidence.get("provision")).get("profile_version"))
    host_key = (
        _dict(evidence.get("host_key")).get("fingerprint")
        or node.get("host_key_fingerprint")
        or _dict(evidence.get("connect")).get("host_key_fingerprint")
    )
    connection = "{} (id {}, {})".format(
        _text(provider.get("name")) or "?",
        _text(provider.get("id", request.get("provider_id"))),
        _text(provider.get("kind")) or "?",
    )
    server = _dict(node.get("server"))
    server_id = acquisition.get("server_id") or server.get("id")
    server_text = EMPTY
    if server_id is not None:
        server_name = _text(acquisition.get("server_name") or server.get("name"))
        server_text = f"{_text(server_id)} {server_name}".strip()
        if acquisition.get("adopted") is True:
            server_text += " (adopted: it existed already)"
    addresses = _dict(acquisition.get("addresses"))
    ssh = _dict(node.get("ssh"))
    login = EMPTY
    if ssh:
        user = _text(ssh.get("provision_user") or ssh.get("user"))
        login = f"{user}@{_text(ssh.get('address'))}:{_text(ssh.get('port'))}"
    jobs = [f"{what} {_text(_dict(answer.get('job')).get('id'))}"
            for what, answer in (("provision", _dict(run.created)), ("release", _dict(run.release_job)))
            if answer.get("job")]  # fmt: skip

    def asked(key: str, request_key: str | None = None) -> str:
        return _text(node.get(key) or request.get(request_key or key))

    return [
        ("node", f"{_text(node.get('name') or run.name)} (id {_text(run.node_id) or '?'})"),
        ("provider connection", connection),
        ("location", asked("location")),
        ("server type", asked("server_type")),
        ("image", asked("image")),
        ("profile", asked("profile") + (f" {version}" if version else "")),
        ("server", server_text),
        ("addresses", ", ".join(f"{k} {_text(v)}" for k, v in addresses.items() if v) or EMPTY),
        ("SSH", login),
        ("host key", _text(host_key)),
        ("jobs", ", ".join(jobs) or EMPTY),
        ("started", stamp(run.started_at)),
        ("finished", stamp(run.finished_at)),
    ]


def release_text(run: SmokeRun) -> str:
    """The release as the API confirmed it (or why there is none, and what to do)."""
    name = _text(_dict(run.node).get("name") or run.name)
    if run.keep:
        return f"kept (--keep): release it with: nodewright nodes delete {name}"
    released = _dict(run.released)
    if released.get("status") != "released":
        if not run.node_id:
            return "nothing to release (no node was made)"
        status = _text(released.get("status") or _dict(run.node).get("status")) or "unknown"
        return f"not released: the node is {status}; release it with: nodewright nodes delete {name}"
    outcome = _dict(_dict(run.released_evidence).get("release"))
    text = f"released {stamp(released.get('released_at'))}"
    if outcome.get("deleted") is True:
        text += f"; server {_text(outcome.get('server_id'))} deleted at the provider and confirmed gone"
        last = calls(run)[-1:]
        if last and last[0].stage == "release":
            text += f" (the last call, {last[0].method} {last[0].endpoint}, answered {_text(last[0].status)})"
    elif outcome.get("detached") is True:
        text += f"; server {_text(outcome.get('server_id'))} kept at the provider"
    else:
        text += "; there was no server to delete"
    return text


def markdown(run: SmokeRun, files: Iterable[str] = ()) -> str:
    """``summary.md``: pass or fail first, then what was made where, the stages, the provider calls and
    actions, the Ansible recap, the checks and the release."""
    why = reasons(run)
    verdict = "PASSED" if not why else "FAILED"
    out = [f"# nodewright smoke: {verdict}", ""]
    if why:
        out += [f"- {md(reason, 400)}" for reason in why] + [""]
    out += ["## What was made, where", ""]
    out += _table(["what", "value"], [[md(k), md(v)] for k, v in _where(run)])

    out += ["", "## Stages", ""]
    rows = [[md(s.name), md(s.outcome), md(clock(s.started_at)), md(seconds(s.seconds)), md(s.detail)]
            for s in stages(run)]  # fmt: skip
    out += _table(["stage", "result", "started (UTC)", "seconds", "detail"], rows)

    made = calls(run)
    out += ["", "## Provider calls", ""]
    if made:
        shown, more = _kept(made)
        rows = [[str(i), md(c.stage), md(clock(c.started_at)), md(c.method), md(c.endpoint), md(c.status),
                 md(c.error_code), md(c.correlation_id), md(_ms(c.duration_ms))]
                for i, c in enumerate(shown, 1)]  # fmt: skip
        headers = ["#", "stage", "started (UTC)", "method", "path", "status", "error code",
                   "correlation id", "ms"]  # fmt: skip
        out += _table(headers, rows, more=more)
        out += ["", "Action polls are batched for every node of the connection (one `GET /actions` for "
                "many), so they are counted per action below, not listed here."]  # fmt: skip
    else:
        out += ["No provider call is recorded."]

    done = actions(run)
    out += ["", "## Actions", ""]
    if done:
        shown, more = _kept(done)
        rows = [[md(stage), md(a.get("id")), md(a.get("command")), md(a.get("status")),
                 md(seconds(_number(a.get("seconds")))), md(a.get("polls"))]
                for stage, a in shown]  # fmt: skip
        out += _table(["stage", "action id", "command", "status", "seconds", "polls"], rows, more=more)
    else:
        out += ["No provider action is recorded."]

    provision = _dict(_dict(run.evidence).get("provision"))
    out += ["", "## Ansible recap", ""]
    recap = _dict(provision.get("recap"))
    if recap:
        words = f"profile {_text(provision.get('profile'))} {_text(provision.get('profile_version'))}".strip()
        out += [
            md(f"{words}, {_text(provision.get('tasks'))} tasks in {seconds(provision.get('seconds'))} s"),
            "",
        ]
        columns = ["ok", "changed", "unreachable", "failed", "skipped", "rescued", "ignored"]
        hosts, more = _kept(list(recap.items()))
        rows = [[md(host), *(md(_dict(counts).get(c, 0)) for c in columns)] for host, counts in hosts]
        out += _table(["host", *columns], rows, more=more)
    else:
        out += ["No Ansible recap is recorded (the playbook did not finish)."]

    found = checks(run)
    out += ["", "## Checks", ""]
    if found:
        shown, more = _kept(found)
        rows = [[md(c.name), "pass" if c.ok else ("TIMED OUT" if c.timed_out else "FAIL"), md(c.detail)]
                for c in shown]  # fmt: skip
        out += _table(["check", "result", "detail"], rows, more=more)
    else:
        out += ["No readiness check ran."]

    out += ["", "## Release", "", md(release_text(run), 1000)]
    names = sorted(files)
    if names:
        out += ["", "## Files", "", *(f"- {md(n)}" for n in names)]
    return "\n".join(out) + "\n"


def _ms(value: Any) -> str:
    number = _number(value)
    return EMPTY if number is None else f"{number:.1f}"


# --- JUnit -------------------------------------------------------------------------------------------


def _xml(value: Any, limit: int) -> str:
    """Redacted text XML can hold: control characters shown as escapes, at most ``limit`` characters."""
    text = _unsurrogate(clean(redact_text(_text(value))))
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _case(suite: ET.Element, classname: str, name: str, took: float | None) -> ET.Element:
    return ET.SubElement(
        suite,
        "testcase",
        {"classname": classname, "name": _xml(name, MAX_CELL), "time": f"{max(took or 0.0, 0.0):.3f}"},
    )


def _mark(case: ET.Element, kind: str, message: str, body: str = "") -> None:
    element = ET.SubElement(case, kind, {"message": _xml(message, MAX_MESSAGE)})
    if kind != "skipped":
        element.set("type", "smoke")
    if body:
        element.text = _xml(body, MAX_TEXT)


def junit(run: SmokeRun) -> bytes:
    """A JUnit XML report: one testsuite ``nodewright smoke``, a testcase per stage and per check."""
    root = ET.Element("testsuites", {"name": SUITE})
    suite = ET.SubElement(root, "testsuite", {"name": SUITE})
    when = _moment(run.started_at)
    if when is not None:
        suite.set("timestamp", when.strftime("%Y-%m-%dT%H:%M:%S"))
    properties = ET.SubElement(suite, "properties")
    for key, value in [*_where(run), ("release", release_text(run))]:
        ET.SubElement(properties, "property", {"name": key, "value": _xml(value, MAX_MESSAGE)})
    total = 0.0
    for stage in stages(run):
        case = _case(suite, "nodewright.smoke.stage", stage.name, stage.seconds)
        total += stage.seconds or 0.0
        if stage.outcome == "failed":
            _mark(case, "failure", f"stage {stage.name} failed: {stage.detail}", stage.detail)
        elif stage.outcome != "passed":
            _mark(case, "skipped", stage.detail or stage.outcome)
    found = checks(run)
    for check in found[:MAX_TESTCASES]:
        case = _case(suite, "nodewright.smoke.check", check.name, None)
        if not check.ok:
            verb = "timed out" if check.timed_out else "failed"
            _mark(case, "failure", f"check {verb}: {check.detail}", check.detail)
    unexplained = [r for r in reasons(run) if not r.startswith(("check ", "the node ended"))]
    if run.error is not None or unexplained:
        # What no stage or check stands for: the run's own error, no checks, no release.
        case = _case(suite, "nodewright.smoke", "run", None)
        kind = "error" if run.error is not None else "failure"
        _mark(case, kind, "; ".join(unexplained), "\n".join(unexplained))
    cases = suite.findall("testcase")
    suite.set("tests", str(len(cases)))
    suite.set("failures", str(sum(1 for c in cases if c.find("failure") is not None)))
    suite.set("errors", str(sum(1 for c in cases if c.find("error") is not None)))
    suite.set("skipped", str(sum(1 for c in cases if c.find("skipped") is not None)))
    suite.set("time", f"{total:.3f}")
    for key in ("tests", "failures", "errors", "skipped", "time"):
        root.set(key, suite.get(key, "0"))
    ET.indent(root)
    document: bytes = ET.tostring(root, encoding="utf-8", xml_declaration=True)
    return document + b"\n"
