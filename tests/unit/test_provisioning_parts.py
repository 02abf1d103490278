"""Pure parts of provisioning: host-key pinning, SSH failure classes, profiles, the explicit env."""

from __future__ import annotations

import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from nodewright.provisioning.events import EventDigest
from nodewright.provisioning.profiles import ProfileError, available_profiles, get_profile, load_profile
from nodewright.provisioning.runner import explicit_env, write_extravars
from nodewright.provisioning.ssh import (
    HOST_KEY_MISMATCH,
    SSH_AUTH_FAILED,
    SSH_UNREACHABLE,
    PinnedSsh,
    classify,
)
from nodewright.provisioning.target import InvalidHostKey, SshTarget, fingerprint
from nodewright.security.secret import Secret
from tests.support.system import require_binary


def public_key() -> str:
    key = Ed25519PrivateKey.generate().public_key()
    return key.public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH).decode()


def test_fingerprint_matches_ssh_keygen(tmp_path: Path) -> None:
    key = public_key()
    (tmp_path / "k.pub").write_text(key + " comment\n")
    out = subprocess.run(
        [require_binary("ssh-keygen"), "-l", "-E", "sha256", "-f", str(tmp_path / "k.pub")],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    assert out.split()[1] == fingerprint(key)


def test_known_hosts_line_uses_openssh_host_patterns() -> None:
    key = public_key()
    assert SshTarget("198.18.0.5", 22, "root", key).known_hosts_line() == f"198.18.0.5 {key}\n"
    assert SshTarget("198.18.0.5", 2222, "root", key).host_pattern == "[198.18.0.5]:2222"
    assert SshTarget("2001:db8::1", 22, "root", key).host_pattern == "2001:db8::1"
    assert SshTarget("2001:db8::1", 2222, "root", key + " a comment").host_public_key == key
    assert SshTarget("2001:DB8:0::1", 22, "root", key).address == "2001:db8::1"


@pytest.mark.parametrize(
    ("address", "port", "user", "key"),
    [
        ("node.example", 22, "root", None),  # a name a resolver could redirect
        ("198.18.0.5", 0, "root", None),
        ("198.18.0.5", 22, "root; rm -rf /", None),
        # An IPv6 scope id is free text: it would reach known_hosts, ssh's destination and the
        # copy-paste command shown to operators.
        ("fe80::1%x\n* ssh-ed25519 AAAA", 22, "root", None),
        ("fe80::1%';touch /tmp/owned;'", 22, "root", None),
        ("fe80::1%eth0", 22, "root", None),
        (" 198.18.0.5", 22, "root", None),
        ("198.18.0.5", 22, "-oProxyCommand", None),  # an option, not an account
        ("198.18.0.5", 22, "röot", None),  # unicode letters pass str.isalnum
        ("198.18.0.5", 22, "root", "ssh-ed25519"),
        ("198.18.0.5", 22, "root", "ssh-ed25519 not*base64"),
        pytest.param(  # blob of another type (a fresh key: the id names it, for xdist)
            "198.18.0.5", 22, "root", "ssh-rsa " + public_key().split()[1], id="blob-of-another-type"
        ),
    ],
)
def test_bad_targets_are_refused(address: str, port: int, user: str, key: str | None) -> None:
    with pytest.raises((ValueError, InvalidHostKey)):
        SshTarget(address, port, user, key or public_key())


def test_ssh_failures_are_classified() -> None:
    assert classify(0, "") is None
    assert classify(1, "remote command failed") is None  # the command's own status, not ssh's
    mismatch = classify(
        255, "@@@ WARNING: REMOTE HOST IDENTIFICATION HAS CHANGED! @@@\nHost key verification failed."
    )
    assert mismatch is not None and mismatch.code == HOST_KEY_MISMATCH and not mismatch.retryable
    auth = classify(255, "root@198.18.0.5: Permission denied (publickey).")
    assert auth is not None and auth.code == SSH_AUTH_FAILED and not auth.retryable
    down = classify(255, "ssh: connect to host 198.18.0.5 port 22: Connection refused")
    assert down is not None and down.code == SSH_UNREACHABLE and down.retryable


def test_builtin_baseline_profile_loads() -> None:
    profile = get_profile("baseline", None)
    assert "baseline" in available_profiles(None)
    assert profile.playbook.name == "playbook.yml"
    assert profile.checks and all(c.command for c in profile.checks)
    assert profile.full_version.startswith("1+")


def write(directory: Path, profile: Any, playbook: str = "- hosts: all\n  tasks: []\n") -> Path:
    directory.mkdir(parents=True)
    (directory / "profile.yml").write_text(profile)
    (directory / "playbook.yml").write_text(playbook)
    return directory


def test_operator_profiles_are_found_and_override_builtin(tmp_path: Path) -> None:
    write(tmp_path / "web", "version: 2\nchecks:\n  - {name: nginx, command: 'true'}\n")
    write(tmp_path / "baseline", "version: local\n")
    assert get_profile("web", tmp_path).version == "2"
    assert get_profile("baseline", tmp_path).version == "local"
    first = get_profile("web", tmp_path).digest
    (tmp_path / "web" / "playbook.yml").write_text("- hosts: all\n  tasks: [{command: 'true'}]\n")
    assert get_profile("web", tmp_path).digest != first  # the version names what ran


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("[unclosed", "not valid YAML"),
        ("- a list\n", "must be a mapping"),
        ("playbook: x.yml\n", "'version'"),
        ("version: 1\nplaybook: ../../etc/passwd\n", "'playbook'"),
        ("version: 1\nchecks: [{name: x}]\n", "'command'"),
        ("version: 1\ntimeout_seconds: true\n", "'timeout_seconds'"),
        ("version: 1\ntimeout_seconds: -5\n", "'timeout_seconds'"),
        # str() of aliases nested n deep is 2**n long: a few lines of YAML, gigabytes of text.
        ("version: 1\na: &a [x, x]\nb: &b [*a, *a]\ndescription: [*b, *b]\n", "'description'"),
        ("version: 1\nchecks: [{name: x, command: '  '}]\n", "'command'"),
        ("version: 1\nchecks: [{name: '', command: 'true'}]\n", "'name'"),
    ],
)
def test_malformed_profiles_name_the_field(tmp_path: Path, text: str, fragment: str) -> None:
    with pytest.raises(ProfileError, match=fragment):
        load_profile(write(tmp_path / "p", text))


def test_unknown_or_unsafe_profile_names_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ProfileError, match="unknown profile"):
        get_profile("nope", tmp_path)
    with pytest.raises(ProfileError, match="not a profile name"):
        get_profile("../baseline", tmp_path)


def test_explicit_env_drops_everything_inherited(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HCLOUD_TOKEN", "inherited-secret-value")
    runner_env = {"HCLOUD_TOKEN": "inherited-secret-value", "ANSIBLE_STDOUT_CALLBACK": "awx_display"}
    env = explicit_env(runner_env, {"PATH": "/usr/bin"})
    assert env == {"ANSIBLE_STDOUT_CALLBACK": "awx_display", "PATH": "/usr/bin"}


def test_event_digest_redacts_and_keeps_the_first_failure() -> None:
    secret = Secret("s3cr3t-value-for-events")
    lines: list[tuple[str, str]] = []
    digest = EventDigest(lambda level, message, data: lines.append((level, message)))
    digest({"event": "playbook_on_task_start", "event_data": {"task": "a"}})
    digest({"event": "runner_on_failed", "event_data": {"task": "a", "host": "node",
            "res": {"msg": f"bad {secret.reveal()}", "rc": 1}}})  # fmt: skip
    digest({"event": "runner_on_failed", "event_data": {"task": "b", "host": "node", "res": {"rc": 2}}})
    digest({"event": "playbook_on_stats", "event_data": {"ok": {"node": 1}, "failures": {"node": 2}}})
    assert digest.failed is not None and digest.failed.task == "a"
    assert secret.reveal() not in repr(lines) and "[REDACTED]" in digest.failed.message
    assert digest.recap == {"node": {"ok": 1, "failures": 2}}
    assert lines[-1] == ("info", "recap: node: failures=2 ok=1")


def test_extra_vars_are_never_templated(tmp_path: Path) -> None:
    """An operator's SSH key comment holding a Jinja lookup reaches the playbook as text; it does
    not run on the controller (the real ansible-playbook, on the local connection)."""
    marker = tmp_path / "pwned"
    evil = f"ssh-ed25519 AAAA {{{{ lookup('pipe', 'touch {marker}') }}}} \"quoted\" \\ é"
    extravars = {"nw_admin_keys": [evil], "nw_node_id": 7, "nw_node_name": "{{ 7 * 6 }}"}
    playbook = tmp_path / "pb.yml"
    playbook.write_text(
        "- hosts: localhost\n  gather_facts: false\n  connection: local\n  tasks:\n"
        "    - copy:\n        dest: " + str(tmp_path / "out.txt") + "\n"
        "        content: \"{{ nw_admin_keys | join(',') }}|{{ nw_node_id + 1 }}|{{ nw_node_name }}\"\n"
    )
    args = write_extravars(tmp_path / "extravars.yml", extravars)
    bindir = Path(sys.executable).parent
    result = subprocess.run(
        [str(bindir / "ansible-playbook"), "-i", "localhost,", str(playbook),
         "-e", f"ansible_python_interpreter={sys.executable}", *shlex.split(args)],
        capture_output=True, text=True, check=False, timeout=300, stdin=subprocess.DEVNULL,
        env={"PATH": f"{bindir}:/usr/bin:/bin", "HOME": str(tmp_path), "ANSIBLE_LOCAL_TEMP": str(tmp_path),
             "ANSIBLE_HOME": str(tmp_path / "ah")},
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    assert not marker.exists()
    assert (tmp_path / "out.txt").read_text() == f"{evil}|8|{{{{ 7 * 6 }}}}"


def _pinned(tmp_path: Path, *, multiplex: bool) -> PinnedSsh:
    return PinnedSsh(SshTarget("198.18.0.9", 22, "root", public_key()), tmp_path / "agent", tmp_path,
                     multiplex=multiplex)  # fmt: skip


def test_a_background_master_holding_stderr_does_not_hold_the_command(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An ssh that leaves a background process with its stderr (a ControlPersist master of OpenSSH
    before 8) must not keep ``run`` waiting for that stderr's end."""
    bindir = tmp_path / "bin"
    bindir.mkdir()
    fake = bindir / "ssh"
    fake.write_text("#!/bin/sh\nsleep 20 </dev/null >/dev/null &\necho connected\necho warned >&2\nexit 0\n")
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bindir}:/usr/bin:/bin")
    result = _pinned(tmp_path, multiplex=True).run("true", timeout=5)
    assert (result.returncode, result.stdout, result.stderr) == (0, "connected\n", "warned\n")


def test_ending_a_master_never_raises(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``close`` runs in a ``finally``: a wedged master must not replace the caller's own outcome."""
    ssh = _pinned(tmp_path, multiplex=True)
    assert ssh.control_path is not None
    ssh.control_path.write_text("")  # a socket that is there

    def wedged(argv: list[str], **_kwargs: Any) -> subprocess.CompletedProcess[str]:
        raise subprocess.TimeoutExpired(argv, 10)

    monkeypatch.setattr(subprocess, "run", wedged)
    ssh.close()  # does not raise
    _pinned(tmp_path, multiplex=False).close()  # nothing to end


def test_ansible_reads_every_setting_of_the_explicit_environment(tmp_path: Path) -> None:
    """A misspelt ANSIBLE_* name is silently ignored by Ansible: ask Ansible what it took."""
    from nodewright.provisioning.environment import ANSIBLE_CFG, ansible_environment

    (tmp_path / "ansible.cfg").write_text(ANSIBLE_CFG)
    env = ansible_environment(tmp_path, tmp_path, tmp_path / "known_hosts", "ssh-ed25519")
    dumped = subprocess.run(
        [str(Path(sys.executable).parent / "ansible-config"), "dump", "--only-changed"],
        env=env, capture_output=True, text=True, check=True, cwd=tmp_path, stdin=subprocess.DEVNULL,
    ).stdout  # fmt: skip
    taken = {line.split("(env: ", 1)[1].split(")", 1)[0] for line in dumped.splitlines() if "(env: " in line}
    # Connection-plugin settings (ssh args, control path) are not in this dump; the rest must be.
    plugin = {"ANSIBLE_SSH_ARGS", "ANSIBLE_SSH_CONTROL_PATH_DIR", "ANSIBLE_CONFIG"}
    assert {n for n in env if n.startswith("ANSIBLE_")} - plugin - taken == set(), dumped
    assert "DEFAULT_INTERNAL_POLL_INTERVAL(" in dumped and ") = 0.02" in dumped


def test_the_agent_is_waited_for_until_it_listens(tmp_path: Path) -> None:
    """ssh-agent's socket file appears at bind(), before listen(): a client in between is refused
    ("Error connecting to agent: Connection refused" from ssh-add on a loaded machine)."""
    import socket
    import threading
    import time

    from nodewright.provisioning.agent import _wait_listening

    path = tmp_path / "agent.sock"
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(str(path))  # the file exists; nothing listens yet
    listening = threading.Event()

    def listen_later() -> None:
        time.sleep(0.3)
        server.listen(1)
        listening.set()

    stand_in = subprocess.Popen(["sleep", "30"])  # the agent process, alive
    try:
        threading.Thread(target=listen_later, daemon=True).start()
        _wait_listening(path, stand_in, time.monotonic() + 5)
        assert listening.is_set()
    finally:
        stand_in.kill()
        stand_in.wait()
        server.close()
