"""URL rules: how a stored object's path is taken from the URL."""

from __future__ import annotations

from werkzeug.routing import BaseConverter


class AnyPathConverter(BaseConverter):
    """The rest of the URL path as it is, slashes and all, so that check_key() (not the
    router) judges it: a leading or doubled '/' must be a 400, not a 404 or a redirect."""

    regex = "[\\s\\S]*"
    part_isolating = False
