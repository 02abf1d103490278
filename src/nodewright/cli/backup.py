"""``nodewright db backup PATH``: a consistent copy of a SQLite installation's database, taken while
it runs (SQLite's online backup, page by page under its own locks), written 0600 and whole.

PostgreSQL installations are backed up with PostgreSQL's own tools (``pg_dump``); the command says
so rather than pretend. Either way the copy holds the secrets encrypted: it is readable only with the
installation's keys, which this command never copies (keep them apart, in a secret store)."""

from __future__ import annotations

import contextlib
import errno
import os
import sqlite3
from pathlib import Path
from typing import Annotated

import typer

from nodewright.cli.errors import EXIT_FAILED, EXIT_REFUSED, fail, friendly_errors, say
from nodewright.cli.local import installed_settings


@friendly_errors
def db_backup(
    path: Annotated[Path, typer.Argument(help="Where the copy goes (a new file).", show_default=False)],
) -> None:
    """Copy the SQLite database, consistently, while serve and workers run (0600; never the keys)."""
    from nodewright.installation import sqlite_file
    from nodewright.security.secretbox import key_file_path

    settings = installed_settings()
    source = sqlite_file(settings.resolved_database_url)
    if source is None:
        fail(
            "this installation's database is PostgreSQL: back it up with `pg_dump -Fc` (restore with "
            "`pg_restore`), and keep NODEWRIGHT_SECRET_KEYS apart from the dump"
        )
    target = path.expanduser()
    if target.exists() or target.is_symlink():
        fail(f"{target} exists: name a new file", code=EXIT_REFUSED)
    if not target.parent.is_dir():
        fail(f"{target.parent} is not a directory")
    if target.resolve() == source.resolve():
        fail("the backup cannot be the database itself")
    partial = target.with_name(f".{target.name}.partial")
    try:
        _copy(source, partial)
        _publish(partial, target)
    except FileExistsError:
        fail(f"{target} appeared while the copy was made: name a new file", code=EXIT_REFUSED)
    except OSError as exc:
        fail(f"cannot write the backup {target}: {exc.strerror or exc}", code=EXIT_FAILED)
    except sqlite3.Error as exc:
        fail(f"the copy failed: {exc.__class__.__name__}: {exc}", code=EXIT_FAILED)
    finally:
        with contextlib.suppress(OSError):  # published (linked) or not, the partial name goes
            partial.unlink(missing_ok=True)
    keys = "NODEWRIGHT_SECRET_KEYS" if settings.secret_keys is not None else str(key_file_path(settings))
    say(f"backed up {source} to {target} ({target.stat().st_size} bytes)")
    say(f"its secrets open only with the keys in {keys}: keep a copy of them apart from the backup")
    # The old database's -wal (left by a process that was killed) would be replayed onto the copy.
    say(f"to restore: stop every serve and worker, delete {source}-wal and {source}-shm if they are "
        f"there, then put the copy in place of {source}")  # fmt: skip


def _publish(partial: Path, target: Path) -> None:
    """The finished copy under its name, never over a file that appeared since it was checked
    (a hard link fails when the name is taken; ``os.replace`` would overwrite it). A file system
    without hard links (FAT, some network shares) gets the rename, after one more look."""
    try:
        os.link(partial, target)
    except OSError as exc:
        if exc.errno not in (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EMLINK):
            raise
        if target.exists() or target.is_symlink():
            raise FileExistsError(errno.EEXIST, "exists", str(target)) from None
        os.replace(partial, target)


def _copy(source: Path, partial: Path) -> None:
    """SQLite's online backup into a new 0600 file (an interrupted copy leaves only ``partial``)."""
    partial.unlink(missing_ok=True)
    os.close(os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600))
    src = sqlite3.connect(source, timeout=30)
    try:
        dst = sqlite3.connect(partial)
        try:
            src.backup(dst, pages=1024)
            if dst.execute("PRAGMA integrity_check").fetchone() != ("ok",):
                fail("the copy failed its integrity check; nothing was kept")
        finally:
            dst.close()
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    finally:
        src.close()
