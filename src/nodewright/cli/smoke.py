"""``nodewright smoke``: the whole path on a provider-acquired node, with the evidence kept."""

from __future__ import annotations

import datetime as dt
import json
import time
from pathlib import Path
from typing import Annotated, Any

import typer

from nodewright.cli.client import ApiClient, ApiError
from nodewright.cli.errors import EXIT_FAILED, die, exit_code, say
from nodewright.cli.nodes import SETTLED, follow
from nodewright.cli.options import TokenFile, UrlOption, credentials


def smoke_command(
    provider: Annotated[int, typer.Option("--provider", help="Provider connection to acquire from.")],
    location: Annotated[str, typer.Option("--location")] = "fsn1",
    server_type: Annotated[str, typer.Option("--type")] = "cx22",
    image: Annotated[str, typer.Option("--image")] = "ubuntu-24.04",
    evidence_dir: Annotated[Path, typer.Option("--evidence-dir", help="Where the evidence is kept.")] = Path(
        "smoke-evidence"
    ),
    keep: Annotated[bool, typer.Option("--keep", help="Keep the node (default: release it).")] = False,
    timeout: Annotated[float, typer.Option(help="Seconds to wait for ready, then for release.")] = 1800.0,
    url: UrlOption = None,
    token_file: TokenFile = None,
) -> None:
    """The whole path on a provider-acquired node: create -> ready -> evidence -> release -> gone.

    Keeps everything it saw in --evidence-dir/<node name>/ (node, evidence, job logs, summary).
    Exits 0 only when the node became ready, passed its checks and (unless --keep) was released.
    """
    try:
        server, token = credentials(url, token_file)  # a usage error ends it before anything is made
    except ApiError as exc:
        die(exc)
    name = f"smoke-{dt.datetime.now(dt.UTC):%Y%m%d%H%M%S}"
    folder = evidence_dir / name
    folder.mkdir(parents=True, exist_ok=True)
    failure = EXIT_FAILED
    summary: dict[str, Any] = {
        "name": name,
        "provider_id": provider,
        "started_at": dt.datetime.now(dt.UTC).isoformat(),
    }
    ok = False
    try:
        with ApiClient(server, token) as api:
            body = {"provider_id": provider, "name": name, "location": location, "server_type": server_type,
                    "image": image, "labels": {"purpose": "smoke"}}  # fmt: skip
            created = api.post("/api/nodes", json=body, headers={"Idempotency-Key": name})
            node_id = created["node"]["id"]
            summary["node_id"], summary["provision_job"] = node_id, created["job"]["id"]
            started = time.monotonic()
            node = follow(api, node_id, until=SETTLED, timeout=timeout)
            summary["seconds_to_settle"] = round(time.monotonic() - started, 2)
            summary["status"] = node["status"]
            (folder / "node.json").write_text(json.dumps(node, indent=2))
            evidence = api.get(f"/api/nodes/{node_id}/evidence")
            (folder / "evidence.json").write_text(json.dumps(evidence, indent=2))
            events = api.get(f"/api/jobs/{created['job']['id']}/events", params={"limit": 1000})
            (folder / "provision-log.json").write_text(json.dumps(events, indent=2))
            checks = evidence["evidence"].get("checks") or []
            summary["checks"] = {c["name"]: c["ok"] for c in checks}
            ok = node["status"] == "ready" and bool(checks) and all(c["ok"] for c in checks)
            if not keep:
                released = api.request("DELETE", f"/api/nodes/{node_id}")
                summary["release_job"] = released["job"]["id"]
                final = follow(api, node_id, until={"released", "failed"}, timeout=timeout)
                (folder / "node-released.json").write_text(json.dumps(final, indent=2))
                log = api.get(f"/api/jobs/{released['job']['id']}/events", params={"limit": 1000})
                (folder / "release-log.json").write_text(json.dumps(log, indent=2))
                summary["released"] = final["status"] == "released"
                ok = ok and final["status"] == "released"
    except ApiError as exc:
        summary["error"] = exc.message
        summary["error_code"] = exc.code
        failure = exit_code(exc)
        say(f"error [{exc.code}]: {exc.message}" if exc.code else f"error: {exc.message}", err=True)
    summary["ok"] = ok
    (folder / "summary.json").write_text(json.dumps(summary, indent=2))
    say(f"smoke {'passed' if ok else 'FAILED'}; evidence in {folder}")
    if not ok:
        raise typer.Exit(failure)
