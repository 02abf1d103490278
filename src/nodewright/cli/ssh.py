"""``nodewright nodes ssh NODE [-- COMMAND...]``: ssh to a node with its pinned host key.

The host key comes from the API (the node's evidence) and must match the fingerprint nodewright
pinned; it goes into a known_hosts file of this run alone (0600, removed afterwards), with
``StrictHostKeyChecking=yes``: a node that answers with another key is refused by ssh itself. The
address, port, user and key are checked as the provisioning code checks them (``SshTarget``): a
hostile server cannot smuggle an ssh option in through them.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Annotated

import typer

from nodewright.cli.client import ApiError
from nodewright.cli.errors import EXIT_REFUSED, die, fail, say
from nodewright.cli.nodes import nodes_app
from nodewright.cli.options import NodeArg, TokenFile, UrlOption, client, resolve
from nodewright.nodes.names import ADMIN_USER
from nodewright.provisioning.target import InvalidHostKey, SshTarget, fingerprint
from nodewright.security.text import clean_line

# ssh options (their names are case-insensitive) that trust host keys from elsewhere *beside* the
# known_hosts files nodewright sets first: a command's output, the DNS's SSHFP records. Refused with
# the reason when given to -o; VerifyHostKeyDNS is also set off first (against ~/.ssh/config too).
# KnownHostsCommand=none is not sent: an OpenSSH before 8.5 would refuse the unknown option.
ADDS_HOST_KEYS = frozenset({"knownhostscommand", "verifyhostkeydns"})


@nodes_app.command("ssh", context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def nodes_ssh(
    invocation: typer.Context,
    node: NodeArg,
    user: Annotated[str, typer.Option("--user", "-l", help="Login (the profile's admin user).")] = ADMIN_USER,
    identity: Annotated[
        Path | None, typer.Option("--identity", "-i", help="Private key file (else ssh's own, or the agent).")
    ] = None,
    option: Annotated[
        list[str] | None,
        typer.Option(
            "--option",
            "-o",
            help="An ssh option, e.g. BatchMode=yes (repeatable); the host key pinning cannot be changed.",
        ),
    ] = None,
    url: UrlOption = None,
    token_file: TokenFile = None,
) -> None:
    """SSH to a node, its host key pinned; anything after `--` is the remote command."""
    try:
        with client(url, token_file) as api:
            node_id = resolve(api, node)
            shown = api.get(f"/api/nodes/{node_id}")
            evidence = api.get(f"/api/nodes/{node_id}/evidence")["evidence"]
    except ApiError as exc:
        die(exc)
    name = shown.get("name", node_id)
    if shown.get("status") == "released":
        say(f"error: node {name} is released: it has no server to reach", err=True)
        raise typer.Exit(EXIT_REFUSED)
    if shown.get("status") == "lost":
        say(f"error: node {name} is lost: its server is gone at the provider (`nodewright nodes delete "
            f"{name}` clears it)", err=True)  # fmt: skip
        raise typer.Exit(EXIT_REFUSED)
    ssh, host_key = shown.get("ssh"), (evidence.get("host_key") or {}).get("public_key")
    if not ssh or not host_key:
        say(f"error: node {name} has no pinned SSH target yet (status {shown.get('status')}, stage "
            f"{shown.get('stage')}); `nodewright nodes show {name}` follows it", err=True)  # fmt: skip
        raise typer.Exit(EXIT_REFUSED)
    try:
        target = SshTarget(str(ssh["address"]), int(ssh["port"]), user, str(host_key))
        pinned = fingerprint(target.host_public_key)
    except (ValueError, TypeError, InvalidHostKey) as exc:
        say(f"error: the server sent an SSH target nodewright will not use: {exc}", err=True)
        raise typer.Exit(EXIT_REFUSED) from None
    if ssh.get("host_key_fingerprint") and ssh["host_key_fingerprint"] != pinned:
        say("error: the node's host key does not match its pinned fingerprint; not connecting", err=True)
        raise typer.Exit(EXIT_REFUSED)
    binary = shutil.which("ssh")
    if binary is None:
        say("error: ssh is not installed (the openssh-client package)", err=True)
        raise typer.Exit(1)
    with tempfile.TemporaryDirectory(prefix="nodewright-ssh-") as scratch:
        known_hosts = Path(scratch) / "known_hosts"
        known_hosts.write_text(target.known_hosts_line())
        args = [binary, "-o", "StrictHostKeyChecking=yes", "-o", f"UserKnownHostsFile={known_hosts}",
                "-o", "GlobalKnownHostsFile=/dev/null", "-o", "VerifyHostKeyDNS=no", "-p", str(target.port),
                "-l", target.user]  # fmt: skip
        if identity is not None:
            args += ["-i", str(identity), "-o", "IdentitiesOnly=yes"]
        # After nodewright's own: for each option ssh keeps the first value it is given, so none of
        # these can turn the pinning off. One ``key=value`` word each: never a second argument.
        for item in option or []:
            if not re.fullmatch(r"[A-Za-z][A-Za-z0-9]*[ =][^\s=][^\r\n]*", item):
                fail(f"-o {clean_line(item)!r} is not an ssh option (Name=value)")
            if re.split(r"[ =]", item, maxsplit=1)[0].lower() in ADDS_HOST_KEYS:
                fail(f"-o {clean_line(item)!r} would trust host keys besides the pinned one (the "
                     "pinning cannot be changed)")  # fmt: skip
            args += ["-o", item]
        args += ["--", target.address, *invocation.args]
        raise typer.Exit(subprocess.call(args))
