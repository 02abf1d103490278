"""Saved server contexts, like ``hcloud context``: ``nodewright login`` stores a server's URL and a
verified API token under a name, and API commands use the active one when neither ``--url`` /
``NODEWRIGHT_URL`` nor ``--token-file`` / ``NODEWRIGHT_TOKEN`` say otherwise.

The file is ``$NODEWRIGHT_CLI_CONFIG``, else ``$XDG_CONFIG_HOME/nodewright/contexts.json`` (default
``~/.config``): a directory of mode 0700 and a file of mode 0600, written whole and renamed into
place. A file that other users could read is refused (its tokens may have been seen), as ssh refuses
a readable private key. A context's token is sent only to that context's own URL: a command pointed
at another server never carries it there.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import re
import stat
import tempfile
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from nodewright.cli.client import ApiError
from nodewright.security.secret import Secret
from nodewright.security.text import clean_line

NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
NAME_RULE = "1-64 letters, digits, '.', '_' or '-', starting with a letter or digit"


@dataclass(frozen=True)
class Context:
    name: str
    url: str
    token: str = field(repr=False)  # never in a repr, a log or a traceback's locals
    username: str
    role: str
    saved_at: str

    @property
    def secret(self) -> Secret:
        return Secret(self.token)

    def public(self, active: bool) -> dict[str, Any]:
        """What may be shown: everything but the token."""
        return {"name": self.name, "active": active, "url": self.url, "username": self.username,
                "role": self.role, "saved_at": self.saved_at}  # fmt: skip


@dataclass
class Contexts:
    path: Path
    active: str | None
    items: dict[str, Context]

    def current(self) -> Context | None:
        chosen = os.environ.get("NODEWRIGHT_CONTEXT", "").strip() or self.active
        if not chosen:
            return None
        if chosen not in self.items:
            source = "NODEWRIGHT_CONTEXT" if os.environ.get("NODEWRIGHT_CONTEXT", "").strip() else self.path
            raise ApiError(
                f"no context named {clean_line(chosen)!r} (from {source}); `nodewright context list` "
                "shows the saved ones",
                usage=True,
            )
        return self.items[chosen]

    def save(self) -> None:
        self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        body = {
            "active": self.active,
            "contexts": {name: asdict(c) for name, c in sorted(self.items.items())},
        }
        fd, temporary = tempfile.mkstemp(prefix=".contexts-", dir=self.path.parent)
        try:
            os.fchmod(fd, 0o600)
            with os.fdopen(fd, "w") as handle:
                json.dump(body, handle, indent=2)
                handle.write("\n")
            os.replace(temporary, self.path)
        except BaseException:
            Path(temporary).unlink(missing_ok=True)
            raise


def config_path() -> Path:
    explicit = os.environ.get("NODEWRIGHT_CLI_CONFIG", "").strip()
    if explicit:
        return Path(explicit)
    base = os.environ.get("XDG_CONFIG_HOME", "").strip() or str(Path.home() / ".config")
    return Path(base) / "nodewright" / "contexts.json"


def check_name(name: str) -> str:
    if not NAME_RE.fullmatch(name):
        raise ApiError(f"context name {clean_line(name)!r}: use {NAME_RULE}", usage=True)
    return name


def name_for(url: str) -> str:
    """A context's default name: the server's host (and port), e.g. ``127.0.0.1-8400``."""
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    text = (parts.hostname or "default") + (f"-{parts.port}" if parts.port else "")
    text = re.sub(r"[^A-Za-z0-9_.-]", "-", text).strip("-.") or "default"
    return text[:64]


def load() -> Contexts:
    path = config_path()
    try:
        info = path.stat()
    except FileNotFoundError:
        return Contexts(path, None, {})
    except OSError as exc:
        raise ApiError(f"cannot read {path}: {exc.strerror}", usage=True) from None
    if info.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise ApiError(
            f"{path} can be read by other users (mode {stat.S_IMODE(info.st_mode):o}); its tokens may "
            f"have been seen: revoke them, then `chmod 600 {path}`",
            status=403,
        )
    try:
        body = json.loads(path.read_text())
        items = {str(name): Context(**{k: str(v) for k, v in value.items()})
                 for name, value in body.get("contexts", {}).items()}  # fmt: skip
        active = body.get("active")
    except (OSError, ValueError, TypeError, AttributeError, RecursionError) as exc:
        raise ApiError(
            f"{path} is not a contexts file nodewright can read ({exc.__class__.__name__}); move it away "
            "and `nodewright login` again",
            usage=True,
        ) from None
    return Contexts(path, active if isinstance(active, str) and active in items else None, items)


def remember(url: str, token: Secret, username: str, role: str, name: str) -> Contexts:
    with locked():
        contexts = load()
        saved_at = dt.datetime.now(dt.UTC).replace(microsecond=0).isoformat()
        contexts.items[name] = Context(name, url, token.reveal(), username, role, saved_at)
        contexts.active = name
        contexts.save()
    return contexts


@contextlib.contextmanager
def locked() -> Iterator[None]:
    """One writer of the contexts file at a time (two logins at once would lose one)."""
    import fcntl

    path = config_path()
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd = os.open(path.parent / ".contexts.lock", os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def server_key(url: str) -> tuple[str, str, int]:
    """Scheme, host and port as the HTTP client that sends the token reads them (``httpx``); a URL
    that ``urlsplit`` reads otherwise (``:+8400``, full-width digits) is refused (ValueError)."""
    from urllib.parse import urlsplit

    import httpx

    try:
        parsed = httpx.URL(url.strip())
        split_port = urlsplit(url.strip()).port
    except (httpx.InvalidURL, ValueError, TypeError) as exc:
        raise ValueError(str(exc) or "not a URL") from None
    scheme = parsed.scheme.lower()
    default = {"http": 80, "https": 443}.get(scheme)
    if default is None or not parsed.host:
        raise ValueError("not an http(s) URL with a host")
    port = parsed.port or default
    if (split_port or default) != port:
        raise ValueError("its port is written in a way URL parsers read differently")
    return scheme, parsed.host.lower().rstrip("."), port


def same_server(a: str, b: str) -> bool:
    """Whether two URLs name one server (scheme, host and port): only then does a context's token
    go. Anything that does not parse is not the same server."""
    try:
        return server_key(a) == server_key(b)
    except ValueError:
        return False
