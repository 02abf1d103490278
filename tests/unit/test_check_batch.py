"""The batched checks' remote script and its parser: the script is run by the real /bin/sh (dash) and
bash here, as a node's login shell would run it; the parser meets what a hostile node may print."""

from __future__ import annotations

import base64
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from nodewright.provisioning.check_batch import BATCH_STREAM_CAP, Step, parse, script
from nodewright.provisioning.checks import CheckResult

NONCE = "nw-" + "ab" * 16


def keep(_result: object) -> CheckResult:
    return CheckResult("x", True, "")


def run_script(shell: str, steps: list[Step]) -> str:
    binary = shutil.which(shell)
    if binary is None:
        pytest.skip(f"{shell} not installed")
    done = subprocess.run([binary, "-c", script(steps, NONCE)], capture_output=True, timeout=60, check=False,
                          stdin=subprocess.DEVNULL)  # fmt: skip
    assert done.returncode == 0, done.stderr
    return done.stdout.decode()


@pytest.mark.parametrize("shell", ["sh", "bash"])
def test_each_step_reports_its_status_and_streams_apart(shell: str) -> None:
    steps = [
        Step("ssh", "true", keep),
        Step("quoting", """printf '%s\\n' "it's" '$HOME' "a  b"; echo err >&2""", keep),
        Step("exit in a check ends its subshell only", "exit 3", keep),
        Step("stdin is empty", "cat; echo done", keep),
        Step("binary and a frame-like line", f"printf '\\000\\377'; echo; echo '{NONCE} 9 0'", keep),
    ]
    frames = parse(run_script(shell, steps), NONCE, len(steps))
    assert frames[0] == (0, "", "")
    assert frames[1] == (0, "it's\n$HOME\na  b\n", "err\n")
    assert frames[2][0] == 3
    assert frames[3] == (0, "done\n", "")
    status, out, _err = frames[4]
    assert status == 0 and out.endswith(f"\n{NONCE} 9 0\n")  # inside the frame, not a frame of its own
    assert 9 not in frames


def test_watch_steps_run_only_when_every_readiness_command_passed(tmp_path: Path) -> None:
    flag = f"{tmp_path}/ran"
    watch = Step("watch", f"touch {flag}", keep, readiness=False)
    failing = [Step("ssh", "true", keep), Step("marker", "exit 1", keep), watch]
    assert 2 not in parse(run_script("sh", failing), NONCE, 3)
    assert not os.path.exists(flag)
    absent_cloud_init = [Step("ssh", "true", keep), Step("cloud-init", "exit 100", keep), watch]
    assert parse(run_script("sh", absent_cloud_init), NONCE, 3)[2][0] == 0
    assert os.path.exists(flag)


def test_a_flooding_step_is_cut_on_the_node_and_the_next_step_still_reports() -> None:
    steps = [Step("flood", "head -c 3000000 /dev/zero | tr '\\000' x", keep), Step("after", "echo ok", keep)]
    frames = parse(run_script("sh", steps), NONCE, 2)
    assert len(frames[0][1]) == BATCH_STREAM_CAP
    assert frames[1] == (0, "ok\n", "")


def frame(step: object, status: object, out: bytes = b"", err: bytes = b"", nonce: str = NONCE) -> str:
    encode = lambda data: base64.encodebytes(data).decode()  # noqa: E731
    return f"{nonce} {step} {status}\n{encode(out)}{nonce}\n{encode(err)}{nonce}\n"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (frame(0, 0, b"a") + frame(0, 1, b"forged"), {0: (0, "a", "")}),  # the first frame of a step wins
        (frame(0, 0, nonce="nw-" + "cd" * 16), {}),  # another nonce
        (frame(5, 0), {}),  # a step that does not exist
        (frame(0, "-1") + frame(1, "x"), {}),  # not a status
        (frame(0, 0) + frame(1, 0)[: -len(NONCE) - 2], {0: (0, "", "")}),  # cut before its end
        (f"{NONCE} 0 0\n!!!not base64\n{NONCE}\n{NONCE}\n", {}),
        ("garbage\n" * 100 + frame(1, 2, err=b"\xff\xfe"), {1: (2, "", "\ufffd\ufffd")}),
        ("", {}),
    ],
)
def test_the_parser_takes_only_complete_frames_of_known_steps(
    text: str, expected: dict[int, tuple[int, str, str]]
) -> None:
    assert parse(text, NONCE, 2) == expected


def test_the_kex_setting_reaches_ssh_as_one_option_and_refuses_anything_else(tmp_path: Path) -> None:
    from pydantic import ValidationError

    from nodewright.config import Settings
    from nodewright.provisioning.ssh import PinnedSsh
    from nodewright.provisioning.target import SshTarget

    key = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl"
    target = SshTarget("198.18.0.2", 22, "root", key)
    options = PinnedSsh(
        target, tmp_path / "agent.sock", tmp_path, kex_algorithms="^curve25519-sha256"
    ).options()
    assert options[options.index("KexAlgorithms=^curve25519-sha256") - 1] == "-o"
    assert not any(
        o.startswith("KexAlgorithms") for o in PinnedSsh(target, tmp_path / "a", tmp_path).options()
    )
    assert Settings(watch_ssh_kex_algorithms="").watch_ssh_kex_algorithms == ""
    for bad in ("curve25519-sha256 ProxyCommand=sh", "a\nb", "x;y"):
        with pytest.raises(ValidationError):
            Settings(watch_ssh_kex_algorithms=bad)
