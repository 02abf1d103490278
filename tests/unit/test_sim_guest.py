"""The programs that run inside a simulated node, exercised directly (no node needed)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from nodewright.sim.nodes.cloudinit import parse_user_data, seed
from nodewright.sim.nodes.guest import cloud_init, power


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["-r", "now"], ("reboot", 0.0)),
        (["-r", "0", "Reboot initiated by Ansible"], ("reboot", 0.0)),  # what Ansible's reboot module runs
        (["-h", "now"], ("poweroff", 0.0)),
        (["-P", "+2"], ("poweroff", 120.0)),
        ([], ("poweroff", 60.0)),  # shutdown's default: power off in a minute
        (["-c"], (None, 0.0)),
    ],
)
def test_shutdown_arguments(args: list[str], expected: tuple[str | None, float]) -> None:
    assert power.parse_shutdown(args) == expected


def test_cloud_init_status_shapes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    status_file = tmp_path / "status.json"
    monkeypatch.setattr(cloud_init, "STATUS", str(status_file))
    monkeypatch.setattr(cloud_init, "DATA_STATUS", str(tmp_path / "data" / "status.json"))
    assert cloud_init.status([]) == 0  # no status yet: cloud-init is still running
    assert capsys.readouterr().out == "status: running\n"

    cloud_init.write_status("done", [])
    assert cloud_init.status(["--wait"]) == 0
    assert capsys.readouterr().out == "\nstatus: done\n"

    error = "('scripts_user', RuntimeError('Runparts: 1 failures (runcmd) in 1 attempted commands'))"
    cloud_init.write_status("error", [error])
    assert cloud_init.status(["--long"]) == 1
    lines = capsys.readouterr().out.splitlines()
    assert lines[:3] == ["status: error", "extended_status: error", "boot_status_code: enabled-by-generator"]
    assert "errors:" in lines and f"\t- {error}" in lines
    assert cloud_init.status(["--format", "json"]) == 1
    shown = json.loads(capsys.readouterr().out)
    assert shown["status"] == "error" and shown["errors"] == [error]
    assert {"boot_status_code", "datasource", "detail", "extended_status", "last_update"} <= set(shown)
    assert shown["stage"] is None
    v1 = json.loads((tmp_path / "data" / "status.json").read_text())["v1"]  # cloud-init's own file
    assert v1["stage"] is None and v1["modules-final"]["errors"] == [error]


def _billion_laughs(levels: int) -> str:
    lines = ["#cloud-config", "hostname: laughs", "l0: &l0 [ha, ha, ha, ha, ha, ha, ha, ha, ha]"]
    for level in range(1, levels):
        lines.append(f"l{level}: &l{level} [" + ", ".join([f"*l{level - 1}"] * 9) + "]")
    lines.append(f"runcmd: [*l{levels - 1}]")
    return "\n".join(lines) + "\n"


def test_user_data_that_expands_without_bound_boots_with_a_cloud_init_error(tmp_path: Path) -> None:
    """A few hundred bytes of YAML aliases stand for terabytes once written out as the node's seed:
    the simulator must not try (it would stall a node worker and exhaust the host's memory)."""
    user_data = _billion_laughs(12)
    assert len(user_data.encode()) < 32 * 1024  # within the API's user data limit
    config = parse_user_data(user_data)
    kept = config.document is not None  # (not asserted on directly: its repr alone would not end)
    assert not kept, "the expanding document was kept for the node's seed"
    assert config.errors and "YAML aliases" in config.errors[0]
    seed(tmp_path, config, "i-1", None)
    written = json.loads((tmp_path / "var/lib/cloud/seed/nodewright/seed.json").read_text())
    assert written["cloud_config"] == {} and written["errors"] == config.errors

    recursive = parse_user_data("#cloud-config\nrun: &r [*r]\n")  # a list that contains itself
    kept = recursive.document is not None
    assert not kept and recursive.errors


def test_user_data_with_a_few_aliases_still_works() -> None:
    config = parse_user_data(_billion_laughs(3) + "ssh_authorized_keys: [ssh-ed25519 AAAA k]\n")
    assert config.document is not None and config.hostname == "laughs" and not config.errors
    assert config.authorized_keys == ["ssh-ed25519 AAAA k"]
