"""Response shapes shared by several API areas."""

from __future__ import annotations

from typing import Any

from ..storage import ObjectInfo


def metadata_json(info: ObjectInfo) -> dict[str, Any]:
    """The metadata of an object as API.md section 3 shows it."""
    return {
        "path": info.key,
        "size": info.size,
        "sha256": info.sha256,
        "etag": info.etag,
        "content_type": info.content_type,
        "modified": info.modified.strftime("%Y-%m-%dT%H:%M:%SZ"),
    }
