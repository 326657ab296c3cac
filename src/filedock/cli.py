"""The `filedock` command."""

from __future__ import annotations

import contextlib
import json
import os
import sys
import time
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import urlsplit

import click

from . import __version__, auth, tokenstore
from .client import DEFAULT_URL, Client, FiledockError
from .config import ConfigError, Settings, Token
from .server import ServeError, serve
from .storage import Storage, open_storage


class UserError(click.ClickException):
    """A mistake the user can fix (a flag, the config, the environment, the store, the port):
    one line on stderr, `filedock: <message>`, and exit status 2."""

    exit_code = 2

    def show(self, file: Any = None) -> None:
        """Print the one line."""
        click.echo(f"filedock: {self.format_message()}", err=True)


def os_error_message(exc: OSError) -> str:
    """An OSError as `path: reason`, without Python's [Errno N]."""
    reason = exc.strerror or str(exc)
    return f"{exc.filename}: {reason}" if exc.filename else reason


@contextlib.contextmanager
def user_errors() -> Iterator[None]:
    """The errors a user causes (settings, the config file, the store, the address) as a
    UserError; anything else is a bug and keeps its traceback."""
    try:
        yield
    except (ConfigError, ServeError) as exc:
        raise UserError(str(exc)) from None
    except OSError as exc:
        raise UserError(os_error_message(exc)) from None


@contextlib.contextmanager
def token_errors() -> Iterator[None]:
    """user_errors(), and a token's own mistakes (an unknown scope, no such token)."""
    with user_errors():
        try:
            yield
        except ValueError as exc:
            raise UserError(str(exc)) from None


@contextlib.contextmanager
def one_line_usage_errors() -> Iterator[None]:
    """Click's usage errors (usage text, hint, then the message) as a one-line UserError;
    the help shown for a group called without arguments stays as it is."""
    try:
        yield
    except click.exceptions.NoArgsIsHelpError:
        raise
    except click.UsageError as exc:
        message = exc.format_message().rstrip(".")
        if exc.ctx is not None:
            message += f" (see '{exc.ctx.command_path} --help')"
        raise UserError(message) from None


class Command(click.Group):
    """The filedock command group: usage errors, in any subcommand, are one line."""

    def make_context(
        self,
        info_name: str | None,
        args: list[str],
        parent: click.Context | None = None,
        **extra: Any,
    ) -> click.Context:
        """Parse the group's own options."""
        with one_line_usage_errors():
            return super().make_context(info_name, args, parent, **extra)

    def invoke(self, ctx: click.Context) -> Any:
        """Run the subcommand (whose parsing errors surface here)."""
        with one_line_usage_errors():
            return super().invoke(ctx)


@click.group(cls=Command)
@click.version_option(__version__, prog_name="filedock")
def main() -> None:
    """filedock: serve a folder of files and JSON documents over HTTP, and use one."""


@main.command("serve")
@click.option("--store", help="A directory (default ./data), or s3://BUCKET/PREFIX.")
@click.option("--s3-endpoint", help="The URL of an S3-compatible store other than AWS.")
@click.option("--host", help="Address to listen on (default 127.0.0.1).")
@click.option("--port", type=int, help="Port (default 5000; 0 picks a free one).")
@click.option("--workers", type=int, help="Worker processes (default 2 per core).")
@click.option("--config", "config_file", type=click.Path(dir_okay=False), help="A TOML file.")
@click.option(
    "--allow-anonymous",
    is_flag=True,
    default=None,
    help="Serve with no tokens on a non-loopback address.",
)
@click.option("--read-only", is_flag=True, default=None, help="Answer every write with 403.")
@click.option(
    "--trusted-proxies",
    type=int,
    help="Proxies in front whose X-Forwarded-* headers to believe (default 0).",
)
def serve_command(config_file: str | None, **flags: Any) -> None:
    """Run the production server (gunicorn) until SIGTERM or Ctrl-C."""
    with user_errors():
        serve(Settings.load(config_file, **flags))


CONFIG_OPTION = click.option(
    "--config",
    "config_file",
    type=click.Path(dir_okay=False),
    help="The TOML config file holding the [[tokens]].",
)
STORE_OPTION = click.option(
    "--store",
    metavar="STORE",
    help="Keep the tokens in this store instead, shared by every server of it.",
)
S3_ENDPOINT_OPTION = click.option(
    "--s3-endpoint", help="With an s3:// store: the URL of an S3-compatible store other than AWS."
)


class TokenPlace:
    """Where token commands keep tokens: a config file's [[tokens]], or the store's records."""

    def __init__(
        self,
        config_file: str | None,
        store: str | None,
        must_exist: bool,
        s3_endpoint: str | None = None,
    ) -> None:
        if bool(config_file) == bool(store):
            raise click.UsageError("give one of --config FILE or --store STORE")
        self.config_file = config_file or ""
        self.storage: Storage | None = None
        if store:
            if must_exist and "://" not in store and not os.path.isdir(store):
                raise UserError(f"there is no store at {store}")
            self.storage = open_storage(Settings.load(store=store, s3_endpoint=s3_endpoint))
        self.label = self.config_file or f"the store {store}"

    def create(self, scopes: str, prefix: str, name: str) -> tuple[str, Token]:
        """A new token and its record."""
        if self.storage is not None:
            return tokenstore.create_token(self.storage, scopes, prefix, name)
        return auth.create_token(self.config_file, scopes, prefix, name)

    def tokens(self) -> list[Token]:
        """The tokens kept there."""
        if self.storage is not None:
            return list(tokenstore.read_tokens(self.storage))
        return auth.config_tokens(self.config_file)

    def revoke(self, ref: str) -> Token:
        """Remove the token named ref (or whose hash starts with ref)."""
        if self.storage is not None:
            return tokenstore.revoke_token(self.storage, ref)
        return auth.revoke_token(self.config_file, ref)


@main.group("token")
def token_group() -> None:
    """Create, list and revoke API tokens, in a config file or in the store itself (either
    way only their SHA-256 hashes are kept)."""


@token_group.command("create")
@CONFIG_OPTION
@STORE_OPTION
@S3_ENDPOINT_OPTION
@click.option("--scope", "scopes", required=True, help="read, write, admin, comma-separated.")
@click.option("--prefix", default="", help="Limit the token to this path and what is under it.")
@click.option("--name", default="", help="A name to list and revoke it by.")
def token_create(
    config_file: str | None,
    store: str | None,
    s3_endpoint: str | None,
    scopes: str,
    prefix: str,
    name: str,
) -> None:
    """Print a new token once and record its hash."""
    with token_errors():
        place = TokenPlace(config_file, store, must_exist=False, s3_endpoint=s3_endpoint)
        token, record = place.create(scopes, prefix, name)
    click.echo(token)
    where = f" under {record.prefix!r}" if record.prefix else ""
    click.echo(
        f"created {record.name} ({','.join(record.scopes)}{where}) in {place.label}; "
        "this is the only time the token is shown",
        err=True,
    )


@token_group.command("list")
@CONFIG_OPTION
@STORE_OPTION
@S3_ENDPOINT_OPTION
def token_list(config_file: str | None, store: str | None, s3_endpoint: str | None) -> None:
    """One line per token: name, scopes, prefix, start of its hash."""
    with token_errors():
        tokens = TokenPlace(config_file, store, must_exist=True, s3_endpoint=s3_endpoint).tokens()
    for token in tokens:
        prefix = token.prefix or "*"
        click.echo(f"{token.name or '-'}\t{','.join(token.scopes)}\t{prefix}\t{token.hash[:12]}")


@token_group.command("revoke")
@CONFIG_OPTION
@STORE_OPTION
@S3_ENDPOINT_OPTION
@click.argument("ref")
def token_revoke(
    config_file: str | None, store: str | None, s3_endpoint: str | None, ref: str
) -> None:
    """Remove the token with this name or hash prefix (running servers of a config file
    notice at once, those of a store within 10 seconds)."""
    with token_errors():
        place = TokenPlace(config_file, store, must_exist=True, s3_endpoint=s3_endpoint)
        token = place.revoke(ref)
    click.echo(f"revoked {token.name or token.hash[:12]}")


# -- client commands: put, get, ls, rm, meta, json (over HTTP, through filedock.client) ----------


def check_url(ctx: click.Context, param: click.Parameter, value: str) -> str:
    """--url must be an http(s) URL (a usage error otherwise)."""
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise click.BadParameter(f"{value!r} is not an http:// or https:// URL")
    return value


def client_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """--url and --token, given after the subcommand (or in FILEDOCK_URL, FILEDOCK_TOKEN)."""
    command = click.option(
        "--token",
        envvar="FILEDOCK_TOKEN",
        default=None,
        help="API token (env FILEDOCK_TOKEN), sent as Authorization: Bearer.",
    )(command)
    return click.option(
        "--url",
        envvar="FILEDOCK_URL",
        default=DEFAULT_URL,
        show_default=True,
        callback=check_url,
        help="The server (env FILEDOCK_URL).",
    )(command)


def transfer_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """--progress and --quiet."""
    command = click.option(
        "--quiet", "-q", is_flag=True, help="No progress bar and no summary on stderr."
    )(command)
    return click.option(
        "--progress",
        "show_progress",
        is_flag=True,
        help="Show a progress bar on stderr even when it is not a terminal.",
    )(command)


class ProgressBar:
    """A one-line progress bar on stderr, redrawn at most ten times a second."""

    WIDTH = 30

    def __init__(self, label: str) -> None:
        self.label = label
        self.drawn_at = 0.0
        self.drawn = False

    def __call__(self, done: int, total: int | None) -> None:
        now = time.monotonic()
        if now - self.drawn_at < 0.1 and done != total:
            return
        self.drawn_at = now
        if total:
            filled = self.WIDTH * done // total
            bar = "#" * filled + "-" * (self.WIDTH - filled)
            line = f"{self.label} [{bar}] {100 * done // total:3d}% {human(done)}/{human(total)}"
        else:
            line = f"{self.label} {human(done)}"
        click.echo(f"\r{line}", nl=False, err=True)
        self.drawn = True

    def close(self) -> None:
        """End the bar's line."""
        if self.drawn:
            click.echo(err=True)


def human(size: int) -> str:
    """1536 -> 1.5 KiB."""
    value = float(size)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            return f"{size} B" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")


@contextlib.contextmanager
def progress_bar(label: str, show: bool, quiet: bool) -> Iterator[ProgressBar | None]:
    """A progress bar when asked for (or stderr is a terminal) and not silenced."""
    if quiet or not (show or sys.stderr.isatty()):
        yield None
        return
    bar = ProgressBar(label)
    try:
        yield bar
    finally:
        bar.close()


@contextlib.contextmanager
def open_client(url: str, token: str | None) -> Iterator[Client]:
    """A Client; its errors become a one-line message and exit status 1."""
    try:
        with Client(url, token or None) as client:
            yield client
    except FiledockError as exc:
        raise click.ClickException(error_message(exc)) from None
    except OSError as exc:
        where = f"{exc.filename}: " if exc.filename else ""
        raise click.ClickException(f"{where}{exc.strerror or exc}") from None


def error_message(exc: FiledockError) -> str:
    """The line a failed request prints."""
    if exc.status is None:
        return exc.detail
    message = f"{exc.detail} ({exc.status} {exc.code})"
    if exc.status == 401:
        message += "; pass --token or set FILEDOCK_TOKEN"
    return message


@main.command("put")
@click.argument("local", type=click.Path(exists=True, dir_okay=False, allow_dash=True))
@click.argument("remote")
@click.option("--no-overwrite", is_flag=True, help="Fail if REMOTE exists.")
@click.option(
    "--resumable",
    is_flag=True,
    help="Upload through the tus endpoint in chunks; an interrupted upload carries on "
    "when the same command runs again.",
)
@client_options
@transfer_options
def put_command(
    local: str,
    remote: str,
    no_overwrite: bool,
    resumable: bool,
    url: str,
    token: str | None,
    show_progress: bool,
    quiet: bool,
) -> None:
    """Upload a file to REMOTE.

    LOCAL is a file, or - for standard input. A REMOTE ending in / keeps LOCAL's name."""
    if remote.endswith("/") or not remote:
        if local == "-":
            raise click.UsageError("REMOTE must name the object when LOCAL is -")
        remote += os.path.basename(local)
    if resumable and local == "-":
        raise click.UsageError("--resumable needs a file, not -")
    with open_client(url, token) as client, progress_bar(remote, show_progress, quiet) as bar:
        if resumable:
            info = client.upload_resumable(local, remote, not no_overwrite, bar)
        elif local == "-":
            stdin = sys.stdin.buffer
            info = client.put(stdin, remote, not no_overwrite, bar)
        else:
            info = client.put(local, remote, not no_overwrite, bar)
    if not quiet:
        click.echo(
            f"stored {info['path']} ({info['size']} bytes, sha256 {info['sha256']})", err=True
        )


@main.command("get")
@click.argument("remote")
@click.argument("local", required=False, type=click.Path(allow_dash=True))
@click.option(
    "--resume",
    "-c",
    is_flag=True,
    help="Fetch only the rest of a partly downloaded LOCAL (all of it if REMOTE changed).",
)
@client_options
@transfer_options
def get_command(
    remote: str,
    local: str | None,
    resume: bool,
    url: str,
    token: str | None,
    show_progress: bool,
    quiet: bool,
) -> None:
    """Download REMOTE to a file or standard output.

    LOCAL defaults to REMOTE's last segment in the current folder; a folder gets that name
    inside it; - writes to standard output."""
    name = remote.rstrip("/").rsplit("/", 1)[-1]
    if local is None:
        local = name
    elif local != "-" and os.path.isdir(local):
        local = os.path.join(local, name)
    if resume and local == "-":
        raise click.UsageError("--resume needs a file, not -")
    with open_client(url, token) as client, progress_bar(remote, show_progress, quiet) as bar:
        if local == "-":
            stdout = sys.stdout.buffer
            client.get(remote, stdout, bar)
            stdout.flush()
        else:
            client.get(remote, local, bar, resume)


@main.command("ls")
@click.argument("prefix", default="")
@click.option("--long", "-l", "long_", is_flag=True, help="Add size (bytes) and modified time.")
@client_options
def ls_command(prefix: str, long_: bool, url: str, token: str | None) -> None:
    """List objects, one path a line.

    Every object whose path starts with PREFIX (recursive), in path order."""
    with open_client(url, token) as client:
        for item in client.iter_files(prefix):
            if long_:
                click.echo(f"{item['size']:>12}  {item['modified']}  {item['path']}")
            else:
                click.echo(item["path"])


@main.command("rm")
@click.argument("remote")
@client_options
def rm_command(remote: str, url: str, token: str | None) -> None:
    """Delete REMOTE."""
    with open_client(url, token) as client:
        client.rm(remote)


@main.command("meta")
@click.argument("remote")
@client_options
def meta_command(remote: str, url: str, token: str | None) -> None:
    """Print REMOTE's metadata as JSON.

    The fields: path, size, sha256, etag, content_type, modified."""
    with open_client(url, token) as client:
        click.echo(json.dumps(client.meta(remote), indent=2, ensure_ascii=False))


@main.group("json")
def json_group() -> None:
    """Read, replace and patch JSON documents."""


@json_group.command("get")
@click.argument("path")
@click.option("--pointer", "-p", help="An RFC 6901 JSON Pointer into the document (/a/0/b).")
@client_options
def json_get(path: str, pointer: str | None, url: str, token: str | None) -> None:
    """Print the document at PATH (or the value at --pointer), pretty."""
    with open_client(url, token) as client:
        value = client.json_get(path, pointer)
    click.echo(json.dumps(value, indent=2, ensure_ascii=False))


def read_json_file(source: str) -> Any:
    """The JSON in a file (- for standard input); a usage error if it is not JSON."""
    with click.open_file(source, "rb") as stream:
        data = stream.read()
    try:
        return json.loads(data)
    except ValueError as exc:
        raise click.BadParameter(f"{source} is not JSON: {exc}") from None


@json_group.command("put")
@click.argument("path")
@click.argument("source", type=click.Path(exists=True, dir_okay=False, allow_dash=True))
@client_options
def json_put(path: str, source: str, url: str, token: str | None) -> None:
    """Store the JSON in SOURCE (- for standard input) as the document at PATH."""
    value = read_json_file(source)
    with open_client(url, token) as client:
        client.json_put(path, value)


@json_group.command("patch")
@click.argument("path")
@click.argument("source", type=click.Path(exists=True, dir_okay=False, allow_dash=True))
@click.option("--merge", is_flag=True, help="SOURCE is a merge patch (RFC 7396).")
@client_options
def json_patch(path: str, source: str, merge: bool, url: str, token: str | None) -> None:
    """Apply the JSON Patch (RFC 6902) in SOURCE to the document at PATH; print the result."""
    patch = read_json_file(source)
    with open_client(url, token) as client:
        value = client.json_patch(path, patch, merge)
    click.echo(json.dumps(value, indent=2, ensure_ascii=False))
