"""Settings: ``NODEWRIGHT_*`` environment variables, an optional TOML config file, defaults.

Precedence (highest first): explicit keyword arguments, environment variables, the config file named
by ``NODEWRIGHT_CONFIG_FILE`` (or ``<data_dir>/nodewright.toml`` when it exists), built-in defaults.
"""

from __future__ import annotations

import logging
import os
import re
import sys
from pathlib import Path
from typing import Any

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

DEFAULT_DATA_DIR = Path(".nodewright")


def _config_file() -> Path | None:
    explicit = os.environ.get("NODEWRIGHT_CONFIG_FILE")
    if explicit:
        return Path(explicit)
    data_dir = Path(os.environ.get("NODEWRIGHT_DATA_DIR", str(DEFAULT_DATA_DIR)))
    candidate = data_dir / "nodewright.toml"
    try:
        return candidate if candidate.is_file() else None
    except PermissionError:
        raise ConfigError(
            f"cannot read {candidate}: permission denied; run this as the installation's owner "
            "(the user `nodewright serve` runs as)"
        ) from None


DEFAULT_PROVIDER_ENDPOINTS = "https://api.hetzner.cloud/"


class Settings(BaseSettings):
    """Everything an operator can set. Secrets are ``SecretStr`` so they never render."""

    model_config = SettingsConfigDict(env_prefix="NODEWRIGHT_", extra="forbid", validate_default=True)

    data_dir: Path = DEFAULT_DATA_DIR
    database_url: str | None = None
    secret_keys: SecretStr | None = Field(
        default=None, description="Comma-separated Fernet keys; the first encrypts, all decrypt."
    )
    host: str = "127.0.0.1"
    port: int = Field(default=8400, ge=0, le=65535)
    public_url: str | None = None
    session_max_age_seconds: int = Field(default=12 * 3600, gt=0)
    cookie_secure: bool = False
    max_body_bytes: int = Field(default=1_048_576, gt=0)
    log_level: str = "INFO"
    # Feature-gate defaults; the stored gate value (PUT /api/gates) wins once set.
    gate_provider_create: bool = True
    # Nodes: the create contracts this deployment accepts (rollback: pin an older one), where
    # operator profiles live (default <data_dir>/profiles), and the stage deadlines in seconds.
    node_contracts: list[str] = Field(default_factory=lambda: ["provider/v1"], min_length=1)
    profiles_dir: Path | None = None
    node_acquire_deadline: float = Field(default=900.0, gt=0)
    node_connect_deadline: float = Field(default=300.0, gt=0)
    node_verify_deadline: float = Field(default=180.0, gt=0)
    reconcile_interval: float = Field(default=300.0, gt=0)
    # Watching (docs/watching.md): the installation's defaults; a profile's ``watch:`` overrides them.
    watch_interval_seconds: float = Field(default=60.0, ge=5.0, le=86400.0)
    watch_timeout_seconds: float = Field(default=20.0, ge=1.0, le=3600.0)
    watch_grace_seconds: float = Field(default=60.0, ge=0.0, le=86400.0)
    watch_failures_before_degraded: int = Field(default=3, ge=1, le=100)
    watch_successes_before_ready: int = Field(default=2, ge=1, le=100)
    # The fleet brake: no automatic remediation while more than this share of a connection's watched
    # nodes is degraded (and at least two are): a provider outage must not cause mass replacement.
    remediation_brake_percent: float = Field(default=40.0, gt=0.0, le=100.0)
    # OpenSSH's KexAlgorithms for watch checks (not provisioning). The default puts the classic
    # curve25519 key exchange first: a check's handshake costs ~17 ms of client CPU instead of ~85 ms
    # with OpenSSH 9's default sntrup761x25519 (post-quantum hybrid); bench/watch_bench.py --ssh
    # --breakdown measures both. The host key stays pinned either way. Empty: OpenSSH's default.
    watch_ssh_kex_algorithms: str = Field(default="^curve25519-sha256", pattern=r"^[\^+-]?[A-Za-z0-9@.,-]*$")
    # Job engine.
    embedded_workers: int = Field(default=2, ge=0, le=64)
    embedded_worker_shutdown_seconds: float = Field(
        default=30.0, ge=0.0, le=3600.0,
        description="At shutdown, how long running jobs may finish before they are handed back.",
    )  # fmt: skip
    worker_mode: str = Field(default="thread", pattern="^(thread|process)$")
    job_lease_seconds: float = Field(default=30.0, gt=0)
    job_poll_interval: float = Field(default=1.0, gt=0)
    job_retention_days: float = Field(
        default=30.0, gt=0, description="Finished jobs older than this are pruned."
    )
    audit_retention_days: float = Field(
        default=365.0, gt=0, description="Audit rows older than this are pruned (hourly, with the jobs)."
    )
    # Sign-in budget for unauthenticated callers: failure counts shared by every process (the
    # database), the password-check budget per process.
    login_max_failures: int = Field(default=5, ge=1, description="Failed sign-ins per user and address.")
    login_max_failures_per_address: int = Field(default=30, ge=1, description="Failed sign-ins per address.")
    login_max_failures_per_account: int = Field(default=20, ge=1, description="Failed sign-ins per account.")
    login_throttle_window_seconds: float = Field(default=900.0, gt=0, le=30 * 86400)
    max_concurrent_password_checks: int = Field(
        default=2, ge=1, le=256, description="Password verifications at once; more get 429 at once."
    )
    password_checks_per_second: float = Field(
        default=1.0, gt=0, description="Average password verifications per second; more get 429 at once."
    )
    # Connection limits of `serve` (HTTP/1.1 over h11).
    http_max_header_bytes: int = Field(default=16_384, ge=1024, le=1_048_576)
    http_max_headers: int = Field(default=100, ge=8, le=10_000)
    http_header_timeout_seconds: float = Field(
        default=10.0, gt=0, description="From connect (or the first byte of a request) to its last header."
    )
    http_body_timeout_seconds: float = Field(
        default=30.0, gt=0, description="From the end of the headers to the end of the body."
    )
    http_keepalive_timeout_seconds: int = Field(default=5, ge=1, description="Idle time between requests.")
    http_max_connections: int = Field(
        default=2000, ge=1, description="Open client connections; more are answered 503 and closed."
    )
    http_fd_reserve: int = Field(
        default=256, ge=16, description="File descriptors kept free of client connections (workers, DB)."
    )
    # Live job event streams (SSE).
    sse_max_streams: int = Field(default=1000, ge=1, description="Open event streams per process.")
    sse_max_streams_per_user: int = Field(default=20, ge=1, description="Open event streams per user.")
    # Providers: which API endpoints a connection may point at (comma-separated URL prefixes; "*" =
    # any). Connecting makes the server send the token to the endpoint and call it from then on, so
    # by default only the real provider API is allowed; a proxy or the simulator is added by name.
    provider_endpoints: str = Field(
        default=DEFAULT_PROVIDER_ENDPOINTS,
        description='URL prefixes a provider connection may point at, comma-separated; "*" for any.',
    )

    @property
    def allowed_provider_endpoints(self) -> tuple[str, ...] | None:
        """The allowed prefixes; ``None`` when any endpoint is allowed."""
        if self.provider_endpoints.strip() == "*":
            return None
        return tuple(p.strip() for p in self.provider_endpoints.split(",") if p.strip())

    def allow_provider_endpoint(self, prefix: str) -> None:
        """Add ``prefix`` to the allowed endpoints (the demo's simulator)."""
        if self.allowed_provider_endpoints is not None:
            self.provider_endpoints = ",".join([*self.allowed_provider_endpoints, prefix])

    # Webhooks: URL prefixes a webhook endpoint may point at although its host is loopback, private,
    # link-local or otherwise not public (comma-separated; empty = public addresses only). A public
    # URL needs no entry: the prefixes only lift the address check, they never narrow it.
    webhook_endpoints: str = Field(
        default="",
        description="URL prefixes a webhook may use despite a non-public address, comma-separated.",
    )

    @property
    def allowed_webhook_endpoints(self) -> tuple[str, ...]:
        return tuple(p.strip() for p in self.webhook_endpoints.split(",") if p.strip())

    @model_validator(mode="after")
    def _secure_cookies_behind_https(self) -> Settings:
        # An https public URL means browsers reach us over TLS: cookies must not go out in clear,
        # unless the operator said otherwise explicitly.
        if "cookie_secure" not in self.model_fields_set and (self.public_url or "").startswith("https://"):
            self.cookie_secure = True
        return self

    @field_validator("provider_endpoints")
    @classmethod
    def _endpoint_prefixes(cls, value: str) -> str:
        if value.strip() == "*":
            return value
        prefixes = [p.strip() for p in value.split(",") if p.strip()]
        if not prefixes:
            raise ValueError('must name at least one URL prefix (or "*" for any)')
        bad = [p for p in prefixes if not re.match(r"https?://[^/\s]+", p)]
        if bad:
            raise ValueError(f"not an http(s) URL prefix with a host: {', '.join(bad)}")
        return value

    @field_validator("webhook_endpoints")
    @classmethod
    def _webhook_prefixes(cls, value: str) -> str:
        prefixes = [p.strip() for p in value.split(",") if p.strip()]
        bad = [p for p in prefixes if not re.match(r"https?://[^/\s]+", p)]
        if bad:
            raise ValueError(f"not an http(s) URL prefix with a host: {', '.join(bad)}")
        return value

    @field_validator("node_contracts")
    @classmethod
    def _known_contracts(cls, value: list[str]) -> list[str]:
        known = ("provider/v1",)  # nodes.states.CONTRACTS (config imports nothing of the domain)
        unknown = [v for v in value if v not in known]
        if unknown:
            raise ValueError(f"unknown node contract(s) {unknown}; known: {', '.join(known)}")
        return value

    @field_validator("database_url")
    @classmethod
    def _non_empty_url(cls, value: str | None) -> str | None:
        if value is not None and not value.strip():
            return None
        return value

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        config_file = _config_file()
        if config_file is not None:
            sources.append(TomlConfigSettingsSource(settings_cls, toml_file=config_file))
        return tuple(sources)

    @property
    def resolved_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.data_dir / 'nodewright.db').resolve()}"

    @property
    def resolved_profiles_dir(self) -> Path:
        return self.profiles_dir if self.profiles_dir is not None else self.data_dir / "profiles"

    def ensure_data_dir(self) -> Path:
        """The data directory, created 0700; one that exists with access for others (it holds the
        key ring and the SQLite database) is tightened to 0700 when it is ours, with a warning."""
        self.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        info = self.data_dir.stat()
        if info.st_mode & 0o077 and info.st_uid == os.geteuid():
            logging.getLogger(__name__).warning(
                "data directory %s was open to other users (mode %o): now 0700",
                self.data_dir,
                info.st_mode & 0o777,
            )
            os.chmod(self.data_dir, 0o700)
        return self.data_dir


def load_settings(**overrides: Any) -> Settings:
    """Build settings; a config-file or environment error surfaces as ``ConfigError``."""
    import tomllib

    from pydantic import ValidationError

    keys = secret_keys_from_fd()
    if keys is not None and "secret_keys" not in overrides:
        overrides["secret_keys"] = SecretStr(keys)
    explicit = os.environ.get("NODEWRIGHT_CONFIG_FILE")
    if explicit and not Path(explicit).is_file():
        # Silently running on defaults would ignore what the operator configured (keys included).
        raise ConfigError(f"the config file {explicit} named by NODEWRIGHT_CONFIG_FILE does not exist")
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or 'settings'}: {err['msg']}" for err in exc.errors()
        )
        raise ConfigError(f"invalid configuration: {problems}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"the config file {_config_file()} is not valid TOML: {exc}") from None
    except OSError as exc:
        raise ConfigError(f"the config file {_config_file()} cannot be read: {exc.strerror}") from None


# Variables that carry secrets into the process. Once read they are removed from ``os.environ``:
# every subprocess (job children, ssh, ansible-runner, which copies its environment into artifacts)
# would otherwise inherit them.
SECRET_ENV_VARS = ("NODEWRIGHT_SECRET_KEYS",)


# Long-running commands re-execute themselves without NODEWRIGHT_SECRET_KEYS in their environment:
# removing a variable from os.environ does not remove it from /proc/<pid>/environ, which keeps the
# environment the process was started with. The keys travel to the new image through a pipe whose
# descriptor number is in this variable; the pipe is read once and closed.
SECRET_KEYS_FD_ENV = "NODEWRIGHT_SECRET_KEYS_FD"  # noqa: S105 (a variable name, not a secret)
_keys_from_fd: str | None = None


def secret_keys_from_fd() -> str | None:
    """The keys handed over by :func:`reexec_without_secret_environment`, if any (read once)."""
    global _keys_from_fd
    fd_text = os.environ.pop(SECRET_KEYS_FD_ENV, None)
    if fd_text is not None and fd_text.isdigit():
        fd = int(fd_text)
        chunks = []
        try:
            while chunk := os.read(fd, 65536):
                chunks.append(chunk)
        finally:
            os.close(fd)
        _keys_from_fd = b"".join(chunks).decode()
    return _keys_from_fd


def reexec_without_secret_environment(argv: list[str]) -> None:
    """Replace this process with ``python -m nodewright.cli <argv>`` started without
    NODEWRIGHT_SECRET_KEYS, passing the keys through an inherited pipe. Returns only when there
    is nothing to hide."""
    keys = os.environ.get("NODEWRIGHT_SECRET_KEYS")
    if not keys:
        return
    data = keys.encode()
    read_end, write_end = os.pipe()
    if len(data) > 60_000:  # more than a pipe buffer holds before a reader exists
        raise ConfigError("NODEWRIGHT_SECRET_KEYS is too long")
    os.write(write_end, data)
    os.close(write_end)
    os.set_inheritable(read_end, True)
    env = {k: v for k, v in os.environ.items() if k != "NODEWRIGHT_SECRET_KEYS"}
    env[SECRET_KEYS_FD_ENV] = str(read_end)
    sys.stdout.flush()
    sys.stderr.flush()
    os.execve(sys.executable, [sys.executable, "-m", "nodewright.cli", *argv], env)  # noqa: S606


def scrub_secret_environment() -> None:
    """Drop secret-bearing variables from this process's environment (after settings are loaded)."""
    for name in SECRET_ENV_VARS:
        os.environ.pop(name, None)


class ConfigError(Exception):
    """A configuration problem the operator must fix; the message is safe to print."""
