"""Provisioning profiles: a directory with ``profile.yml``, a playbook, and readiness checks.

The builtin profiles ship in this package; operators add their own as directories under the profiles
directory (``NODEWRIGHT_PROFILES_DIR``, default ``<data_dir>/profiles``) without touching code. An
operator profile of the same name as a builtin one takes its place. A profile's version is its
declared version plus a digest of its files, so the node marker records exactly what ran.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

BUILTIN_DIR = Path(__file__).parent / "profiles"
PROFILE_FILE = "profile.yml"
NAME_RE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")
DEFAULT_PROFILE = "baseline"


class ProfileError(ValueError):
    """A profile that is missing or malformed; the message names the file and the field."""


@dataclass(frozen=True)
class Check:
    name: str
    command: str


@dataclass(frozen=True)
class WatchSpec:
    """A profile's ``watch:`` block; ``None`` leaves the installation's default (watching.policy)."""

    interval_seconds: float | None = None
    timeout_seconds: float | None = None
    grace_seconds: float | None = None
    failures_before_degraded: int | None = None
    successes_before_ready: int | None = None
    checks: tuple[Check, ...] = ()


# A profile's watch numbers: (key, kind, lowest, highest). The interval's 5 s floor is the issue's.
WATCH_FIELDS: tuple[tuple[str, type, float, float], ...] = (
    ("interval_seconds", float, 5, 86400),
    ("timeout_seconds", float, 1, 3600),
    ("grace_seconds", float, 0, 86400),
    ("failures_before_degraded", int, 1, 100),
    ("successes_before_ready", int, 1, 100),
)


REMEDIATION_ACTIONS = ("reboot", "reprovision", "replace")


@dataclass(frozen=True)
class RemediationSpec:
    """A profile's ``remediation:`` block (off unless ``enabled``): the ladder is ``reboots``
    reboots, then ``reprovisions`` re-runs of provision + verify, then ``replaces`` replacements;
    at most ``max_attempts`` attempts within ``window_seconds`` (watching.remediation)."""

    enabled: bool = False
    reboots: int = 1
    reprovisions: int = 1
    replaces: int = 1
    max_attempts: int | None = None  # None: the ladder's length
    window_seconds: float = 3600.0

    @property
    def ladder(self) -> tuple[str, ...]:
        return (
            ("reboot",) * self.reboots + ("reprovision",) * self.reprovisions + ("replace",) * self.replaces
        )

    @property
    def budget(self) -> int:
        return len(self.ladder) if self.max_attempts is None else self.max_attempts


# A profile's remediation numbers: (key, kind, lowest, highest).
REMEDIATION_FIELDS: tuple[tuple[str, type, float, float], ...] = (
    ("reboots", int, 0, 10),
    ("reprovisions", int, 0, 10),
    ("replaces", int, 0, 10),
    ("max_attempts", int, 1, 100),
    ("window_seconds", float, 60, 30 * 86400),
)


@dataclass(frozen=True)
class Profile:
    name: str
    version: str
    description: str
    directory: Path
    playbook: Path
    checks: tuple[Check, ...]
    timeout_seconds: float
    watch: WatchSpec = WatchSpec()
    remediation: RemediationSpec = RemediationSpec()

    @property
    def digest(self) -> str:
        h = hashlib.sha256()
        for path in sorted(p for p in self.directory.rglob("*") if p.is_file()):
            h.update(str(path.relative_to(self.directory)).encode() + b"\0" + path.read_bytes() + b"\0")
        return h.hexdigest()[:12]

    @property
    def full_version(self) -> str:
        return f"{self.version}+{self.digest}"


def _field(
    data: dict[str, Any], key: str, kind: type | tuple[type, ...], where: Path, default: Any = None
) -> Any:
    value = data.get(key, default)
    kinds = kind if isinstance(kind, tuple) else (kind,)
    if value is None or isinstance(value, bool) or not isinstance(value, kinds):
        raise ProfileError(f"{where}: '{key}' must be a {' or '.join(k.__name__ for k in kinds)}")
    return value


def _checks(items: Any, where: Path, prefix: str) -> tuple[Check, ...]:
    if not isinstance(items, list):
        raise ProfileError(f"{where}: '{prefix}' must be a list")
    checks = []
    for i, item in enumerate(items):
        if not isinstance(item, dict):
            raise ProfileError(f"{where}: {prefix}[{i}] must be a mapping with 'name' and 'command'")
        name_, command = (_field(item, key, str, where).strip() for key in ("name", "command"))
        for key, value in (("name", name_), ("command", command)):
            if not value:
                # An empty command makes ssh open a login shell that passes on EOF: a vacuous check.
                raise ProfileError(f"{where}: {prefix}[{i}] '{key}' must not be empty")
        checks.append(Check(name_, command))
    return tuple(checks)


def _block(
    data: dict[str, Any],
    name: str,
    fields: tuple[tuple[str, type, float, float], ...],
    extra: set[str],
    where: Path,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """A profile's settings block ``name``: (the raw block, its numbers checked against ``fields``)."""
    block = data.get(name, {})
    if not isinstance(block, dict):
        raise ProfileError(f"{where}: '{name}' must be a mapping")
    unknown = sorted(set(block) - {k for k, *_ in fields} - extra)
    if unknown:
        raise ProfileError(f"{where}: '{name}.{unknown[0]}' is not a {name} setting")
    values: dict[str, Any] = {}
    for key, kind, low, high in fields:
        if key not in block:
            continue
        value = block[key]
        ok_kind = (int,) if kind is int else (int, float)
        if isinstance(value, bool) or not isinstance(value, ok_kind) or not low <= value <= high:
            raise ProfileError(
                f"{where}: '{name}.{key}' must be a{'n integer' if kind is int else ' number'} "
                f"between {low:g} and {high:g}"
            )
        values[key] = kind(value)
    return block, values


def _watch(data: dict[str, Any], where: Path) -> WatchSpec:
    block, values = _block(data, "watch", WATCH_FIELDS, {"checks"}, where)
    return WatchSpec(**values, checks=_checks(block.get("checks", []), where, "watch.checks"))


def _remediation(data: dict[str, Any], where: Path) -> RemediationSpec:
    block, values = _block(data, "remediation", REMEDIATION_FIELDS, {"enabled"}, where)
    enabled = block.get("enabled", False)
    if not isinstance(enabled, bool):
        raise ProfileError(f"{where}: 'remediation.enabled' must be true or false")
    spec = RemediationSpec(enabled=enabled, **values)
    if enabled and not spec.ladder:
        raise ProfileError(
            f"{where}: 'remediation' is enabled with no step (reboots, reprovisions, replaces all 0)"
        )
    return spec


def load_profile(directory: Path) -> Profile:
    where = directory / PROFILE_FILE
    try:
        data = yaml.safe_load(where.read_text())
    except OSError as exc:
        raise ProfileError(f"{where}: cannot be read ({exc.strerror})") from None
    except yaml.YAMLError as exc:
        raise ProfileError(f"{where}: not valid YAML ({str(exc).splitlines()[0]})") from None
    if not isinstance(data, dict):
        raise ProfileError(f"{where}: must be a mapping")
    name = directory.name
    if not NAME_RE.match(name):
        raise ProfileError(f"{where}: directory name {name!r} is not a profile name (a-z, 0-9, - and _)")
    version = str(_field(data, "version", (str, int), where))
    playbook = directory / _field(data, "playbook", str, where, "playbook.yml")
    if playbook.resolve().parent != directory.resolve() or not playbook.is_file():
        raise ProfileError(f"{where}: 'playbook' must name a file in the profile directory")
    checks = _checks(_field(data, "checks", list, where, []), where, "checks")
    timeout = _field(data, "timeout_seconds", (int, float), where, 900)
    if not 0 < float(timeout) <= 24 * 3600:
        raise ProfileError(f"{where}: 'timeout_seconds' must be between 1 and 86400")
    return Profile(
        name=name,
        version=version,
        # A string only: str() of a structure of YAML aliases grows exponentially (a YAML bomb).
        description=_field(data, "description", str, where, ""),
        directory=directory,
        playbook=playbook,
        checks=checks,
        timeout_seconds=float(timeout),
        watch=_watch(data, where),
        remediation=_remediation(data, where),
    )


def profile_dirs(operator_dir: Path | None) -> dict[str, Path]:
    found = {p.name: p for p in sorted(BUILTIN_DIR.iterdir()) if (p / PROFILE_FILE).is_file()}
    if operator_dir is not None and operator_dir.is_dir():
        found.update({p.name: p for p in sorted(operator_dir.iterdir()) if (p / PROFILE_FILE).is_file()})
    return found


def available_profiles(operator_dir: Path | None) -> list[str]:
    return sorted(name for name in profile_dirs(operator_dir) if NAME_RE.match(name))


def get_profile(name: str, operator_dir: Path | None) -> Profile:
    if not NAME_RE.match(name):
        raise ProfileError(f"{name!r} is not a profile name")
    directory = profile_dirs(operator_dir).get(name)
    if directory is None:
        known = ", ".join(available_profiles(operator_dir)) or "none"
        raise ProfileError(f"unknown profile {name!r} (available: {known})")
    return load_profile(directory)
