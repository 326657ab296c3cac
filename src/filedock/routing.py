"""URL rules: how a stored object's path is taken from the URL."""

from __future__ import annotations

from flask import request
from werkzeug.routing import BaseConverter


class AnyPathConverter(BaseConverter):
    """The rest of the URL path as it is, slashes and all, so that check_key() (not the
    router) judges it: a leading or doubled '/' must be a 400, not a 404 or a redirect."""

    regex = "[\\s\\S]*"
    part_isolating = False


def came_from_utf8(argument: str) -> bool:
    """Was this URL argument valid UTF-8 in the request?

    The WSGI server percent-decodes the path once and hands it over as latin-1; Werkzeug
    re-decodes that as UTF-8, replacing bad bytes with U+FFFD, so a path that had invalid
    UTF-8 is recognised from the raw PATH_INFO."""
    if "\ufffd" not in argument:
        return True
    try:
        request.environ.get("PATH_INFO", "").encode("latin-1").decode("utf-8")
    except (UnicodeEncodeError, UnicodeDecodeError):
        return False
    return True
