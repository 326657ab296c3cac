"""Settings: the one config object (defaults < TOML file < FILEDOCK_* environment < flags)."""

from __future__ import annotations

import dataclasses
import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

ENV_PREFIX = "FILEDOCK_"
OPEN_UPLOAD_SIZES = 4  # max_open_upload_bytes by default, in uploads of max_upload_bytes


class ConfigError(ValueError):
    """A setting has a bad name or value."""


@dataclass(frozen=True)
class Token:
    """An API token as the config keeps it: only its SHA-256 hash."""

    hash: str
    scopes: tuple[str, ...]
    prefix: str = ""
    name: str = ""


def default_workers() -> int:
    """Two worker processes per core. Each gthread worker takes connections as they come, so
    with one per core a burst of new connections can all land on one of them and leave a core
    idle (seen in the benchmark: the throughput of small requests halved in every other run);
    two per core keep both busy."""
    return 2 * (os.cpu_count() or 1)


@dataclass(frozen=True)
class Settings:
    """Everything the server can be told."""

    store: str = "./data"  # a directory, memory:// for tests and demos, or s3://BUCKET/PREFIX
    s3_endpoint: str = ""  # an S3-compatible store other than AWS (path-style addressing)
    host: str = "127.0.0.1"
    port: int = 5000
    workers: int = field(default_factory=lambda: default_workers())
    threads: int = 16
    client_timeout: int = 60  # seconds a client may stall mid-request before it is dropped
    header_timeout: int = 30  # seconds a client has to send a request's whole head
    body_min_rate: int = 500  # bytes/s a body must average after client_timeout s; 0: any
    max_upload_bytes: int = 10 << 30
    max_json_bytes: int = 16 << 20
    # unfinished tus uploads one client (a token, or an anonymous client's address) may have
    max_open_uploads: int = 100
    max_open_upload_bytes: int = 0  # their total Upload-Length; 0: 4 x max_upload_bytes
    cors_origins: tuple[str, ...] = ("*",)
    allow_anonymous: bool = False
    access_log: bool = True
    read_only: bool = False
    tokens: tuple[Token, ...] = ()
    secret_key: str = ""
    # Proxies in front of the server whose X-Forwarded-* headers are believed (0: none).
    trusted_proxies: int = 0
    config_file: str = field(default="", metadata={"env": False})

    def __post_init__(self) -> None:
        for name in ("workers", "threads", "client_timeout", "header_timeout", "max_open_uploads"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be at least 1, not {getattr(self, name)}")
        for name in ("max_upload_bytes", "max_json_bytes"):
            if getattr(self, name) < 0:
                raise ConfigError(f"{name} must not be negative, not {getattr(self, name)}")
        if not 0 <= self.port <= 65535:
            raise ConfigError(f"port must be between 0 and 65535, not {self.port}")
        if self.trusted_proxies < 0:
            raise ConfigError(f"trusted_proxies must be 0 or more, not {self.trusted_proxies}")
        if self.body_min_rate < 0:
            raise ConfigError(f"body_min_rate must be 0 or more, not {self.body_min_rate}")
        if self.max_open_upload_bytes < 0:
            raise ConfigError("max_open_upload_bytes must be 0 (the default) or more")

    @property
    def open_upload_bytes_limit(self) -> int:
        """max_open_upload_bytes, or by default four uploads of the largest size."""
        return self.max_open_upload_bytes or OPEN_UPLOAD_SIZES * self.max_upload_bytes

    @classmethod
    def load(
        cls,
        config_file: str | None = None,
        env: Mapping[str, str] | None = None,
        **overrides: Any,
    ) -> Settings:
        """Defaults, then the TOML file, then the environment, then overrides (flags)."""
        env = os.environ if env is None else env
        config_file = config_file or env.get(ENV_PREFIX + "CONFIG") or ""
        values: dict[str, Any] = {}
        if config_file:
            values.update(read_toml(config_file))
            values["config_file"] = config_file
        values.update(env_values(env))
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls.from_dict(values)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        """Settings from FILEDOCK_* variables (and FILEDOCK_CONFIG's file, if named)."""
        return cls.load(env=env)

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> Settings:
        """Build settings from plain values, checking names and converting types."""
        fields = {f.name: f for f in dataclasses.fields(cls)}
        kwargs: dict[str, Any] = {}
        for name, value in values.items():
            if name not in fields:
                raise ConfigError(f"unknown setting {name!r}")
            kwargs[name] = _convert(name, fields[name].type, value)
        return cls(**kwargs)


def read_toml(path: str) -> dict[str, Any]:
    """The settings of a TOML file: keys at top level, tokens as [[tokens]] tables."""
    try:
        with open(path, "rb") as f:
            data = tomllib.load(f)
    except FileNotFoundError:
        raise ConfigError(f"config file {path} does not exist") from None
    except OSError as exc:
        raise ConfigError(f"config file {path}: {exc.strerror or exc}") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"config file {path}: {exc}") from None
    return data


def env_values(env: Mapping[str, str]) -> dict[str, str]:
    """The FILEDOCK_* variables as setting names; unknown names are an error."""
    names = {f.name for f in dataclasses.fields(Settings) if f.metadata.get("env", True)}
    values = {}
    for var, value in env.items():
        if not var.startswith(ENV_PREFIX) or var == ENV_PREFIX + "CONFIG":
            continue
        name = var[len(ENV_PREFIX) :].lower()
        if name in ("url", "token"):  # the client commands' variables
            continue
        if name not in names:
            raise ConfigError(f"unknown environment variable {var}")
        values[name] = value
    return values


def _convert(name: str, kind: Any, value: Any) -> Any:
    kind = str(kind)
    try:
        if kind == "int":
            if isinstance(value, bool):
                raise ValueError
            return int(value)
        if kind == "bool":
            if isinstance(value, bool):
                return value
            text = str(value).strip().lower()
            if text in ("1", "true", "yes", "on"):
                return True
            if text in ("0", "false", "no", "off", ""):
                return False
            raise ValueError
        if kind == "str":
            if not isinstance(value, str):
                raise ValueError
            return value
        if kind == "tuple[str, ...]":
            items = value.split(",") if isinstance(value, str) else list(value)
            return tuple(str(item).strip() for item in items if str(item).strip())
        if kind == "tuple[Token, ...]":
            return tuple(_token(item) for item in value)
    except (TypeError, ValueError, KeyError):
        raise ConfigError(f"bad value for {name}: {value!r}") from None
    raise ConfigError(f"setting {name} has an unsupported type {kind}")


def _token(item: Any) -> Token:
    if isinstance(item, Token):
        return item
    scopes = item["scopes"]
    scopes = scopes.split(",") if isinstance(scopes, str) else scopes
    return Token(
        hash=str(item["hash"]),
        scopes=tuple(str(s).strip() for s in scopes),
        prefix=str(item.get("prefix", "")),
        name=str(item.get("name", "")),
    )
