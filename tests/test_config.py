"""Settings: defaults < TOML file < FILEDOCK_* environment < flags (API.md section 10)."""

from __future__ import annotations

import dataclasses
import os
import re
from pathlib import Path

import pytest

from filedock.config import ConfigError, Settings, Token

README = Path(__file__).resolve().parent.parent / "README.md"


def test_defaults() -> None:
    settings = Settings.load(env={})
    assert (settings.store, settings.host, settings.port) == ("./data", "127.0.0.1", 5000)
    assert settings.cors_origins == ("*",)
    assert settings.workers == 2 * (os.cpu_count() or 1)
    assert not settings.allow_anonymous and not settings.read_only and settings.tokens == ()


def test_precedence(tmp_path: Path) -> None:
    config = tmp_path / "filedock.toml"
    config.write_text(
        'port = 6000\nhost = "127.0.0.2"\nworkers = 3\nmax_json_bytes = 100\n'
        'cors_origins = ["https://a.test"]\n'
        '[[tokens]]\nhash = "ab"\nscopes = ["read"]\nprefix = "team-a"\n'
    )
    env = {"FILEDOCK_PORT": "7000", "FILEDOCK_WORKERS": "5", "FILEDOCK_READ_ONLY": "true"}
    settings = Settings.load(str(config), env=env, workers=9)
    assert settings.host == "127.0.0.2"  # file
    assert settings.port == 7000  # environment over file
    assert settings.workers == 9  # flag over environment
    assert settings.read_only is True
    assert settings.max_json_bytes == 100
    assert settings.cors_origins == ("https://a.test",)
    assert settings.tokens == (Token(hash="ab", scopes=("read",), prefix="team-a"),)


def test_config_file_from_environment(tmp_path: Path) -> None:
    config = tmp_path / "c.toml"
    config.write_text("port = 6001\n")
    assert Settings.from_env({"FILEDOCK_CONFIG": str(config)}).port == 6001


def test_lists_in_the_environment_are_comma_separated() -> None:
    env = {"FILEDOCK_CORS_ORIGINS": "https://a.test, https://b.test"}
    assert Settings.load(env=env).cors_origins == ("https://a.test", "https://b.test")


@pytest.mark.parametrize(
    "env",
    [{"FILEDOCK_PROT": "1"}, {"FILEDOCK_PORT": "http"}, {"FILEDOCK_READ_ONLY": "maybe"}],
)
def test_bad_environment(env: dict[str, str]) -> None:
    with pytest.raises(ConfigError):
        Settings.load(env=env)


def test_bad_file(tmp_path: Path) -> None:
    (tmp_path / "bad.toml").write_text("port = 'x'\n")
    (tmp_path / "unknown.toml").write_text("colour = 'red'\n")
    (tmp_path / "broken.toml").write_text("port = \n")
    for name in ("bad.toml", "unknown.toml", "broken.toml", "missing.toml"):
        with pytest.raises(ConfigError):
            Settings.load(str(tmp_path / name), env={})


def test_every_setting_is_in_the_readme() -> None:
    readme = README.read_text()
    for field in dataclasses.fields(Settings):
        if field.name == "config_file":
            continue
        assert re.search(rf"`{field.name}`", readme), field.name
        assert f"FILEDOCK_{field.name.upper()}" in readme or field.name == "tokens", field.name


@pytest.mark.parametrize("store", ["s3://B_ad/x", "s3://bucket/a/../b", "s3://"])
def test_a_bad_s3_store_is_a_clear_error(store: str) -> None:
    from click.testing import CliRunner

    from filedock.cli import main

    result = CliRunner().invoke(main, ["serve", "--store", store, "--port", "0"])
    assert result.exit_code == 2
    assert result.output.startswith("filedock: store:") and "Traceback" not in result.output


def test_s3_endpoint_from_the_environment() -> None:
    env = {"FILEDOCK_STORE": "s3://bucket/pre", "FILEDOCK_S3_ENDPOINT": "http://127.0.0.1:9"}
    settings = Settings.from_env(env)
    assert (settings.store, settings.s3_endpoint) == ("s3://bucket/pre", "http://127.0.0.1:9")
