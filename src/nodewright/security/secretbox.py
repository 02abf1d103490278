"""Encryption at rest with a key ring (MultiFernet): the first key encrypts, every key decrypts.

Keys come from ``NODEWRIGHT_SECRET_KEYS`` (comma-separated) or from ``<data_dir>/secret.keys``, which
is created with mode 0600 on first start. A check value stored in the database proves at start-up
that the ring can decrypt what is stored, so a wrong key stops the process with a clear message
instead of failing later on the first provider call.
"""

from __future__ import annotations

import datetime as dt
import fcntl
import os
import stat
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from sqlalchemy import select
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from nodewright.config import Settings
from nodewright.db.database import Database
from nodewright.db.models import AppMeta, StoredSecret
from nodewright.security.redaction import register_secret
from nodewright.security.secret import Secret

KEY_FILE_NAME = "secret.keys"
CHECK_KEY = "secret_key_check"
CHECK_PLAINTEXT = "nodewright-key-check-v1"
SESSION_KEY_META = "session_signing_key"
# app_meta rows whose value is ciphertext; rotation re-encrypts them with the stored secrets.
ENCRYPTED_META_KEYS = (CHECK_KEY, SESSION_KEY_META)


class SecretKeyError(Exception):
    """The key ring is missing, malformed or cannot decrypt stored secrets; message is safe to print."""


@dataclass(frozen=True)
class KeyRing:
    keys: tuple[str, ...]
    source: str  # "env" or the key file path

    @property
    def from_file(self) -> bool:
        return self.source != "env"


def _parse_keys(raw: str, source: str) -> tuple[str, ...]:
    keys = tuple(k.strip() for k in raw.replace("\n", ",").split(",") if k.strip())
    if not keys:
        raise SecretKeyError(f"no secret keys found in {source}")
    for index, key in enumerate(keys, start=1):
        try:
            Fernet(key.encode())
        except (ValueError, TypeError):
            raise SecretKeyError(
                f"secret key #{index} in {source} is not a valid Fernet key "
                "(32 url-safe base64-encoded bytes; make one with `nodewright secrets generate-key`)"
            ) from None
    for key in keys:
        register_secret(key)
    return keys


def key_file_path(settings: Settings) -> Path:
    return settings.data_dir / KEY_FILE_NAME


def load_key_ring(settings: Settings, *, create: bool) -> KeyRing:
    if settings.secret_keys is not None:
        return KeyRing(_parse_keys(settings.secret_keys.get_secret_value(), "NODEWRIGHT_SECRET_KEYS"), "env")
    path = key_file_path(settings)
    if not path.exists():
        if not create:
            raise SecretKeyError(
                f"no secret key: set NODEWRIGHT_SECRET_KEYS or provide {path} (created on first `serve`)"
            )
        settings.ensure_data_dir()
        _create_key_file(path, (Fernet.generate_key().decode(),))
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & 0o077:
        raise SecretKeyError(f"{path} is readable by others (mode {mode:o}); run: chmod 600 {path}")
    return KeyRing(_parse_keys(path.read_text(), str(path)), str(path))


def _create_key_file(path: Path, keys: tuple[str, ...]) -> None:
    """Create the key file unless it exists, never replacing one: when two processes start at once
    on a new data directory, one key wins and both read it. (Replacing could leave a process
    encrypting with a key that exists only in its memory.)"""
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".new", dir=path.parent)  # 0600
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "w") as handle:
            handle.write("\n".join(keys) + "\n")
            handle.flush()
            os.fsync(handle.fileno())
        try:
            os.link(tmp, path)  # atomic, and fails if the file exists
        except FileExistsError:
            return
        _fsync_dir(path.parent)
    finally:
        tmp.unlink(missing_ok=True)


def _fsync_dir(directory: Path) -> None:
    dir_fd = os.open(directory, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def write_key_file(path: Path, keys: tuple[str, ...]) -> None:
    """Write atomically with 0600 from the first byte (never a moment world-readable), durably.

    The temporary file is created fresh (``O_EXCL``): reusing a leftover one would keep its mode.
    The directory is fsynced after the rename, so the new file is on disk before the caller goes on;
    rotation re-encrypts the database right after this, and a power loss must not leave ciphertexts
    under a key that only existed in the page cache.
    """
    tmp = path.with_suffix(".tmp")
    tmp.unlink(missing_ok=True)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write("\n".join(keys) + "\n")
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)
    _fsync_dir(path.parent)


class SecretBox:
    def __init__(self, ring: KeyRing) -> None:
        self.ring = ring
        self._fernet = MultiFernet([Fernet(k.encode()) for k in ring.keys])

    def encrypt(self, plaintext: str | Secret) -> str:
        value = plaintext.reveal() if isinstance(plaintext, Secret) else plaintext
        return self._fernet.encrypt(value.encode()).decode()

    def decrypt(self, ciphertext: str) -> Secret:
        try:
            return Secret(self._fernet.decrypt(ciphertext.encode()).decode())
        except InvalidToken:
            pass
        # `nodewright secrets rotate` in another process may have added a new primary key to the key
        # file and re-encrypted under it: a running process picks the new ring up here.
        if self._reload_key_file():
            try:
                return Secret(self._fernet.decrypt(ciphertext.encode()).decode())
            except InvalidToken:
                pass
        raise SecretKeyError(
            "a stored secret cannot be decrypted with the configured keys "
            "(wrong NODEWRIGHT_SECRET_KEYS or secret.keys?)"
        )

    def _reload_key_file(self) -> bool:
        """Re-read the key file; True when it now holds a different ring (which is then used)."""
        if not self.ring.from_file:
            return False
        path = Path(self.ring.source)
        try:
            if stat.S_IMODE(path.stat().st_mode) & 0o077:
                return False
            keys = _parse_keys(path.read_text(), str(path))
        except (OSError, SecretKeyError):
            return False
        if keys == self.ring.keys:
            return False
        ring = KeyRing(keys, self.ring.source)
        self._fernet = MultiFernet([Fernet(k.encode()) for k in ring.keys])
        self.ring = ring
        return True

    def rotate_ciphertext(self, ciphertext: str) -> str:
        try:
            return self._fernet.rotate(ciphertext.encode()).decode()
        except InvalidToken:
            raise SecretKeyError("a stored secret cannot be decrypted with any configured key") from None

    # --- stored secrets -------------------------------------------------------------------------

    def store(self, session: Session, purpose: str, plaintext: str | Secret) -> StoredSecret:
        row = StoredSecret(purpose=purpose, ciphertext=self.encrypt(plaintext))
        session.add(row)
        session.flush()
        return row

    def load(self, session: Session, secret_id: int) -> Secret:
        row = session.get(StoredSecret, secret_id)
        if row is None:
            raise KeyError(f"secret {secret_id} not found")
        return self.decrypt(row.ciphertext)

    def replace(self, session: Session, secret_id: int, plaintext: str | Secret) -> None:
        row = session.get(StoredSecret, secret_id)
        if row is None:
            raise KeyError(f"secret {secret_id} not found")
        row.ciphertext = self.encrypt(plaintext)
        row.rotated_at = dt.datetime.now(dt.UTC)

    # --- start-up check and rotation ------------------------------------------------------------

    def verify_or_initialise(self, database: Database) -> None:
        """Store a check value on first use; afterwards prove the ring still decrypts it."""
        with database.session(write=True) as session:
            row = session.get(AppMeta, CHECK_KEY)
            if row is None:
                session.add(AppMeta(key=CHECK_KEY, value=self.encrypt(CHECK_PLAINTEXT)))
                return
            try:
                ok = self._fernet.decrypt(row.value.encode()).decode() == CHECK_PLAINTEXT
            except InvalidToken:
                ok = False
            if not ok:
                raise SecretKeyError(
                    "the configured secret keys do not match this database: none of them decrypts the "
                    f"stored check value (keys from {self.ring.source}). Restore the right key; stored "
                    "secrets cannot be read without it."
                )

    def reencrypt_all(self, database: Database) -> int:
        """Re-encrypt every stored secret and encrypted app_meta value under the primary key."""
        count = 0
        with database.session(write=True) as session:
            now = dt.datetime.now(dt.UTC)
            for row in session.scalars(select(StoredSecret)):
                row.ciphertext = self.rotate_ciphertext(row.ciphertext)
                row.rotated_at = now
                count += 1
            for meta in session.scalars(select(AppMeta).where(AppMeta.key.in_(ENCRYPTED_META_KEYS))):
                meta.value = self.rotate_ciphertext(meta.value)
        return count


def rotate_keys(settings: Settings, database: Database) -> tuple[int, KeyRing]:
    """Add a new primary key (key file) and re-encrypt every stored secret under it.

    With keys from the environment nodewright cannot edit them: the operator prepends the new key to
    ``NODEWRIGHT_SECRET_KEYS`` and runs this to re-encrypt under it, then may drop the old key.
    """
    if settings.secret_keys is not None:
        ring = load_key_ring(settings, create=False)
        SecretBox(ring).verify_or_initialise(database)
        return SecretBox(ring).reencrypt_all(database), ring
    with _rotation_lock(key_file_path(settings)):
        # Read under the lock: a rotation that ran meanwhile has added its key to the file.
        ring = load_key_ring(settings, create=False)
        SecretBox(ring).verify_or_initialise(database)
        new_ring = KeyRing((Fernet.generate_key().decode(), *ring.keys), ring.source)
        for key in new_ring.keys:
            register_secret(key)
        # The file first: a crash after this line leaves old ciphertexts that the old key still opens;
        # the reverse order could leave ciphertexts whose key exists nowhere.
        write_key_file(Path(ring.source), new_ring.keys)
        return SecretBox(new_ring).reencrypt_all(database), new_ring


@contextmanager
def _rotation_lock(key_file: Path) -> Iterator[None]:
    """One rotation at a time per key file. Two at once could each write a key file holding only its
    own new key, and the database could end up encrypted under the key that was overwritten."""
    fd = os.open(key_file.with_name(key_file.name + ".lock"), os.O_RDWR | os.O_CREAT, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise SecretKeyError(
                f"another `nodewright secrets rotate` is running on {key_file}; wait for it to finish"
            ) from None
        yield
    finally:
        os.close(fd)


def database_has_secrets(database: Database) -> bool:
    """Whether the database already holds values encrypted with some key (its check value)."""
    try:
        with database.session() as session:
            return session.get(AppMeta, CHECK_KEY) is not None
    except SQLAlchemyError:  # not migrated yet: nothing stored
        return False


def generate_key() -> str:
    return Fernet.generate_key().decode()
