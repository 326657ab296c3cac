"""The media type an object is stored and served with (API.md section 3). No Flask here.

The type an upload declares counts when it is one `type/subtype` other than the generic
`application/octet-stream` (which clients send when they know nothing: curl --data-binary,
browsers for unknown files, tus clients' `filetype`); otherwise the type is guessed from the
path's extension, and is `application/octet-stream` only when the extension says nothing.
Every way in (PUT, multipart forms, /uploadFiles, tus) goes through choose_type().
"""

from __future__ import annotations

import re

from werkzeug.http import parse_options_header

from .storage import guess_type
from .storage.base import OCTET_STREAM

__all__ = ["MEDIA_TYPE", "OCTET_STREAM", "choose_type", "declared_type", "guess_type"]
# One type/subtype of RFC 9110 token characters: a list ("text/plain, text/html", read by
# browsers as its last valid type) or control characters make no media type.
MEDIA_TYPE = re.compile(r"[A-Za-z0-9!#$&^_.+-]{1,127}/[A-Za-z0-9!#$&^_.+-]{1,127}")
MAX_CHARSET_CHARS = 40


def declared_type(value: str | None) -> str:
    """The useful type of a declared Content-Type (or tus filetype): its `type/subtype`
    (lower case, plus a plain charset), or "" when it is missing, not one media type, or
    application/octet-stream."""
    if not value:
        return ""
    mimetype, options = parse_options_header(value)
    mimetype = mimetype.lower()
    if not MEDIA_TYPE.fullmatch(mimetype) or mimetype == OCTET_STREAM:
        return ""
    charset = options.get("charset", "")
    plain = charset.replace("-", "").replace("_", "").isalnum()
    if charset and plain and len(charset) < MAX_CHARSET_CHARS:
        return f"{mimetype}; charset={charset}"
    return mimetype


def choose_type(path: str, declared: str | None) -> str:
    """The type to store an upload to path with: the declared one if useful, else a guess."""
    return declared_type(declared) or guess_type(path)
