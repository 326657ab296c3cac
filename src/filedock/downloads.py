"""How a stored object is presented to a browser: disposition and active content. No Flask."""

from __future__ import annotations

from urllib.parse import quote

# Types a browser would render as a document with scripts: always sent as attachments.
ACTIVE_TYPES = frozenset(
    {
        "text/html",
        "application/xhtml+xml",
        "image/svg+xml",
        "text/xml",
        "application/xml",
        "application/xslt+xml",
        "application/mathml+xml",
        "application/rss+xml",
        "application/atom+xml",
        "text/xsl",
    }
)

# RFC 8187 attr-char, minus nothing: the characters a filename* value keeps as they are.
_ATTR_SAFE = "!#$&+-.^_`|~"


def is_active(content_type: str) -> bool:
    """Would a browser render this type as an active document (HTML, SVG, XML)?"""
    media = content_type.split(";", 1)[0].strip().lower()
    return media in ACTIVE_TYPES or media.endswith("+xml")


def must_download(content_types: list[str]) -> bool:
    """Must an object with these types (stored, and guessed from its name) be an attachment?"""
    return any(is_active(t) for t in content_types)


def content_disposition(filename: str, attachment: bool = True) -> str:
    """An RFC 6266 Content-Disposition with an ASCII fallback and an RFC 8187 filename*."""
    fallback = "".join(c if " " <= c <= "~" and c not in '"\\' else "_" for c in filename).strip()
    encoded = quote(filename, safe=_ATTR_SAFE, encoding="utf-8", errors="surrogateescape")
    kind = "attachment" if attachment else "inline"
    return f"{kind}; filename=\"{fallback or 'download'}\"; filename*=UTF-8''{encoded}"
