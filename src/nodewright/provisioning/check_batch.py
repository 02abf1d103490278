"""Every check of one node in ONE remote command: one SSH connection (one handshake, one ssh process)
instead of a master, a client per check and ``ssh -O exit``. What watching runs each interval.

The node runs a small POSIX shell script: each check's command in a subshell of its own, stdin from
/dev/null, its stdout and stderr to files in a private ``mktemp -d`` directory, then prints a frame::

    <nonce> <step> <exit status>
    <base64 of the first BATCH_STREAM_CAP bytes of stdout>
    <nonce>
    <base64 of the first BATCH_STREAM_CAP bytes of stderr>
    <nonce>

The nonce starts with ``nw-`` ('-' is outside base64's alphabet), so no output line of a check can
end a frame early. The node is not trusted: its shell can print anything, forge frames or none.
Parsing only ever yields a per-step ``SshResult`` for the existing interpreters (``checks.*_result``),
a step without a complete frame is "did not report" (or timed out, at the deadline), and the steps
after it are not reported. The whole answer stays capped by ``PinnedSsh.run`` (output_limits), each
step's streams by ``head -c`` on the node, each detail at 300 characters as before.

Semantics kept from the one-command-per-check path: SSH first (nothing else is reported without a
login), then the marker, cloud-init and the profile's checks; the watch checks are reported only
when every readiness check passed (the script runs them only when every readiness command exited 0
or, for cloud-init, 100 "not present"); at the deadline the step running is timed out and the rest
are not reported.
"""

from __future__ import annotations

import binascii
import secrets
import shlex
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from nodewright.provisioning import checks
from nodewright.provisioning.checks import CheckResult
from nodewright.provisioning.profiles import Check, Profile
from nodewright.provisioning.ssh import PinnedSsh, SshResult

BATCH_STREAM_CAP = 16 * 1024  # bytes of each stream of each step the node sends back
_NO_TEMP_DIR = 97


@dataclass(frozen=True)
class Step:
    name: str
    command: str
    interpret: Callable[[SshResult], CheckResult]
    # Readiness steps gate the watch steps: those run (and count) only after all of these passed.
    readiness: bool = True


def script(steps: Sequence[Step], nonce: str) -> str:
    """The remote script; commands are quoted with ``shlex.quote`` and run by ``eval`` in a subshell
    (an ``exit`` in a check ends its subshell, not the script)."""
    lines = [
        f"n={nonce}",
        f"d=$(mktemp -d 2>/dev/null) || exit {_NO_TEMP_DIR}",
        "trap 'rm -rf \"$d\"' EXIT",
        "gate=0",
        'step() { ( eval "$2" ) </dev/null >"$d/o" 2>"$d/e"; r=$?; '
        'printf "%s %s %s\\n" "$n" "$1" "$r"; '
        f'head -c {BATCH_STREAM_CAP} "$d/o" | base64; echo "$n"; '
        f'head -c {BATCH_STREAM_CAP} "$d/e" | base64; echo "$n"; return $r; }}',
    ]
    for index, step in enumerate(steps):
        call = f"step {index} {shlex.quote(step.command)}"
        if step.readiness:
            # cloud-init's "not present" (100) passes; any other non-zero status closes the gate.
            lines.append(f"{call}; r=$?; [ $r -eq 0 ] || [ $r -eq {checks._NO_CLOUD_INIT} ] || gate=1")
        else:
            lines.append(f'[ "$gate" -eq 0 ] && {call}')
    lines.append("exit 0")
    return "\n".join(lines) + "\n"


def _decode(lines: list[str]) -> str | None:
    try:
        raw = binascii.a2b_base64("".join(lines).encode("ascii"), strict_mode=True)
    except (binascii.Error, UnicodeEncodeError):
        return None
    return raw.decode("utf-8", errors="replace")


def parse(stdout: str, nonce: str, count: int) -> dict[int, tuple[int, str, str]]:
    """``{step: (exit status, stdout, stderr)}`` for each complete, well-formed frame of a step
    below ``count``; the first frame of a step wins, anything else is ignored."""
    frames: dict[int, tuple[int, str, str]] = {}
    lines = stdout.split("\n")
    index = 0
    while index < len(lines):
        head = lines[index].split(" ")
        index += 1
        if len(head) != 3 or head[0] != nonce or not head[1].isdigit() or not head[2].isdigit():
            continue
        parts: list[list[str]] = [[], []]
        part = 0
        while index < len(lines) and part < 2:
            if lines[index] == nonce:
                part += 1
            else:
                parts[part].append(lines[index])
            index += 1
        if part < 2:
            break  # cut (deadline or output cap): the frame is incomplete
        step = int(head[1])
        out, err = _decode(parts[0]), _decode(parts[1])
        if step < count and step not in frames and out is not None and err is not None:
            frames[step] = (int(head[2]), out, err)
    return frames


def readiness_steps(node_id: int, profile: Profile) -> list[Step]:
    return [
        Step("marker", checks.MARKER_COMMAND,
             lambda r: checks.marker_result(r, node_id=node_id, profile=profile)),
        Step("cloud-init", checks.CLOUD_INIT_COMMAND, checks.cloud_init_result),
        *(Step(c.name, c.command, _command(c.name)) for c in profile.checks),
    ]  # fmt: skip


def _command(name: str) -> Callable[[SshResult], CheckResult]:
    return lambda result: checks.command_result(name, result)


def run_batched(
    ssh: PinnedSsh,
    *,
    node_id: int,
    profile: Profile,
    watch_checks: Sequence[Check] = (),
    deadline: float,
) -> list[CheckResult]:
    """The results ``run_checks`` and then the watch checks would give, from one SSH command."""
    steps = [
        Step(checks.SSH_CHECK, "true", lambda _r: CheckResult(checks.SSH_CHECK, True, "")),  # see below
        *readiness_steps(node_id, profile),
        *(Step(c.name, c.command, _command(c.name), readiness=False) for c in watch_checks),
    ]
    nonce = "nw-" + secrets.token_hex(16)
    outer = ssh.run(script(steps, nonce), timeout=60, deadline=deadline)
    frames = parse(outer.stdout, nonce, len(steps))
    if 0 not in frames:
        failure = outer.failure()
        if failure is not None:
            return [CheckResult(checks.SSH_CHECK, False, f"{failure.code}: {failure.message}",
                                timed_out=outer.timed_out)]  # fmt: skip
        return [_silent(checks.SSH_CHECK, outer)]
    results = [CheckResult(checks.SSH_CHECK, True, ssh.target.host_key_fingerprint)]
    for index, step in enumerate(steps[1:], start=1):
        if not step.readiness and not all(r.ok for r in results):
            break
        frame = frames.get(index)
        if frame is None:
            results.append(_timed_out(step.name, outer) if outer.timed_out else _silent(step.name, outer))
            break
        returncode, out, err = frame
        results.append(step.interpret(SshResult(returncode, out, err, ssh_log=outer.ssh_log)))
    return results


def _timed_out(name: str, outer: SshResult) -> CheckResult:
    return CheckResult(name, False, f"did not finish: {checks._detail(outer.stderr)}", timed_out=True)


def _silent(name: str, outer: SshResult) -> CheckResult:
    """The node's shell ended without a frame for this step (killed, or a hostile shell)."""
    if outer.returncode == _NO_TEMP_DIR:
        return CheckResult(name, False, "the node could not make a temporary directory (mktemp -d)")
    detail = checks._detail(outer.stderr)
    message = f"did not report (the node's shell exited {outer.returncode}) {detail}"
    return CheckResult(name, False, message.strip())
