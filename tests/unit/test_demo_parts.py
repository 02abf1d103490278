"""The demo's small parts without a server: the one line for a taken port, and the operator's SSH key
(theirs when ssh would offer it, else one made in the data directory, 0600, the same on every start)."""

from __future__ import annotations

import socket
import stat
from pathlib import Path

import pytest

from nodewright.cli.nodes import KeyFileError, read_public_key
from nodewright.cli.ports import PortUnavailable, bind_or_explain
from nodewright.demo.operator_key import operator_key
from nodewright.providers.acquisition import generate_host_key


def test_a_taken_port_is_one_line_naming_the_flag_and_the_make_variable() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(PortUnavailable) as caught:
            bind_or_explain("127.0.0.1", port, flag="--sim-port", make_var="SIM_PORT")
        message = str(caught.value)
        assert message.startswith(f"port {port} is in use; choose another with --sim-port (make demo ")
        assert "SIM_PORT=" in message
        assert "\n" not in message
        with pytest.raises(PortUnavailable, match=r"choose another with --port \(e\.g\. --port \d+\)$"):
            bind_or_explain("127.0.0.1", port, flag="--port")  # serve: no make variable
    bind_or_explain("127.0.0.1", port, flag="--port").close()  # free again: bound


def test_the_operators_own_key_is_used_when_ssh_would_offer_it(tmp_path: Path) -> None:
    home, data = tmp_path / "home", tmp_path / "data"
    (home / ".ssh").mkdir(parents=True)
    data.mkdir()
    # A public half alone (its private key elsewhere) is not what ssh offers by default: not taken.
    (home / ".ssh" / "id_rsa.pub").write_text(generate_host_key().public_openssh + "\n")
    pair = generate_host_key()
    (home / ".ssh" / "id_ecdsa").write_text(pair.private_openssh.reveal())
    (home / ".ssh" / "id_ecdsa.pub").write_text(pair.public_openssh + " me@laptop\n")
    key = operator_key(home, data, read_public_key)
    assert (key.public_file, key.identity, key.made) == (home / ".ssh" / "id_ecdsa.pub", None, False)
    assert list(data.iterdir()) == []


def test_without_a_key_one_is_made_in_the_data_directory_once(tmp_path: Path) -> None:
    home, data = tmp_path / "home", tmp_path / "data"
    home.mkdir()
    data.mkdir()
    (home / ".ssh").mkdir()
    (home / ".ssh" / "id_ed25519").write_text("not a key")
    (home / ".ssh" / "id_ed25519.pub").write_text("not a key either")  # unreadable as a key: skipped
    made = operator_key(home, data, read_public_key)
    assert made.made and made.identity == data / "demo_ed25519"
    assert made.public_file == data / "demo_ed25519.pub"
    assert stat.S_IMODE(made.identity.stat().st_mode) == 0o600
    assert "OPENSSH PRIVATE KEY" in made.identity.read_text()
    assert read_public_key(made.public_file).startswith("ssh-ed25519 ")
    again = operator_key(home, data, read_public_key)
    assert not again.made and again.identity == made.identity
    assert again.public_file.read_text() == made.public_file.read_text()


def test_a_private_key_is_never_read_as_a_public_one(tmp_path: Path) -> None:
    private = tmp_path / "id_ed25519"
    private.write_text(generate_host_key().private_openssh.reveal())
    with pytest.raises(KeyFileError, match="is a private key"):
        read_public_key(private)


@pytest.mark.parametrize("port", ["70000", "-1"])
@pytest.mark.parametrize("flag", ["--port", "--sim-port"])
def test_a_port_out_of_range_is_a_usage_error(flag: str, port: str) -> None:
    from tests.support.cli import invoke

    done = invoke(["demo", flag, port], {"NO_COLOR": "1"})
    assert done.returncode == 2, done
    assert "Invalid value for '" + flag in done.stderr  # refused before anything starts


def test_a_host_that_does_not_resolve_names_the_host_option() -> None:
    with pytest.raises(PortUnavailable) as caught:
        bind_or_explain("no-such-host.invalid", 8400, flag="--port")
    message = str(caught.value)
    assert "Unknown error" not in message
    assert message.startswith("cannot listen on no-such-host.invalid (") and message.endswith("--host")
    with pytest.raises(PortUnavailable, match=r"^port 70000 is not a port"):
        bind_or_explain("127.0.0.1", 70000, flag="--port")  # called with no range check before it
