"""Content-Digest (RFC 9530): check an upload against the digests its client sent. No Flask.

sha-256 is compared with the hash the store computes anyway while it streams the body, so
those bytes are hashed once; sha-512 is computed on the way into the store. Digests with
other algorithms are ignored, as RFC 9530 section 3 allows."""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
from collections.abc import Callable
from typing import Any, BinaryIO

# sf-key "=" sf-binary, parameters allowed and ignored (RFC 8941 dictionary members)
_MEMBER = re.compile(r"^([a-z*][a-z0-9_\-.*]*)\s*=\s*:([A-Za-z0-9+/=]*):\s*(;.*)?$")

ALGORITHMS: dict[str, Callable[[], Any]] = {"sha-256": hashlib.sha256, "sha-512": hashlib.sha512}


class DigestMismatch(ValueError):
    """The body does not match its Content-Digest."""


class MalformedDigest(ValueError):
    """A Content-Digest header that is not an RFC 9530 dictionary of byte sequences."""


def parse_content_digest(header: str) -> dict[str, bytes]:
    """The digests of a Content-Digest value for the algorithms filedock knows."""
    digests: dict[str, bytes] = {}
    for member in header.split(","):
        member = member.strip()
        if not member:
            raise MalformedDigest("Content-Digest has an empty member")
        match = _MEMBER.match(member)
        if match is None:
            raise MalformedDigest(
                "Content-Digest must look like sha-256=:<base64>: (RFC 9530 section 2)"
            )
        algorithm, value = match.group(1), match.group(2)
        try:
            raw = base64.b64decode(value, validate=True)
        except (binascii.Error, ValueError):
            raise MalformedDigest(f"the {algorithm} digest is not valid base64") from None
        if algorithm in ALGORITHMS:
            digests[algorithm] = raw
    return digests


def content_digest(sha256_hex: str) -> str:
    """The Content-Digest value of bytes with this SHA-256."""
    return "sha-256=:" + base64.b64encode(bytes.fromhex(sha256_hex)).decode("ascii") + ":"


class _HashingReader:
    """A stream that feeds every byte read through it to some hashes."""

    def __init__(self, stream: BinaryIO, hashes: list[Any]) -> None:
        self._stream = stream
        self._hashes = hashes

    def read(self, size: int = -1) -> bytes:
        """Read from the stream and hash what was read."""
        data = self._stream.read(size)
        for digest in self._hashes:
            digest.update(data)
        return data


class DigestCheck:
    """The digests one request promised, and how to check its body against them."""

    def __init__(self, expected: dict[str, bytes], store_hashes_sha256: bool = True) -> None:
        self.expected = expected
        own = {name for name in expected if not (name == "sha-256" and store_hashes_sha256)}
        self._hashes = {name: ALGORITHMS[name]() for name in sorted(own)}
        self._store_sha256 = store_hashes_sha256

    @classmethod
    def from_header(cls, header: str | None, store_hashes_sha256: bool = True) -> DigestCheck:
        """A check for a Content-Digest header (none: a check that always passes)."""
        return cls(parse_content_digest(header) if header else {}, store_hashes_sha256)

    def wrap(self, stream: BinaryIO) -> BinaryIO:
        """The stream to read the body through, so the digests the store does not compute
        are computed on the way."""
        if not self._hashes:
            return stream
        return _HashingReader(stream, list(self._hashes.values()))  # type: ignore[return-value]

    def verify(self, sha256_hex: str | None = None) -> None:
        """Raise DigestMismatch unless every promised digest matches the body read."""
        for name, expected in self.expected.items():
            if name in self._hashes:
                actual = self._hashes[name].digest()
            elif sha256_hex is not None:
                actual = bytes.fromhex(sha256_hex)
            else:
                raise DigestMismatch("the sha-256 digest was not computed")
            if not hmac.compare_digest(actual, expected):
                raise DigestMismatch(f"the body does not match its {name} Content-Digest")
