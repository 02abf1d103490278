"""Readiness checks of the verify stage; every result is kept as evidence.

Builtin checks first (SSH with the pinned key, the marker names this node, cloud-init finished where
present), then the profile's own: a shell command on the node, passing on exit status 0. Each command's
output is read capped (``PinnedSsh.run``); a detail keeps at most 300 characters of it.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

from nodewright.provisioning.profiles import Profile
from nodewright.provisioning.ssh import PinnedSsh, SshResult
from nodewright.security.redaction import redact_text

MARKER_PATH = "/etc/nodewright/node.json"
_NO_CLOUD_INIT = 100
SSH_CHECK = "ssh with the pinned host key"
MARKER_COMMAND = f"cat {MARKER_PATH}"
CLOUD_INIT_COMMAND = f"command -v cloud-init >/dev/null 2>&1 || exit {_NO_CLOUD_INIT}; cloud-init status"


@dataclass(frozen=True)
class CheckResult:
    name: str
    ok: bool
    detail: str
    timed_out: bool = False  # ended by the stage's deadline

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _detail(text: str) -> str:
    clean = redact_text(text.strip())
    return clean if len(clean) <= 300 else clean[:300] + "…"


def _timed_out(name: str, result: SshResult) -> CheckResult:
    return CheckResult(name, False, f"did not finish: {_detail(result.stderr)}", timed_out=True)


def ssh_result(ssh: PinnedSsh, result: SshResult) -> CheckResult:
    name = SSH_CHECK
    failure = result.failure()
    if failure is None:
        return CheckResult(name, True, ssh.target.host_key_fingerprint)
    return CheckResult(name, False, f"{failure.code}: {failure.message}", timed_out=result.timed_out)


def check_ssh(ssh: PinnedSsh, deadline: float | None = None) -> CheckResult:
    return ssh_result(ssh, ssh.run("true", timeout=30, deadline=deadline))


def marker_result(result: SshResult, *, node_id: int, profile: Profile) -> CheckResult:
    name = "node marker names this node"
    if result.timed_out:
        return _timed_out(name, result)
    if result.returncode != 0:
        return CheckResult(name, False, f"{MARKER_PATH} missing: {_detail(result.stderr)}")
    try:
        marker = json.loads(result.stdout)
    except ValueError:
        return CheckResult(name, False, f"{MARKER_PATH} is not JSON")
    if not isinstance(marker, dict):
        return CheckResult(name, False, f"{MARKER_PATH} is not a JSON object")
    if marker.get("node_id") != node_id:
        return CheckResult(name, False, f"{MARKER_PATH} names node {_detail(str(marker.get('node_id')))}")
    if marker.get("profile") != profile.name:
        return CheckResult(name, False, f"{MARKER_PATH} names profile {_detail(str(marker.get('profile')))}")
    return CheckResult(name, True, f"node {node_id}, profile {profile.name} {marker.get('profile_version')}")


def check_marker(
    ssh: PinnedSsh, *, node_id: int, profile: Profile, deadline: float | None = None
) -> CheckResult:
    result = ssh.run(MARKER_COMMAND, timeout=30, deadline=deadline)
    return marker_result(result, node_id=node_id, profile=profile)


def cloud_init_result(result: SshResult) -> CheckResult:
    name = "cloud-init finished"
    if result.timed_out:
        return _timed_out(name, result)
    if result.returncode == _NO_CLOUD_INIT:
        return CheckResult(name, True, "cloud-init not present")
    status = ""
    for line in result.stdout.splitlines():
        if line.strip().startswith("status:"):
            status = line.split(":", 1)[1].strip()
    if status in ("done", "disabled"):
        return CheckResult(name, True, f"status: {status}")
    return CheckResult(name, False, f"status: {status or 'unknown'} {_detail(result.stderr)}".strip())


def check_cloud_init(ssh: PinnedSsh, deadline: float | None = None) -> CheckResult:
    return cloud_init_result(ssh.run(CLOUD_INIT_COMMAND, timeout=30, deadline=deadline))


def command_result(name: str, result: SshResult) -> CheckResult:
    if result.timed_out:
        return _timed_out(name, result)
    if result.returncode == 0:
        return CheckResult(name, True, "exit 0")
    failure = result.failure()
    if failure is not None:
        return CheckResult(name, False, f"{failure.code}: {failure.message}")
    return CheckResult(name, False, f"exit {result.returncode}: {_detail(result.stderr or result.stdout)}")


def check_command(ssh: PinnedSsh, name: str, command: str, deadline: float | None = None) -> CheckResult:
    return command_result(name, ssh.run(command, timeout=60, deadline=deadline))


def run_checks(
    ssh: PinnedSsh, *, node_id: int, profile: Profile, deadline: float | None = None
) -> list[CheckResult]:
    """Every check, each ended at the monotonic ``deadline`` (the verify stage's) at the latest;
    once one was ended by it, the rest are not started."""
    results = [check_ssh(ssh, deadline)]
    if not results[0].ok:
        return results  # nothing else can be learned without a connection
    steps: list[Callable[[], CheckResult]] = [
        lambda: check_marker(ssh, node_id=node_id, profile=profile, deadline=deadline),
        lambda: check_cloud_init(ssh, deadline),
        *(functools.partial(check_command, ssh, c.name, c.command, deadline) for c in profile.checks),
    ]
    for step in steps:
        results.append(step())
        if results[-1].timed_out:
            break
    return results
