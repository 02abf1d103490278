# ruff: noqa: F811  (pytest fixtures are imported by name and then requested as parameters)
"""Root in a simulated node reads nothing of the host: not by path (its disk is built from an
allowlist) and not by permission (its root is an unprivileged id range on the host).

The probe runs as root inside a real node, over the host paths an attacker goes for first; a
canary written on the host, in the places a control plane keeps its data, is looked for with
``grep -r`` over the node's whole tree.
"""

from __future__ import annotations

import base64
import hashlib
import os
import secrets
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import hcloud
import httpx
import pytest
from hcloud.images import Image
from hcloud.server_types import ServerType
from hcloud.ssh_keys import SSHKey

from nodewright.sim.nodes.entry import ID_COUNT, KEPT_CAPABILITIES
from nodewright.sim.server import SimServer
from tests.fixtures.sim import (  # noqa: F401
    node_ssh_port,
    random_token,
    ssh_keypair,
    ssh_sim_server,
)
from tests.support.system import require_binary

PORT = node_ssh_port()
# Host places where a canary is written; none of them may show in a node. (/usr is shared with the
# nodes by design, read-only beneath each node's own layer, so no canary goes there.)
CANARY_DIRS = (
    "/var/lib",
    "/var/log",
    "/opt",
    "/srv",
    "/mnt",
    "/root",
    "/home",
    "/etc/ssl/private",
    "/var/tmp",
)

# Names a fresh node has in these directories too (its own, not the host's).
SKELETON = {
    "root": {".bashrc", ".profile", ".ssh"},
    "var/lib": {"dpkg", "apt", "misc", "cloud"},
    "var/log": {"apt", "wtmp", "btmp", "lastlog"},
}


@pytest.fixture
def client(ssh_sim_server: SimServer) -> hcloud.Client:
    httpx.post(ssh_sim_server.base_url + "/_sim/reset").raise_for_status()
    return hcloud.Client(
        token=random_token(), api_endpoint=ssh_sim_server.api_url, poll_interval=0.02, poll_max_retries=3000
    )


@pytest.fixture
def host_canary(tmp_path: Path) -> Iterator[tuple[str, list[Path]]]:
    """A random string written into a file in each of :data:`CANARY_DIRS` and in a nodewright
    data directory; everything is removed afterwards."""
    canary = f"nodewright-host-canary-{secrets.token_hex(8)}"
    written: list[Path] = []
    data_dir = tmp_path / ".nodewright"
    data_dir.mkdir()
    for directory in (*CANARY_DIRS, str(data_dir)):
        path = Path(directory) / f"nodewright-canary-{secrets.token_hex(4)}.txt"
        if not path.parent.is_dir():
            continue
        path.write_text(f"{canary}\n")
        os.chmod(path, 0o644)
        written.append(path)
    (data_dir / "secret.keys").write_text(f"{canary}\n")
    written.append(data_dir / "secret.keys")
    try:
        yield canary, written
    finally:
        for path in written:
            path.unlink(missing_ok=True)


def create_node(client: hcloud.Client, name: str, public_key: str) -> tuple[int, str]:
    key = client.ssh_keys.get_by_fingerprint(fingerprint(public_key)) or client.ssh_keys.create(
        name=f"key-{name}", public_key=public_key
    )
    result = client.servers.create(
        name,
        server_type=ServerType(name="cx23"),
        image=Image(name="ubuntu-24.04"),
        ssh_keys=[SSHKey(id=key.id)],
    )
    result.action.wait_until_finished()
    for action in result.next_actions:
        action.wait_until_finished()
    server = client.servers.get_by_id(result.server.id)
    return server.id, server.public_net.ipv4.ip


def fingerprint(public_key: str) -> str:
    digest = hashlib.md5(base64.b64decode(public_key.split()[1]), usedforsecurity=False).hexdigest()
    return ":".join(digest[i : i + 2] for i in range(0, len(digest), 2))


def node_root_run(key: Path, tmp_path: Path, address: str, command: str) -> subprocess.CompletedProcess[str]:
    known_hosts = tmp_path / f"kh-{secrets.token_hex(4)}"
    return subprocess.run(
        [require_binary("ssh"), "-i", str(key), "-o", "StrictHostKeyChecking=no",
         "-o", f"UserKnownHostsFile={known_hosts}", "-o", "BatchMode=yes", "-o", "IdentitiesOnly=yes",
         "-o", "ConnectTimeout=10", "-p", str(PORT), f"root@{address}", command],
        capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip


def postgres_canary_row(canary: str) -> bool:
    """Write the canary into the machine's PostgreSQL (when the test run has one) and checkpoint,
    so that it is in the data files on disk, as the audit found a row there. Returns whether it did."""
    url = os.environ.get("NODEWRIGHT_TEST_POSTGRES_URL")
    if not url:
        return False
    import psycopg

    with psycopg.connect(url.replace("postgresql+psycopg://", "postgresql://"), autocommit=True) as conn:
        conn.execute("CREATE TABLE IF NOT EXISTS nodewright_host_canary (value text)")
        conn.execute("INSERT INTO nodewright_host_canary VALUES (%s)", (canary,))
        conn.execute("CHECKPOINT")
    return True


def drop_postgres_canary() -> None:
    url = os.environ.get("NODEWRIGHT_TEST_POSTGRES_URL")
    if url:
        import psycopg

        with psycopg.connect(url.replace("postgresql+psycopg://", "postgresql://"), autocommit=True) as conn:
            conn.execute("DROP TABLE IF EXISTS nodewright_host_canary")


def test_root_in_a_node_reads_nothing_of_the_host(
    client: hcloud.Client,
    ssh_sim_server: SimServer,
    ssh_keypair: tuple[Path, str],
    host_canary: tuple[str, list[Path]],
    tmp_path: Path,
) -> None:
    key_path, public_key = ssh_keypair
    canary, written = host_canary
    in_postgres = postgres_canary_row(canary)
    try:
        _, other_address = create_node(client, "other-1", public_key)
        _, address = create_node(client, "probe-1", public_key)
        node_root = httpx.get(ssh_sim_server.base_url + "/_sim/status").json()["node_root"]
        host_key_text = "".join(
            p.read_text() for p in sorted(Path("/etc/ssh").glob("ssh_host_*_key")) if p.is_file()
        )
        paths = [
            *(str(p) for p in written),
            "/var/lib/postgresql", "/etc/postgresql", "/run/postgresql", "/var/run/postgresql",
            str(tmp_path), node_root, f"{node_root}/image", "/proc/1/root" + str(written[0]),
            *(f"/root/{p.name}" for p in Path("/root").iterdir() if p.name not in SKELETON["root"]),
            *(f"/home/{p.name}" for p in Path("/home").iterdir()),
            *(f"/var/lib/{p.name}" for p in Path("/var/lib").iterdir() if p.name not in SKELETON["var/lib"]),
            *(f"/opt/{p.name}" for p in Path("/opt").iterdir()),
            *(f"/srv/{p.name}" for p in Path("/srv").iterdir()),
            *(f"/var/log/{p.name}" for p in Path("/var/log").iterdir() if p.name not in SKELETON["var/log"]),
            *(f"/etc/ssl/private/{p.name}" for p in Path("/etc/ssl/private").iterdir()),
            str(Path(__file__).resolve().parents[2]),  # the checkout
        ]  # fmt: skip
        probe = "for p in " + " ".join(f"'{p}'" for p in paths) + '; do [ -e "$p" ] && echo "seen $p"; done; '
        probe += "cat /etc/ssh/ssh_host_*_key; echo ==grep; "
        # grep everything but the kernel's views and /usr, which is the host's own read-only /usr by
        # design (no canary is written there).
        skipped = " ".join(f"--exclude-dir={d}" for d in ("proc", "sys", "usr"))
        probe += f"grep -rIl {skipped} '{canary}' / 2>/dev/null; echo ==end"
        result = node_root_run(key_path, tmp_path, address, probe)
        assert result.returncode == 0, result.stderr
        assert "==end" in result.stdout, result.stdout + result.stderr
        head, _, rest = result.stdout.partition("==grep")
        grep_hits = rest.replace("==end", "").split()
        assert [line for line in head.splitlines() if line.startswith("seen ")] == []
        assert grep_hits == [], f"the host's canary was found in the node: {grep_hits}"
        assert host_key_text.strip() and host_key_text.strip() not in head  # the node has keys of its own
        assert "BEGIN OPENSSH PRIVATE KEY" in head
        # The probe's reach to the other node's disk, by the other node's address, is the network tests'.
        assert other_address != address
    finally:
        if in_postgres:
            drop_postgres_canary()


def node_processes_on_host(ssh_sim_server: SimServer, server_id: int) -> list[int]:
    """The host's pids of a node's processes: the children of its launcher and their descendants."""
    entries = httpx.get(ssh_sim_server.base_url + "/_sim/servers").json()["servers"]
    launcher = next(e for e in entries if e["id"] == server_id)["ssh"]["node"]["pid"]
    assert launcher, entries
    found: list[int] = []
    queue = [int(launcher)]
    while queue:
        pid = queue.pop()
        try:
            children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
        except OSError:
            continue
        found.extend(int(c) for c in children)
        queue.extend(int(c) for c in children)
    return found


def test_a_nodes_root_is_an_unprivileged_id_range_on_the_host(
    client: hcloud.Client, ssh_sim_server: SimServer, ssh_keypair: tuple[Path, str], tmp_path: Path
) -> None:
    """By permission too: every process of the node runs, as seen from the host, as an id of the
    node's own range (not the host's root), with no capability beyond the tenant's set."""
    key_path, public_key = ssh_keypair
    server_id, address = create_node(client, "ids-1", public_key)
    result = node_root_run(
        key_path, tmp_path, address, "id -u; cat /proc/self/uid_map; grep CapBnd /proc/self/status"
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.split("\n")
    assert lines[0] == "0"  # root inside
    inside, outside, count = (int(x) for x in lines[1].split())
    assert (inside, count) == (0, ID_COUNT)
    assert outside >= 2 * ID_COUNT  # never the host's own ids
    bounding = int(lines[2].split()[1], 16)
    allowed = {
        "chown": 0, "dac_override": 1, "fowner": 3, "fsetid": 4, "kill": 5, "setgid": 6, "setuid": 7,
        "setpcap": 8, "net_bind_service": 10, "sys_chroot": 18, "setfcap": 31,
    }  # fmt: skip
    assert set(allowed) == set(KEPT_CAPABILITIES)
    assert bounding == sum(1 << n for n in allowed.values())
    pids = node_processes_on_host(ssh_sim_server, server_id)
    assert pids, "the node has processes"
    for pid in pids:
        try:
            uids = Path(f"/proc/{pid}/status").read_text().split("Uid:")[1].split()[:4]
        except (OSError, IndexError):
            continue  # ended meanwhile
        assert all(outside <= int(u) < outside + ID_COUNT for u in uids), (pid, uids)


def test_simulated_nodes_refuse_a_data_directory_they_could_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``nodewright sim`` (and the demo) refuse SSH nodes, in one line, when a nodewright data
    directory lies where nodes could read it: under /usr, which they share, or /etc, which they copy."""
    from tests.fixtures.sim import fast_config

    if os.geteuid() != 0:
        pytest.skip("needs root")
    visible = Path("/usr/local/share") / f"nodewright-data-{secrets.token_hex(4)}"
    monkeypatch.setenv("NODEWRIGHT_DATA_DIR", str(visible))
    config = fast_config()
    config.ssh_nodes = True
    config.ssh_port = PORT
    server = SimServer(ssh_nodes=True, config=config)
    try:
        with pytest.raises(ValueError, match=r"nodewright data directory .* would be readable inside every"):
            server.start()
    finally:
        server.stop()
        shutil.rmtree(visible, ignore_errors=True)
    monkeypatch.setenv("NODEWRIGHT_DATA_DIR", str(tmp_path / ".nodewright"))
    config.protected_paths = ("/etc/nodewright-demo",)
    server = SimServer(ssh_nodes=True, config=config)
    try:
        with pytest.raises(ValueError, match="/etc/nodewright-demo"):
            server.start()
    finally:
        server.stop()


def test_the_tools_of_a_server_still_work_in_a_node(
    client: hcloud.Client, ssh_keypair: tuple[Path, str], tmp_path: Path
) -> None:
    """What the user namespace must not break: users and sudo (setuid root from the shared /usr),
    the package tools' databases, cloud-init, the node's own hostname, a copy-on-write /usr.
    (Changing the hostname at run time needs ``sys_admin``, which nodes do not keep.)"""
    key_path, public_key = ssh_keypair
    _, address = create_node(client, "tools-1", public_key)
    checks = {
        "useradd": "useradd -m -s /bin/bash probe && echo ok",
        "sudo": "echo 'probe ALL=(ALL) NOPASSWD:ALL' > /etc/sudoers.d/probe "
        "&& chmod 0440 /etc/sudoers.d/probe && su - probe -c 'sudo -n id -u'",
        "dpkg": "dpkg-query -W -f='${Status}' openssh-server",
        "apt": "apt-get check -qq >/dev/null 2>&1 && echo ok",
        "cloud-init": "cloud-init status | tr -d '\\n'",
        "hostname": "hostname",
        "usr-write": "echo x > /usr/local/bin/probe-tool && cat /usr/local/bin/probe-tool",
        "shadow": "stat -c '%U:%G' /etc/shadow",
    }
    command = "; ".join(f"echo {name}=$({check})" for name, check in checks.items())
    result = node_root_run(key_path, tmp_path, address, command)
    seen = dict(line.split("=", 1) for line in result.stdout.splitlines() if "=" in line)
    assert seen.get("useradd") == "ok", result.stdout + result.stderr
    assert seen["sudo"] == "0"
    assert seen["dpkg"] == "install ok installed"
    assert seen["apt"] == "ok"
    assert "done" in seen["cloud-init"]
    assert seen["hostname"] == "tools-1"  # its own UTS namespace, named by the simulator
    assert seen["usr-write"] == "x"
    assert seen["shadow"] == "root:shadow"
    assert not Path("/usr/local/bin/probe-tool").exists()  # the node's own layer, not the host's /usr
    assert "probe" not in Path("/etc/passwd").read_text().split(":")[0::6]


PIDFD_GETFD = """python3 - <<'EOF'
import ctypes, os
libc = ctypes.CDLL(None, use_errno=True)
pidfd = libc.syscall(434, 1, 0)  # pidfd_open(the node's init)
for target in (0, 1, 2):
    fd = libc.syscall(438, pidfd, target, 0)  # pidfd_getfd: a copy of the init's descriptor
    print("fd", target, os.readlink(f"/proc/self/fd/{fd}") if fd >= 0 else f"errno {ctypes.get_errno()}")
EOF"""


def test_a_node_inherits_nothing_of_the_simulators_environment_or_files(
    client: hcloud.Client, ssh_keypair: tuple[Path, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The simulator's environment (a database URL, a token) does not reach a node's init (and
    so its cloud-init and services); the init's descriptors are no file of the host's: root in the
    node can copy any of them (``pidfd_getfd``) and would write the host's disk without limit."""
    canary = f"simulator-env-canary-{secrets.token_hex(6)}"
    monkeypatch.setenv("NODEWRIGHT_DATABASE_URL", f"postgresql://user:{canary}@db/x")
    key_path, public_key = ssh_keypair
    _, address = create_node(client, "env-1", public_key)
    result = node_root_run(
        key_path, tmp_path, address, "tr '\\0' '\\n' </proc/1/environ; echo ==; " + PIDFD_GETFD
    )
    assert result.returncode == 0, result.stderr
    environment, _, descriptors = result.stdout.partition("==\n")
    assert canary not in result.stdout
    assert sorted(line.split("=", 1)[0] for line in environment.split()) == ["LANG", "PATH"]
    assert os.getcwd() not in environment
    taken = [line for line in descriptors.splitlines() if line.startswith("fd ")]
    assert len(taken) == 3, descriptors
    assert all("nodewright-sim-" not in line and "/run/" not in line for line in taken), taken
    assert any("pipe:" in line for line in taken)  # the console is a pipe the simulator reads


def test_a_link_planted_in_a_node_tells_it_nothing_of_the_host(
    client: hcloud.Client, ssh_keypair: tuple[Path, str], tmp_path: Path
) -> None:
    """Before each boot the simulator (the host's root) looks at the node's sshd_config: a link the
    node planted there, to a host file that exists, must not be followed (whether the file stays a
    link would tell the node that the host path exists). The simulator replaces it, as it would
    replace a link to a missing file."""
    key_path, public_key = ssh_keypair
    _, address = create_node(client, "oracle-1", public_key)
    host_file = Path(__file__).resolve()  # exists on the host, not in the node
    plant = f"ln -sf {host_file} /etc/ssh/sshd_config && cat /proc/sys/kernel/random/boot_id"
    planted = node_root_run(key_path, tmp_path, address, plant)
    assert planted.returncode == 0, planted.stderr
    boot_id = planted.stdout.strip()
    node_root_run(key_path, tmp_path, address, "(sleep 0.2; reboot) >/dev/null 2>&1 &")
    result = None
    for _ in range(300):  # bounds a broken test only: the node answers again after its reboot
        result = node_root_run(
            key_path,
            tmp_path,
            address,
            "cat /proc/sys/kernel/random/boot_id; stat -c %F /etc/ssh/sshd_config",
        )
        if result.returncode == 0 and result.stdout.split()[:1] != [boot_id]:
            break
    assert result is not None and result.returncode == 0, result and result.stderr
    assert result.stdout.split()[0] != boot_id  # it did reboot
    assert "regular file" in result.stdout  # replaced, not followed
