"""Secrets at rest: round trip, rotation, wrong and malformed keys, key-file permissions."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest
from cryptography.fernet import Fernet
from pydantic import SecretStr
from sqlalchemy import select, text

from nodewright.config import Settings
from nodewright.context import AppContext
from nodewright.db.database import Database
from nodewright.db.models import StoredSecret
from nodewright.security.secretbox import (
    SecretBox,
    SecretKeyError,
    key_file_path,
    load_key_ring,
    rotate_keys,
)
from tests.support.apps import make_settings

CANARY = "hcloud-token-canary-0123456789abcdef0123456789abcdef"


def _file_settings(db_url: str, tmp_path: Path) -> Settings:
    return Settings(data_dir=tmp_path / "data", database_url=db_url)


def test_round_trip_stores_only_ciphertext(db_url: str, tmp_path: Path) -> None:
    settings = _file_settings(db_url, tmp_path)
    ctx = AppContext.open(settings)
    try:
        with ctx.database.session(write=True) as session:
            secret_id = ctx.box.store(session, "provider_token", CANARY).id
        with ctx.database.session() as session:
            assert ctx.box.load(session, secret_id).reveal() == CANARY
            raw = session.execute(text("SELECT ciphertext FROM stored_secrets")).scalars().all()
        assert raw and all(CANARY not in value for value in raw)
    finally:
        ctx.close()


def test_key_file_created_with_0600(db_url: str, tmp_path: Path) -> None:
    settings = _file_settings(db_url, tmp_path)
    AppContext.open(settings).close()
    path = key_file_path(settings)
    assert path.exists()
    assert (path.stat().st_mode & 0o777) == 0o600


def test_world_readable_key_file_is_refused(db_url: str, tmp_path: Path) -> None:
    settings = _file_settings(db_url, tmp_path)
    AppContext.open(settings).close()
    os.chmod(key_file_path(settings), 0o644)
    with pytest.raises(SecretKeyError, match="chmod 600"):
        AppContext.open(settings)


def test_rotation_with_key_file(db_url: str, tmp_path: Path) -> None:
    settings = _file_settings(db_url, tmp_path)
    ctx = AppContext.open(settings)
    with ctx.database.session(write=True) as session:
        ids = [ctx.box.store(session, "provider_token", f"{CANARY}-{i}").id for i in range(3)]
        before = {r.id: r.ciphertext for r in session.scalars(select(StoredSecret))}
    old_keys = load_key_ring(settings, create=False).keys
    ctx.close()

    count, ring = rotate_keys(settings, Database(settings.resolved_database_url))
    assert count == 3
    assert len(ring.keys) == len(old_keys) + 1
    assert ring.keys[1:] == old_keys  # old keys kept: they still decrypt
    assert load_key_ring(settings, create=False).keys == ring.keys

    # The new primary alone decrypts every rotated secret: nothing still needs an old key.
    primary_only = SecretBox(type(ring)((ring.keys[0],), "test"))
    database = Database(settings.resolved_database_url)
    try:
        with database.session() as session:
            rows = {r.id: r for r in session.scalars(select(StoredSecret))}
            for i, secret_id in enumerate(ids):
                assert rows[secret_id].ciphertext != before[secret_id]
                assert primary_only.decrypt(rows[secret_id].ciphertext).reveal() == f"{CANARY}-{i}"
                assert rows[secret_id].rotated_at is not None
    finally:
        database.dispose()
    # And the app still starts with the rotated ring.
    AppContext.open(settings).close()


def test_rotation_with_environment_keys(db_url: str, tmp_path: Path) -> None:
    old = Fernet.generate_key().decode()
    settings = Settings(data_dir=tmp_path / "d", database_url=db_url, secret_keys=SecretStr(old))
    ctx = AppContext.open(settings)
    with ctx.database.session(write=True) as session:
        secret_id = ctx.box.store(session, "provider_token", CANARY).id
    ctx.close()
    new = Fernet.generate_key().decode()
    rotated = Settings(data_dir=tmp_path / "d", database_url=db_url, secret_keys=SecretStr(f"{new},{old}"))
    database = Database(db_url)
    try:
        count, _ring = rotate_keys(rotated, database)
        assert count == 1
        with database.session() as session:
            row = session.get(StoredSecret, secret_id)
            assert row is not None
            assert SecretBox(type(_ring)((new,), "test")).decrypt(row.ciphertext).reveal() == CANARY
    finally:
        database.dispose()
    # The old key can now be dropped.
    only_new = Settings(data_dir=tmp_path / "d", database_url=db_url, secret_keys=SecretStr(new))
    AppContext.open(only_new).close()


def test_wrong_key_stops_startup_with_clear_message(db_url: str, tmp_path: Path) -> None:
    first = Settings(
        data_dir=tmp_path / "d", database_url=db_url, secret_keys=SecretStr(Fernet.generate_key().decode())
    )
    AppContext.open(first).close()
    wrong = Settings(
        data_dir=tmp_path / "d", database_url=db_url, secret_keys=SecretStr(Fernet.generate_key().decode())
    )
    with pytest.raises(SecretKeyError, match="do not match this database"):
        AppContext.open(wrong)


def test_malformed_key_is_named(db_url: str, tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path / "d", database_url=db_url, secret_keys=SecretStr("not-a-key"))
    with pytest.raises(SecretKeyError, match="key #1 in NODEWRIGHT_SECRET_KEYS is not a valid Fernet key"):
        AppContext.open(settings)


def test_missing_key_file_without_create(db_url: str, tmp_path: Path) -> None:
    with pytest.raises(SecretKeyError, match="no secret key"):
        load_key_ring(_file_settings(db_url, tmp_path), create=False)


def test_running_process_reads_secrets_rotated_by_another(db_url: str, tmp_path: Path) -> None:
    """`secrets rotate` runs beside a live `serve`: the live process must still open every secret."""
    settings = _file_settings(db_url, tmp_path)
    running = AppContext.open(settings)
    try:
        with running.database.session(write=True) as session:
            secret_id = running.box.store(session, "provider_token", CANARY).id
        database = Database(settings.resolved_database_url)
        try:
            rotate_keys(settings, database)  # as the CLI does, in its own process
        finally:
            database.dispose()
        with running.database.session() as session:
            assert running.box.load(session, secret_id).reveal() == CANARY
    finally:
        running.close()


def test_key_file_write_is_durable_and_private(
    db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A leftover temporary file (an earlier crash) must not lend its mode to the key file, and the
    directory entry is fsynced before rotation re-encrypts the database under the new key."""
    import stat

    settings = _file_settings(db_url, tmp_path)
    AppContext.open(settings).close()
    path = key_file_path(settings)
    leftover = path.with_suffix(".tmp")
    leftover.write_text("stale\n")
    os.chmod(leftover, 0o644)

    synced_dirs: list[bool] = []
    real_fsync = os.fsync

    def recording_fsync(fd: int) -> None:
        synced_dirs.append(stat.S_ISDIR(os.fstat(fd).st_mode))
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", recording_fsync)
    database = Database(settings.resolved_database_url)
    try:
        rotate_keys(settings, database)
    finally:
        database.dispose()
    assert (path.stat().st_mode & 0o777) == 0o600
    assert True in synced_dirs, "the key file's directory was not fsynced after the rename"
    AppContext.open(settings).close()


def test_missing_key_file_for_existing_secrets_is_named(db_url: str, tmp_path: Path) -> None:
    """A lost key file is reported as missing; no fresh (useless) key file is made in its place."""
    settings = _file_settings(db_url, tmp_path)
    AppContext.open(settings).close()
    path = key_file_path(settings)
    path.unlink()
    with pytest.raises(SecretKeyError, match=r"secret\.keys is missing, but this database holds secrets"):
        AppContext.open(settings)
    assert not path.exists()


def test_concurrent_rotation_is_refused(db_url: str, tmp_path: Path) -> None:
    import fcntl

    settings = _file_settings(db_url, tmp_path)
    AppContext.open(settings).close()
    keys_before = load_key_ring(settings, create=False).keys
    lock_path = key_file_path(settings).with_name("secret.keys.lock")
    fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o600)
    database = Database(settings.resolved_database_url)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)  # another rotation holds it
        with pytest.raises(SecretKeyError, match="another `nodewright secrets rotate` is running"):
            rotate_keys(settings, database)
        assert load_key_ring(settings, create=False).keys == keys_before
        fcntl.flock(fd, fcntl.LOCK_UN)
        rotate_keys(settings, database)
        assert len(load_key_ring(settings, create=False).keys) == len(keys_before) + 1
    finally:
        os.close(fd)
        database.dispose()


def _at_once(count: int, action: Callable[[], object]) -> list[object]:
    """Run ``action`` in ``count`` threads released together; their results, or the exceptions."""
    import threading

    barrier = threading.Barrier(count)
    results: list[object] = []

    def run() -> None:
        barrier.wait()
        try:
            results.append(action())
        except BaseException as exc:
            results.append(exc)

    threads = [threading.Thread(target=run) for _ in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return results


def test_processes_starting_together_on_a_fresh_database(db_url: str, tmp_path: Path) -> None:
    """Several `serve` processes started at once on one new database all come up, with one key."""
    settings = make_settings(db_url, tmp_path / "data")
    contexts = _at_once(8, lambda: AppContext.open(settings))
    errors = [c for c in contexts if isinstance(c, BaseException)]
    assert not errors, errors[0]
    opened = [c for c in contexts if isinstance(c, AppContext)]
    try:
        assert len({c.signer.csrf_for("same-session") for c in opened}) == 1
    finally:
        for ctx in opened:
            ctx.close()


def test_first_start_of_processes_sharing_a_data_dir_agrees_on_one_key(tmp_path: Path) -> None:
    """`serve` and `users create` started together on a new data directory: both must use the key
    that ends up in the file, or secrets written by one would be under a key that exists nowhere."""
    settings = Settings(data_dir=tmp_path / "data", database_url=f"sqlite:///{tmp_path / 'unused.db'}")
    rings = _at_once(8, lambda: load_key_ring(settings, create=True).keys)
    assert not [r for r in rings if isinstance(r, BaseException)], rings
    on_disk = load_key_ring(settings, create=False).keys
    assert all(r == on_disk for r in rings)
    assert (key_file_path(settings).stat().st_mode & 0o777) == 0o600
    assert sorted(p.name for p in key_file_path(settings).parent.iterdir()) == ["secret.keys"]
