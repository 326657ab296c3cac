"""The `filedock` command."""

from __future__ import annotations

from typing import Any

import click

from . import __version__, auth
from .config import ConfigError, Settings
from .server import ServeError, serve


@click.group()
@click.version_option(__version__, prog_name="filedock")
def main() -> None:
    """filedock: serve a folder of files and JSON documents over HTTP."""


@main.command("serve")
@click.option("--store", help="A directory (default ./data).")
@click.option("--host", help="Address to listen on (default 127.0.0.1).")
@click.option("--port", type=int, help="Port (default 5000; 0 picks a free one).")
@click.option("--workers", type=int, help="Worker processes (default 2).")
@click.option("--config", "config_file", type=click.Path(dir_okay=False), help="A TOML file.")
@click.option(
    "--allow-anonymous",
    is_flag=True,
    default=None,
    help="Serve with no tokens on a non-loopback address.",
)
@click.option("--read-only", is_flag=True, default=None, help="Answer every write with 403.")
def serve_command(config_file: str | None, **flags: Any) -> None:
    """Run the production server (gunicorn) until SIGTERM or Ctrl-C."""
    try:
        settings = Settings.load(config_file, **flags)
        serve(settings)
    except (ConfigError, ServeError) as exc:
        raise click.ClickException(str(exc)) from None


CONFIG_OPTION = click.option(
    "--config",
    "config_file",
    required=True,
    type=click.Path(dir_okay=False),
    help="The TOML config file holding the [[tokens]].",
)


@main.group("token")
def token_group() -> None:
    """Create, list and revoke API tokens (the config keeps only their SHA-256 hashes)."""


@token_group.command("create")
@CONFIG_OPTION
@click.option("--scope", "scopes", required=True, help="read, write, admin, comma-separated.")
@click.option("--prefix", default="", help="Limit the token to this path and what is under it.")
@click.option("--name", default="", help="A name to list and revoke it by.")
def token_create(config_file: str, scopes: str, prefix: str, name: str) -> None:
    """Print a new token once and append its hash to the config file."""
    try:
        token, record = auth.create_token(config_file, scopes, prefix, name)
    except (ConfigError, OSError) as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(token)
    where = f" under {record.prefix!r}" if record.prefix else ""
    click.echo(
        f"created {record.name} ({','.join(record.scopes)}{where}) in {config_file}; "
        "this is the only time the token is shown",
        err=True,
    )


@token_group.command("list")
@CONFIG_OPTION
def token_list(config_file: str) -> None:
    """One line per token: name, scopes, prefix, start of its hash."""
    try:
        tokens = auth.config_tokens(config_file)
    except (ConfigError, OSError) as exc:
        raise click.ClickException(str(exc)) from None
    for token in tokens:
        prefix = token.prefix or "*"
        click.echo(f"{token.name or '-'}\t{','.join(token.scopes)}\t{prefix}\t{token.hash[:12]}")


@token_group.command("revoke")
@CONFIG_OPTION
@click.argument("ref")
def token_revoke(config_file: str, ref: str) -> None:
    """Remove the token with this name or hash prefix (running servers notice at once)."""
    try:
        token = auth.revoke_token(config_file, ref)
    except (ConfigError, OSError) as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"revoked {token.name or token.hash[:12]}")
