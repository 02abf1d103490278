"""``nodewright smoke``: the whole path on a provider-acquired node, with the evidence kept.

Everything it saw goes into ``--evidence-dir/<node name>/``: the API's answers as JSON (node,
evidence, both jobs' events), ``summary.json`` for scripts and ``summary.md`` for people (pass or fail
first; renders in a merge request, reads in a terminal); ``--junit`` adds a JUnit XML report for CI.
The reports are made by ``cli.smoke_report`` from the API's answers alone.
"""

from __future__ import annotations

import datetime as dt
import json
import time
from pathlib import Path
from typing import Annotated, Any

import typer

from nodewright.cli import smoke_report
from nodewright.cli.client import ApiClient, ApiError
from nodewright.cli.errors import EXIT_FAILED, die, exit_code, fail, say
from nodewright.cli.jobs import detached, read_events
from nodewright.cli.nodes import (
    DEFAULT_IMAGE,
    DEFAULT_LOCATION,
    DEFAULT_PROFILE,
    DEFAULT_SERVER_TYPE,
    SETTLED,
    ImageOption,
    LocationOption,
    ProfileOption,
    ProviderRef,
    ServerTypeOption,
    follow,
    the_provider,
)
from nodewright.cli.options import TokenFile, UrlOption, credentials
from nodewright.cli.smoke_report import SmokeRun, field_of
from nodewright.security.redaction import redact_text
from nodewright.security.text import clean_line


def smoke_command(
    provider: ProviderRef = None,
    location: LocationOption = DEFAULT_LOCATION,
    server_type: ServerTypeOption = DEFAULT_SERVER_TYPE,
    image: ImageOption = DEFAULT_IMAGE,
    profile: ProfileOption = DEFAULT_PROFILE,
    evidence_dir: Annotated[Path, typer.Option("--evidence-dir", help="Where the evidence is kept.")] = Path(
        "smoke-evidence"
    ),
    junit: Annotated[
        Path | None, typer.Option("--junit", help="Also write a JUnit XML report there (for CI).")
    ] = None,
    keep: Annotated[
        bool, typer.Option("--keep", help="Keep the node (default: release it and confirm it is gone).")
    ] = False,
    timeout: Annotated[float, typer.Option(help="Seconds to wait for ready, then for release.")] = 1800.0,
    url: UrlOption = None,
    token_file: TokenFile = None,
) -> None:
    """The whole path on a provider-acquired node: create -> ready -> evidence -> release -> gone.

    Keeps everything it saw in --evidence-dir/<node name>/: the API's answers (node, evidence, job
    logs), summary.json and summary.md (pass or fail, what was made where, stage times, provider
    calls, actions, Ansible recap, checks, release). Exits 0 only when the node became ready, passed
    its checks and (unless --keep) was released; else 1, or the code of the API's refusal (2-5).
    """
    try:
        server, token = credentials(url, token_file)  # a usage error ends it before anything is made
    except ApiError as exc:
        die(exc)
    started = dt.datetime.now(dt.UTC)
    name = f"smoke-{started:%Y%m%d%H%M%S}"
    folder = evidence_dir / name
    try:
        folder.mkdir(parents=True, exist_ok=True)
        if junit is not None:
            junit.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        fail(f"cannot write the evidence: {exc}")  # before anything is made
    request = {"location": location, "server_type": server_type, "image": image, "profile": profile}
    run = SmokeRun(name=name, request=request, keep=keep, started_at=started.isoformat())
    failure = EXIT_FAILED
    interrupted = False
    clock = time.monotonic()
    try:
        with ApiClient(server, token) as api:
            try:
                _run(api, run, provider, folder, timeout)
            except (KeyError, TypeError, ValueError, AttributeError) as exc:
                # An answer of another shape than nodewright's: not the server it claims to be.
                raise ApiError(f"unexpected answer from the server ({type(exc).__name__})", status=200,
                               foreign=True) from None  # fmt: skip
    except ApiError as exc:
        run.error, run.error_code = exc.message, exc.code
        failure = exit_code(exc)
        say(f"error [{exc.code}]: {exc.message}" if exc.code else f"error: {exc.message}", err=True)
    except KeyboardInterrupt:
        run.error, interrupted = "interrupted (Ctrl-C): the node's jobs go on", True
    run.finished_at = dt.datetime.now(dt.UTC).isoformat()
    ok = smoke_report.passed(run)
    _write_reports(run, folder, junit, round(time.monotonic() - clock, 2))
    say(f"smoke {'passed' if ok else 'FAILED'}; evidence in {folder} (read {folder / 'summary.md'})")
    # Why it failed (the run's own error, first among the reasons, was printed as it happened).
    for reason in smoke_report.reasons(run)[0 if run.error is None else 1 :]:
        say(f"  {clean_line(redact_text(reason))}", err=True)
    if interrupted:
        raise detached(f"nodewright nodes show {name}")
    if not ok:
        raise typer.Exit(failure)


def _save(folder: Path, file: str, answer: Any) -> None:
    (folder / file).write_text(json.dumps(answer, indent=2))


def _run(api: ApiClient, run: SmokeRun, provider: str | None, folder: Path, timeout: float) -> None:
    """Create, follow, read the evidence, release, follow, read it again; ``run`` takes each answer as
    it comes, so a failure half-way keeps what was seen until then."""
    provider_id = the_provider(api, provider)
    run.request["provider_id"] = provider_id
    run.provider = api.get(f"/api/providers/{provider_id}")
    body = {"provider_id": provider_id, "name": run.name, "labels": {"purpose": "smoke"},
            **{k: run.request[k] for k in ("location", "server_type", "image", "profile")}}  # fmt: skip
    run.created = api.post("/api/nodes", json=body, headers={"Idempotency-Key": run.name})
    node_id = int(run.created["node"]["id"])
    run.node = follow(api, node_id, until=SETTLED, timeout=timeout, job_id=int(run.created["job"]["id"]))
    _save(folder, "node.json", run.node)
    answer = api.get(f"/api/nodes/{node_id}/evidence")
    _save(folder, "evidence.json", answer)
    run.evidence = answer.get("evidence") or {}
    run.provision_events = read_events(api, int(run.created["job"]["id"]))
    _save(folder, "provision-log.json", {"job_id": run.created["job"]["id"], "items": run.provision_events})
    if run.keep:
        return
    run.release_job = api.request("DELETE", f"/api/nodes/{node_id}")
    job_id = int(run.release_job["job"]["id"])
    known = (run.node["status"], run.node.get("stage"))
    run.released = follow(api, node_id, until={"released", "failed"}, timeout=timeout, known=known,
                          job_id=job_id)  # fmt: skip
    _save(folder, "node-released.json", run.released)
    answer = api.get(f"/api/nodes/{node_id}/evidence")
    _save(folder, "evidence-released.json", answer)
    run.released_evidence = answer.get("evidence") or {}
    run.release_events = read_events(api, job_id)
    _save(folder, "release-log.json", {"job_id": job_id, "items": run.release_events})


def _write_reports(run: SmokeRun, folder: Path, junit: Path | None, took: float) -> None:
    stages = smoke_report.stages(run)
    summary: dict[str, Any] = {
        "name": run.name,
        "ok": smoke_report.passed(run),
        "reasons": smoke_report.reasons(run),
        "provider_id": run.request.get("provider_id"),
        "provider_name": field_of(run.provider, "name"),
        "request": run.request,
        "started_at": run.started_at,
        "finished_at": run.finished_at,
        "seconds": took,
        "node_id": run.node_id,
        "provision_job": field_of(run.created, "job", "id"),
        "status": field_of(run.node, "status"),
        "stages": {s.name: {"result": s.outcome, "seconds": s.seconds} for s in stages},
        "checks": {c.name: c.ok for c in smoke_report.checks(run)},
        "kept": run.keep,
        "release_job": field_of(run.release_job, "job", "id"),
        "released": field_of(run.released, "status") == "released",
    }
    if run.error is not None:
        summary["error"], summary["error_code"] = run.error, run.error_code
    try:
        _save(folder, "summary.json", summary)
        files = {p.name for p in folder.iterdir() if p.is_file()} | {"summary.md"}
        (folder / "summary.md").write_text(smoke_report.markdown(run, files), encoding="utf-8")
        if junit is not None:
            junit.write_bytes(smoke_report.junit(run))
    except OSError as exc:
        fail(f"cannot write the evidence: {exc}", EXIT_FAILED)
