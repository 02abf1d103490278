"""Node output is kept capped, the cut marked: the caps' arithmetic, the ssh wrapper in front of
ansible-playbook's ssh, the job log's per-attempt budget, and the stage deadline's process kill."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from nodewright.jobs.logbuffer import BufferedLog, LogBudget
from nodewright.output_limits import MARKER_PREFIX, CappedStream, cap_text, cut_marker
from nodewright.provisioning.deadline import ProcessDeadline, marked_processes
from nodewright.provisioning.ssh_output_cap import write_launcher


def test_a_capped_stream_keeps_head_and_tail_and_says_how_much_it_cut() -> None:
    stream = CappedStream(10)
    passed = b"".join(stream.feed(bytes([65 + i % 26]) * 7) for i in range(1000))
    assert passed == b"AAAAA"  # the head goes on at once, nothing more
    assert stream.total == 7000 and stream.dropped == 7000 - 10
    assert stream.value() == b"AAAAA\n" + cut_marker(6990).encode() + b"\nLLLLL"


def test_a_short_stream_is_kept_whole_and_unmarked() -> None:
    stream = CappedStream(1 << 20)
    stream.feed(b'{"changed": true}\n')
    assert stream.value() == b'{"changed": true}\n' and MARKER_PREFIX.encode() not in stream.value()


def test_cap_text_marks_the_cut_and_counts_what_came_before() -> None:
    assert cap_text("short") == "short"
    assert cap_text("x" * 600, 500) == "x" * 500 + " " + cut_marker(100, "characters")
    assert cap_text("x" * 10, 500, beyond=90) == "x" * 10 + " " + cut_marker(90, "characters")


def test_the_ssh_wrapper_passes_a_flood_capped_and_the_result_at_its_end(tmp_path: Path) -> None:
    fake_ssh = tmp_path / "fake-ssh"
    fake_ssh.write_text(
        "#!/bin/sh\nhead -c 50000000 /dev/zero; echo; echo '{\"ok\": 1}'; echo oops >&2; exit 3\n"
    )
    fake_ssh.chmod(0o700)
    launcher = write_launcher(tmp_path / "ssh", str(fake_ssh))
    done = subprocess.run([str(launcher), "-o", "x", "node", "cmd"], capture_output=True, check=False)
    assert done.returncode == 3  # ssh's own status
    assert len(done.stdout) < 3 * (1 << 20)  # the 2 MiB cap and the marker, not 50 MB
    assert MARKER_PREFIX.encode() in done.stdout
    assert done.stdout.endswith(b'{"ok": 1}\n')  # a module's result is the last thing it prints
    assert done.stderr == b"oops\n"


def test_the_ssh_wrapper_hands_stdin_to_the_real_ssh(tmp_path: Path) -> None:
    launcher = write_launcher(tmp_path / "ssh", "/bin/cat")
    done = subprocess.run([str(launcher)], input=b"module source", capture_output=True, check=False)
    assert (done.returncode, done.stdout) == (0, b"module source")


def test_the_job_log_budget_cuts_node_output_and_says_so() -> None:
    written: list[tuple[str, str, Mapping[str, Any]]] = []

    def write_many(entries: Sequence[tuple[str, str, Mapping[str, Any]]]) -> None:
        written.extend(entries)

    budget = LogBudget(cap=1000)
    with BufferedLog(write_many, interval=0.01, budget=budget) as sink:
        for n in range(100):
            sink("info", f"line {n:03d} " + "y" * 40, {})
    kept = [message for message, _level, _data in written]
    assert kept[0].startswith("line 000") and len(kept) == 21  # 20 lines of 49 fit, then the note
    assert kept[-1].startswith(MARKER_PREFIX) and "80 more event(s)" in kept[-1]
    assert written[-1][2]["cut_events"] == 80


def test_a_stage_deadline_ends_every_marked_process_even_one_ignoring_sigterm() -> None:
    with ProcessDeadline(time.monotonic() + 0.5, grace=0.5) as deadline:
        child = subprocess.Popen(
            ["/bin/sh", "-c", "trap '' TERM; sleep 1000 & sleep 1000; wait"],
            env={**os.environ, **deadline.env},
            start_new_session=True,  # out of reach of our own process group, as pexpect's child is
        )
        child.wait(timeout=30)  # not a timing assertion: a bound so a broken deadline fails the test
    assert deadline.passed
    assert marked_processes(deadline.mark) == []


def test_a_run_that_ends_in_time_is_left_alone() -> None:
    with ProcessDeadline(time.monotonic() + 60) as deadline:
        subprocess.run([sys.executable, "-c", "pass"], env={**os.environ, **deadline.env}, check=True)
    assert not deadline.passed
