"""Helpers for the secret-canary tests: look for a secret in every place it must never reach.

A secret is looked for in several forms (:func:`needles`): as is, lower-cased (every search is
case-insensitive), URL-encoded, base64-encoded at each of the three byte alignments (so a copy
inside a larger base64 blob, such as user data or a JSON artifact, is found too), and, for a PEM
private key, each base64 body line that carries key material.
"""

from __future__ import annotations

import base64
import os
import shutil
import stat
import subprocess
import threading
import time
import urllib.parse
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519
from sqlalchemy import MetaData, inspect, select
from sqlalchemy.engine import make_url

from nodewright.db.database import Database


def database_dump(database: Database) -> str:
    """Every value of every table of every schema, as text (the database in plaintext, as an
    attacker with a copy of it sees it)."""
    parts: list[str] = []
    schemas: list[str | None] = [None]
    if database.engine.dialect.name == "postgresql":
        skip = {"information_schema", "pg_catalog", "pg_toast"}
        schemas = [s for s in inspect(database.engine).get_schema_names() if s not in skip]
    with database.engine.connect() as conn:
        for schema in schemas:
            metadata = MetaData(schema=schema)
            metadata.reflect(conn)
            for table in metadata.sorted_tables:
                for row in conn.execute(select(table)):
                    parts.append(f"{table.fullname}: " + " ".join(str(v) for v in row))
    return "\n".join(parts)


def pg_dump(url: str) -> str | None:
    """``pg_dump`` of the database at ``url`` (plain SQL, data included), or ``None`` without it."""
    binary = shutil.which("pg_dump")
    if binary is None:
        return None
    rendered = make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
    done = subprocess.run(
        [binary, "--no-owner", "--dbname", rendered], capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


# --- the forms a secret may take -------------------------------------------------------------------


@dataclass(frozen=True)
class Needle:
    secret: str  # the secret's name, for the failure message
    form: str
    text: str  # lower-cased: every search is case-insensitive


def _base64_forms(data: bytes) -> Iterator[tuple[str, str]]:
    """The base64 text of ``data`` wherever it starts in a larger blob: at each alignment, the
    characters that depend on ``data`` alone (the first and last group may mix in neighbours)."""
    for shift in range(3):
        for alphabet, encode in (("base64", base64.b64encode), ("urlsafe base64", base64.urlsafe_b64encode)):
            text = encode(b"\0" * shift + data).decode().rstrip("=")
            inner = text[4:-4] if shift else text[:-4]
            yield f"{alphabet} at offset {shift}", inner


def _reference_pem() -> list[str]:
    key = ed25519.Ed25519PrivateKey.generate()
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH, serialization.NoEncryption()
    ).decode()
    return pem_body_lines(pem)


def pem_body_lines(pem: str) -> list[str]:
    return [
        line.strip() for line in pem.strip().splitlines() if line.strip() and not line.startswith("-----")
    ]


def needles(name: str, secret: str) -> list[Needle]:
    """Every form of ``secret`` to look for (see the module docstring)."""
    forms: dict[str, str] = {"as is": secret, "URL-encoded": urllib.parse.quote(secret, safe="")}
    forms.update(_base64_forms(secret.encode()))
    if "PRIVATE KEY-----" in secret:
        # The body lines that differ from another key's: the first ones are the same in every
        # unencrypted ed25519 key ("openssh-key-v1", "none", ...) and prove nothing.
        reference = _reference_pem()
        for i, line in enumerate(pem_body_lines(secret)):
            if len(line) >= 16 and (i >= len(reference) or reference[i] != line):
                forms[f"PEM body line {i + 1}"] = line
        forms["PEM body, joined"] = "".join(pem_body_lines(secret))
    found: list[Needle] = []
    seen: set[str] = set()
    for form, text in forms.items():
        if text.lower() not in seen:
            seen.add(text.lower())
            found.append(Needle(name, form, text.lower()))
    assert len(found) >= 4, f"too few forms of {name}"
    return found


@dataclass
class Findings:
    """Where which needle was found; ``searched`` counts the places looked at, by kind."""

    needles: list[Needle]
    hits: list[str] = field(default_factory=list)
    searched: dict[str, int] = field(default_factory=dict)
    searched_bytes: dict[str, int] = field(default_factory=dict)

    def search(self, kind: str, place: str, content: str | bytes) -> None:
        text = content.decode("latin-1") if isinstance(content, bytes) else content
        lowered = text.lower()
        self.searched[kind] = self.searched.get(kind, 0) + 1
        self.searched_bytes[kind] = self.searched_bytes.get(kind, 0) + len(text)
        for needle in self.needles:
            if needle.text in lowered:
                self.hits.append(f"{needle.secret} ({needle.form}) in {kind}: {place}")


# --- processes --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ProcessSample:
    pid: int
    cmdline: bytes
    environ: bytes

    @property
    def command(self) -> str:
        return self.cmdline.replace(b"\0", b" ").decode(errors="replace").strip()


class ProcessSampler:
    """Reads the command line and environment of every process on the machine, again and again in
    a background thread, so that short-lived children (ssh, ansible-playbook, ssh-add) are seen
    too. A process is read again when its command line changes (an exec).

    ``watch``: directories whose files are read on every pass too (each version once), so that what
    a run writes and removes again (ansible-runner's private data directory: inventory, env,
    artifacts) is seen while it exists, not only what is left afterwards."""

    def __init__(self, interval: float = 0.02, watch: Iterable[Path] = ()) -> None:
        self.interval = interval
        self.watch = list(watch)
        self.samples: dict[tuple[int, bytes], ProcessSample] = {}
        self.files: dict[tuple[str, int, int], bytes] = {}  # (path, mtime ns, size) -> content
        self.passes = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="canary-proc-sampler", daemon=True)

    def __enter__(self) -> ProcessSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=10)
        self.sample()  # what is still running at the end

    def _run(self) -> None:
        while not self._stop.is_set():
            self.sample()
            self._stop.wait(self.interval)

    def sample(self) -> None:
        for entry in os.scandir("/proc"):
            if not entry.name.isdigit():
                continue
            try:
                with open(f"/proc/{entry.name}/cmdline", "rb") as handle:
                    cmdline = handle.read()
                key = (int(entry.name), cmdline)
                if key in self.samples or not cmdline:
                    continue  # seen already, or a kernel thread
                with open(f"/proc/{entry.name}/environ", "rb") as handle:
                    environ = handle.read()
            except OSError:
                continue  # gone meanwhile
            self.samples[key] = ProcessSample(int(entry.name), cmdline, environ)
        for path in regular_files(self.watch):
            try:
                info = path.stat()
                version = (str(path), info.st_mtime_ns, info.st_size)
                if version not in self.files:
                    self.files[version] = path.read_bytes()
            except OSError:
                continue  # removed meanwhile
        self.passes += 1

    def commands(self) -> list[str]:
        return [s.command for s in list(self.samples.values())]

    def search(self, findings: Findings) -> None:
        for sample in list(self.samples.values()):
            place = f"pid {sample.pid} {sample.command[:200]}"
            findings.search("process command line", place, sample.cmdline)
            findings.search("process environment", place, sample.environ)
        for (path, _, _), content in list(self.files.items()):
            findings.search("file while a run lasted", path, content)


# --- files ------------------------------------------------------------------------------------------

MAX_FILE_BYTES = 64 * 1024 * 1024


def regular_files(roots: Iterable[Path], *, since: float | None = None) -> Iterator[Path]:
    """Regular files under ``roots`` (modified at or after ``since``, when given), not following
    links and not crossing into other filesystems (a node's overlay root, a bind mount)."""
    for root in roots:
        if not root.is_dir():
            continue
        device = root.stat().st_dev
        for directory, dirs, files in os.walk(root):
            kept = []
            for name in dirs:
                try:
                    info = os.lstat(os.path.join(directory, name))
                except OSError:
                    continue
                if stat.S_ISDIR(info.st_mode) and info.st_dev == device:
                    kept.append(name)
            dirs[:] = kept
            for name in files:
                path = Path(directory, name)
                try:
                    info = path.lstat()
                except OSError:
                    continue
                if not stat.S_ISREG(info.st_mode) or info.st_size > MAX_FILE_BYTES:
                    continue
                if since is not None and max(info.st_mtime, info.st_ctime) < since:
                    continue
                yield path


def search_files(findings: Findings, kind: str, paths: Iterable[Path]) -> list[Path]:
    """Search every file of ``paths``; the files that could be read."""
    read: list[Path] = []
    for path in paths:
        try:
            content = path.read_bytes()
        except OSError:
            continue
        read.append(path)
        findings.search(kind, str(path), content)
    return read


def files_holding(roots: Iterable[Path], secret: str) -> list[Path]:
    """The regular files under ``roots`` that hold ``secret`` (in any of its forms)."""
    forms = needles("secret", secret)
    holders = []
    for path in regular_files(roots):
        try:
            lowered = path.read_bytes().decode("latin-1").lower()
        except OSError:
            continue
        if any(n.text in lowered for n in forms):
            holders.append(path)
    return holders


def started() -> float:
    """A timestamp for ``regular_files(since=...)``, a little early for coarse file system clocks."""
    return time.time() - 2
