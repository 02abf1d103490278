#!/usr/bin/python3
# ruff: noqa: T201, S604  (a command-line program run inside the node; user data is shell by design)
"""cloud-init inside a simulated node (standard library only): the modules provisioning relies on.

The simulator parses the server's user data on the host and seeds the node with it as JSON
(``/var/lib/cloud/seed/nodewright/seed.json``). At first boot the node's init runs ``cloud-init
boot``, which applies it in the order of Ubuntu's cloud.cfg: bootcmd, write_files, users
(with sudo rules and authorized keys), the root password of a server created without SSH keys,
timezone, packages, then the scripts (a ``#!`` user data script, then runcmd), then deferred
write_files. Output goes to /var/log/cloud-init-output.log; /var/lib/cloud/instance/boot-finished
marks the end. bootcmd runs at every boot, the rest once per instance, as in cloud-init.

``cloud-init status [--wait] [--long] [--format json|yaml|tabular]`` answers like the real
command: ``running``, ``done`` or ``error`` (exit status 1).
"""

from __future__ import annotations

import base64
import datetime
import gzip
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any, TextIO

SEED = "/var/lib/cloud/seed/nodewright/seed.json"
STATUS = "/run/cloud-init/status.json"
RESULT = "/var/lib/cloud/data/result.json"
OUTPUT = "/var/log/cloud-init-output.log"
FINISHED = "/var/lib/cloud/instance/boot-finished"
SCRIPTS = "/var/lib/cloud/instance/scripts"
VERSION = "24.4.1-0ubuntu0~24.04.1"
DATASOURCE = "DataSourceHetzner"


def now() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%a, %d %b %Y %H:%M:%S +0000")


STAGES = ("init-local", "init", "modules-config", "modules-final")
DATA_STATUS = "/var/lib/cloud/data/status.json"


def write_status(status: str, errors: list[str]) -> None:
    """Our record in /run, and cloud-init's own ``status.json`` (``v1`` with a ``stage`` that is
    null once done), which tools such as Ansible's cloud_init_data_facts read."""
    os.makedirs(os.path.dirname(STATUS), exist_ok=True)
    record = {"status": status, "errors": errors, "last_update": now()}
    stamp = time.time()
    stages: dict[str, dict[str, Any]] = {
        stage: {
            "errors": errors if stage == "modules-final" else [],
            "finished": None if status == "running" else stamp,
            "recoverable_errors": {},
            "start": stamp,
        }
        for stage in STAGES
    }
    v1 = {"datasource": DATASOURCE, **stages, "stage": "modules-final" if status == "running" else None}
    for path, content in ((STATUS, record), (DATA_STATUS, {"v1": v1})):
        os.makedirs(os.path.dirname(path), exist_ok=True)
        tmp = path + ".tmp"
        with open(tmp, "w") as handle:
            json.dump(content, handle)
        os.replace(tmp, path)


class Boot:
    def __init__(self, seed: dict[str, Any], output: TextIO) -> None:
        self.seed = seed
        config = seed.get("cloud_config")
        self.config: dict[str, Any] = config if isinstance(config, dict) else {}
        self.out = output
        self.errors: list[str] = []

    def log(self, text: str) -> None:
        self.out.write(text if text.endswith("\n") else text + "\n")
        self.out.flush()

    def run(self, argv: list[str] | str, shell: bool = False) -> int:
        result = subprocess.run(
            argv,
            shell=shell,
            stdout=self.out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
        return result.returncode

    def module(self, name: str, function: Callable[[], None]) -> None:
        try:
            function()
        except Exception as exc:  # a failing module is recorded, the boot goes on, as in cloud-init
            self.errors.append(f"('{name}', {type(exc).__name__}({str(exc)!r}))")
            self.log(f"{name} failed: {exc}")

    # -- modules -------------------------------------------------------------------------------
    def bootcmd(self) -> None:
        commands = self.config.get("bootcmd") or []
        failed = 0
        for command in commands if isinstance(commands, list) else []:
            failed += (
                self.run(command, shell=True)
                if isinstance(command, str)
                else self.run([str(c) for c in command]) != 0
            )
        if failed:
            raise RuntimeError(f"{failed} bootcmd command(s) failed")

    def write_files(self, deferred: bool) -> None:
        for entry in self.config.get("write_files") or []:
            if not isinstance(entry, dict) or bool(entry.get("defer", False)) != deferred:
                continue
            path = str(entry["path"])
            content = entry.get("content", "")
            data = content.encode() if isinstance(content, str) else b""
            encoding = str(entry.get("encoding", "text")).lower()
            if encoding in {"b64", "base64"}:
                data = base64.b64decode(data)
            elif encoding in {"gz", "gzip"}:
                data = gzip.decompress(data)
            elif encoding in {"gz+base64", "gzip+base64", "gz+b64", "gzip+b64"}:
                data = gzip.decompress(base64.b64decode(data))
            os.makedirs(os.path.dirname(path) or "/", exist_ok=True)
            with open(path, "ab" if entry.get("append") else "wb") as handle:
                handle.write(data)
            os.chmod(path, int(str(entry.get("permissions", "0644")), 8))
            owner = str(entry.get("owner", "root:root"))
            self.run(["chown", owner, path])

    def users(self) -> None:
        users = self.config.get("users") or []
        for user in users if isinstance(users, list) else []:
            if not isinstance(user, dict) or user.get("name") in {None, "default", "root"}:
                continue
            self.user(user)

    def user(self, user: dict[str, object]) -> None:
        name = str(user["name"])
        exists = self.run(["id", name]) == 0
        if not exists:
            args = ["useradd", "-m", "-s", str(user.get("shell", "/bin/sh"))]
            if user.get("gecos"):
                args += ["-c", str(user["gecos"])]
            if user.get("homedir"):
                args += ["-d", str(user["homedir"])]
            if user.get("system"):
                args += ["-r"]
            if user.get("primary_group"):
                args += ["-g", str(user["primary_group"])]
            if self.run([*args, name]) != 0:
                raise RuntimeError(f"useradd {name} failed")
        groups = user.get("groups")
        names = groups.split(",") if isinstance(groups, str) else groups if isinstance(groups, list) else []
        for group in (str(g).strip() for g in names):
            if group and self.run(["getent", "group", group]) != 0:
                self.run(["groupadd", group])
            if group:
                self.run(["usermod", "-aG", group, name])
        if user.get("hashed_passwd") or user.get("passwd"):
            hashed = str(user.get("hashed_passwd") or user.get("passwd"))
            subprocess.run(["chpasswd", "-e"], input=f"{name}:{hashed}\n".encode(), check=True)
        elif user.get("plain_text_passwd"):
            plain = str(user["plain_text_passwd"])
            subprocess.run(["chpasswd"], input=f"{name}:{plain}\n".encode(), check=True)
        if user.get("lock_passwd", True):
            self.run(["passwd", "-l", name])
        sudo = user.get("sudo")
        rules = [sudo] if isinstance(sudo, str) else sudo if isinstance(sudo, list) else []
        if rules:
            os.makedirs("/etc/sudoers.d", exist_ok=True)
            with open("/etc/sudoers.d/90-cloud-init-users", "a") as handle:
                handle.write("".join(f"{name} {rule}\n" for rule in rules))
            os.chmod("/etc/sudoers.d/90-cloud-init-users", 0o440)
        keys = user.get("ssh_authorized_keys") or []
        if isinstance(keys, list) and keys:
            home = subprocess.run(["getent", "passwd", name], capture_output=True, text=True).stdout.split(
                ":"
            )[5]
            os.makedirs(f"{home}/.ssh", mode=0o700, exist_ok=True)
            with open(f"{home}/.ssh/authorized_keys", "a") as handle:
                handle.write("".join(f"{str(k).strip()}\n" for k in keys))
            os.chmod(f"{home}/.ssh/authorized_keys", 0o600)
            self.run(["chown", "-R", f"{name}:", f"{home}/.ssh"])

    def root_password(self) -> None:
        password = self.seed.get("root_password")
        if isinstance(password, str) and password:
            subprocess.run(["chpasswd"], input=f"root:{password}\n".encode(), check=True)

    def timezone(self) -> None:
        zone = self.config.get("timezone")
        if not isinstance(zone, str) or not zone:
            return
        if not os.path.exists(f"/usr/share/zoneinfo/{zone}"):
            raise ValueError(f"Invalid timezone {zone}")
        with open("/etc/timezone", "w") as handle:
            handle.write(zone + "\n")
        if os.path.lexists("/etc/localtime"):
            os.unlink("/etc/localtime")
        os.symlink(f"/usr/share/zoneinfo/{zone}", "/etc/localtime")

    def packages(self) -> None:
        packages = self.config.get("packages") or []
        wanted = [p if isinstance(p, str) else "=".join(str(x) for x in p) for p in packages]
        update = self.config.get("package_update") or self.config.get("apt_update") or bool(wanted)
        upgrade = self.config.get("package_upgrade") or self.config.get("apt_upgrade")
        env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
        for needed, argv in (
            (update, ["apt-get", "update", "-q"]),
            (upgrade, ["apt-get", "dist-upgrade", "-y", "-q"]),
            (bool(wanted), ["apt-get", "install", "-y", "-q", *wanted]),
        ):
            if needed and subprocess.run(argv, stdout=self.out, stderr=subprocess.STDOUT, env=env).returncode:
                raise RuntimeError(f"Failed to install packages: {wanted}")

    def scripts(self) -> None:
        os.makedirs(SCRIPTS, exist_ok=True)
        script = self.seed.get("script")
        paths = []
        if isinstance(script, str) and script.startswith("#!"):
            paths.append(os.path.join(SCRIPTS, "part-001"))
            with open(paths[-1], "w") as handle:
                handle.write(script)
        runcmd = self.config.get("runcmd") or []
        if isinstance(runcmd, list) and runcmd:
            lines = ["#!/bin/sh"]
            for command in runcmd:
                if isinstance(command, list):
                    lines.append(" ".join("'" + str(c).replace("'", "'\\''") + "'" for c in command))
                else:
                    lines.append(str(command))
            paths.append(os.path.join(SCRIPTS, "runcmd"))
            with open(paths[-1], "w") as handle:
                handle.write("\n".join(lines) + "\n")
        failed = []
        for path in paths:
            os.chmod(path, 0o700)
            if self.run([path]) != 0:
                failed.append(os.path.basename(path))
        if failed:
            raise RuntimeError(
                f"Runparts: {len(failed)} failures ({', '.join(failed)}) in {len(paths)} attempted commands"
            )

    def first_boot(self) -> None:
        self.module("bootcmd", self.bootcmd)
        self.module("write_files", lambda: self.write_files(False))
        self.module("users_groups", self.users)
        self.module("set_passwords", self.root_password)
        self.module("timezone", self.timezone)
        self.module("package_update_upgrade_install", self.packages)
        self.module("scripts_user", self.scripts)
        self.module("write_files_deferred", lambda: self.write_files(True))


def boot() -> int:
    write_status("running", [])
    try:
        with open(SEED) as handle:
            seed = json.load(handle)
    except (OSError, ValueError):
        seed = {}
    first = not os.path.exists(FINISHED)
    os.makedirs(os.path.dirname(OUTPUT), exist_ok=True)
    with open(OUTPUT, "a") as output:
        started = time.time()
        boot = Boot(seed, output)
        boot.log(f"Cloud-init v. {VERSION} running 'modules' at {now()}.")
        if first:
            boot.errors.extend(str(e) for e in seed.get("errors", []))
            boot.first_boot()
        else:
            boot.module("bootcmd", boot.bootcmd)
        took = time.time() - started
        boot.log(
            f"Cloud-init v. {VERSION} finished at {now()}. Datasource {DATASOURCE}.  Up {took:.2f} seconds"
        )
    errors = boot.errors
    os.makedirs(os.path.dirname(FINISHED), exist_ok=True)
    os.makedirs(os.path.dirname(RESULT), exist_ok=True)
    with open(RESULT, "w") as handle:
        json.dump({"v1": {"datasource": DATASOURCE, "errors": errors}}, handle)
    if first:
        with open(FINISHED, "w") as handle:
            handle.write(f"{time.time():.2f} - {DATASOURCE}\n")
        if "root_password" in seed:  # applied: the seed no longer needs to hold it
            seed.pop("root_password")
            with open(SEED, "w") as handle:
                json.dump(seed, handle)
    write_status("error" if errors else "done", errors)
    return 0


def read_status() -> dict[str, Any]:
    try:
        with open(STATUS) as handle:
            record: dict[str, Any] = json.load(handle)
    except (OSError, ValueError):
        record = {"status": "running", "errors": [], "last_update": now()}
    return record


def status(args: list[str]) -> int:
    fmt = "tabular"
    if "--format" in args and args.index("--format") + 1 < len(args):
        fmt = args[args.index("--format") + 1]
    record = read_status()
    if "--wait" in args or "-w" in args:
        while record["status"] == "running":
            if fmt == "tabular":
                sys.stdout.write(".")
                sys.stdout.flush()
            time.sleep(0.25)
            record = read_status()
        if fmt == "tabular":
            sys.stdout.write("\n")
    state = str(record["status"])
    errors = record.get("errors") or []
    detail = DATASOURCE if state != "running" else "Running in stage: modules-final"
    full: dict[str, Any] = {
        "boot_status_code": "enabled-by-generator",
        "datasource": "hetzner",
        "detail": detail,
        "errors": errors,
        "extended_status": state,
        "last_update": record.get("last_update"),
        "recoverable_errors": {},
        "stage": None if state != "running" else "modules-final",
        "status": state,
    }
    if fmt == "json":
        print(json.dumps(full, indent=2, sort_keys=True))
    elif fmt == "yaml":
        for key, value in sorted(full.items()):
            print(f"{key}: {json.dumps(value) if isinstance(value, (list, dict)) else value}")
    elif "--long" in args or "-l" in args:
        for key in ("status", "extended_status", "boot_status_code", "last_update", "detail"):
            print(f"{key}: {full[key]}")
        print(f"errors: {json.dumps(errors)}" if not errors else "errors:")
        for error in errors:
            print(f"\t- {error}")
        print("recoverable_errors: {}")
    else:
        print(f"status: {state}")
    return 1 if state == "error" else 0


def main(argv: list[str]) -> int:
    if argv[:1] == ["boot"]:
        return boot()
    if argv[:1] == ["status"]:
        return status(argv[1:])
    if argv[:1] in (["--version"], ["-v"]):
        print(f"/usr/bin/cloud-init {VERSION}")
        return 0
    print("usage: cloud-init status [--wait] [--long] [--format json|yaml|tabular]", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
