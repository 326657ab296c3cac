"""The `filedock` command."""

from __future__ import annotations

from typing import Any

import click

from . import __version__
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
