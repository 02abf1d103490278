"""Settings precedence: keyword > environment > config file > default; errors name the setting."""

from __future__ import annotations

from pathlib import Path

import pytest

from nodewright.config import ConfigError, load_settings


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import os

    for key in list(os.environ):
        if key.startswith("NODEWRIGHT_"):
            monkeypatch.delenv(key)
    monkeypatch.chdir(tmp_path)


def test_defaults(tmp_path: Path) -> None:
    settings = load_settings()
    assert settings.port == 8400
    assert settings.resolved_database_url == f"sqlite:///{tmp_path / '.nodewright' / 'nodewright.db'}"


def test_config_file_then_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    config = tmp_path / "nw.toml"
    config.write_text('port = 9000\nhost = "0.0.0.0"\nembedded_workers = 3\n')
    monkeypatch.setenv("NODEWRIGHT_CONFIG_FILE", str(config))
    settings = load_settings()
    assert (settings.port, settings.host, settings.embedded_workers) == (9000, "0.0.0.0", 3)
    monkeypatch.setenv("NODEWRIGHT_PORT", "9100")
    assert load_settings().port == 9100
    assert load_settings(port=9200).port == 9200


def test_data_dir_config_file_is_found(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    (data / "nodewright.toml").write_text("port = 9300\n")
    monkeypatch.setenv("NODEWRIGHT_DATA_DIR", str(data))
    settings = load_settings()
    assert settings.port == 9300
    assert settings.resolved_database_url.endswith("data/nodewright.db")


def test_invalid_value_names_the_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NODEWRIGHT_PORT", "not-a-port")
    with pytest.raises(ConfigError, match="port"):
        load_settings()
    monkeypatch.setenv("NODEWRIGHT_PORT", "70000")
    with pytest.raises(ConfigError, match="port: Input should be less than or equal to 65535"):
        load_settings()


def test_secret_keys_do_not_render(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NODEWRIGHT_SECRET_KEYS", "k" * 44)
    settings = load_settings()
    assert "k" * 44 not in repr(settings) and "k" * 44 not in settings.model_dump_json()


def test_broken_config_file_is_a_message_not_a_traceback(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    config = tmp_path / "nw.toml"
    config.write_text("port = \n")
    monkeypatch.setenv("NODEWRIGHT_CONFIG_FILE", str(config))
    with pytest.raises(ConfigError, match=r"nw.toml is not valid TOML.*line 1"):
        load_settings()


def test_missing_explicit_config_file_is_refused(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("NODEWRIGHT_CONFIG_FILE", str(tmp_path / "absent.toml"))
    with pytest.raises(ConfigError, match=r"absent\.toml named by NODEWRIGHT_CONFIG_FILE does not exist"):
        load_settings()


def test_https_public_url_makes_cookies_secure(monkeypatch: pytest.MonkeyPatch) -> None:
    assert load_settings(public_url="https://nw.example.org").cookie_secure is True
    assert load_settings(public_url="http://127.0.0.1:8400").cookie_secure is False
    # An explicit choice stands (TLS terminated elsewhere and tested over plain HTTP, say).
    assert load_settings(public_url="https://nw.example.org", cookie_secure=False).cookie_secure is False
    monkeypatch.setenv("NODEWRIGHT_PUBLIC_URL", "https://nw.example.org")
    assert load_settings().cookie_secure is True


def test_provider_endpoints_default_to_the_real_api_only(monkeypatch: pytest.MonkeyPatch) -> None:
    from nodewright.providers.connections import ConnectionError_, check_endpoint

    settings = load_settings()
    allowed = settings.allowed_provider_endpoints
    check_endpoint("hetzner", None, allowed)  # the provider's own API
    check_endpoint("hetzner", "https://api.hetzner.cloud/v1", allowed)
    with pytest.raises(ConnectionError_, match="not allowed here"):
        check_endpoint("hetzner", "http://169.254.169.254/latest", allowed)  # any other URL: refused
    settings.allow_provider_endpoint("http://127.0.0.1:8480/")  # what the demo does for its simulator
    check_endpoint("hetzner", "http://127.0.0.1:8480/v1", settings.allowed_provider_endpoints)
    with pytest.raises(ConnectionError_, match="not allowed here"):
        check_endpoint("hetzner", "http://127.0.0.1:9999/v1", settings.allowed_provider_endpoints)
    monkeypatch.setenv("NODEWRIGHT_PROVIDER_ENDPOINTS", "*")
    anything = load_settings()
    assert anything.allowed_provider_endpoints is None
    anything.allow_provider_endpoint("http://127.0.0.1:8480/")  # any stays any
    check_endpoint("hetzner", "http://203.0.113.5/v1", anything.allowed_provider_endpoints)


@pytest.mark.parametrize("value", ["", " , ", "api.hetzner.cloud", "https://api.hetzner.cloud/,ftp://x"])
def test_a_blank_or_malformed_endpoint_allowlist_is_refused_at_start(
    monkeypatch: pytest.MonkeyPatch, value: str
) -> None:
    monkeypatch.setenv("NODEWRIGHT_PROVIDER_ENDPOINTS", value)
    with pytest.raises(ConfigError, match="provider_endpoints"):
        load_settings()


def test_a_throttle_window_past_thirty_days_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    """An unbounded window overflowed the date arithmetic of every sign-in (a 500 each)."""
    monkeypatch.setenv("NODEWRIGHT_LOGIN_THROTTLE_WINDOW_SECONDS", "1e11")
    with pytest.raises(
        ConfigError, match="login_throttle_window_seconds: Input should be less than or equal"
    ):
        load_settings()
    monkeypatch.setenv("NODEWRIGHT_LOGIN_THROTTLE_WINDOW_SECONDS", str(30 * 86400))
    assert load_settings().login_throttle_window_seconds == 30 * 86400


def test_a_data_directory_open_to_others_is_tightened(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """It holds the key ring and the SQLite database: one made 0755 by hand is closed to 0700."""
    data_dir = tmp_path / "data"
    data_dir.mkdir(mode=0o755)
    data_dir.chmod(0o755)
    settings = load_settings(data_dir=data_dir)
    with caplog.at_level("WARNING"):
        assert settings.ensure_data_dir() == data_dir
    assert data_dir.stat().st_mode & 0o777 == 0o700
    assert "open to other users" in caplog.text
    fresh = load_settings(data_dir=tmp_path / "fresh" / "data")
    fresh.ensure_data_dir()
    assert (tmp_path / "fresh" / "data").stat().st_mode & 0o777 == 0o700
