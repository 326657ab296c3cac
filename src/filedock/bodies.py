"""Request bodies: read exactly what the client declared, and notice a client that left.

A WSGI server hands over a body stream that simply ends when the client disconnects; read
naively, half a body would look like a whole (short) one and be stored. No Flask here."""

from __future__ import annotations

from typing import IO, BinaryIO

from gunicorn.http.errors import ParseException

# What reading a body raises when the client breaks it: gunicorn's NoMoreData (an OSError) when
# it ends early, its ParseException for a malformed chunk, a reset connection.
BODY_ERRORS = (OSError, ValueError, ParseException)

# The largest read asked of the WSGI server at once: its body readers build each answer in a
# buffer and copy it, so big reads cost several times their size in transient memory.
READ_BYTES = 256 << 10


class IncompleteBody(Exception):
    """The body ended before its declared length, or the connection broke while reading it."""


class BodyReader:
    """A body stream that raises IncompleteBody instead of ending early."""

    def __init__(self, stream: IO[bytes], length: int | None) -> None:
        self._stream = stream
        self._length = length
        self._received = 0
        self.incomplete = False  # set once IncompleteBody was raised

    def read(self, size: int = -1) -> bytes:
        """Up to size bytes of the body (at most READ_BYTES); b"" only once all was read."""
        size = READ_BYTES if size is None or size < 0 else min(size, READ_BYTES)
        if self._length is not None:
            left = self._length - self._received
            if left <= 0:
                return b""
            size = min(size, left)
        try:
            data = self._stream.read(size)
        except BODY_ERRORS as exc:
            self.incomplete = True
            raise IncompleteBody(f"the request body could not be read: {exc}") from None
        self._received += len(data)
        if not data and self._length is not None:
            self.incomplete = True
            raise IncompleteBody(
                f"the request body ended after {self._received} of {self._length} bytes"
            )
        return data

    @property
    def received(self) -> int:
        """Bytes read so far."""
        return self._received


def body_reader(stream: IO[bytes], length: int | None) -> BinaryIO:
    """The body as a stream that ends only where it should."""
    return BodyReader(stream, length)  # type: ignore[return-value]
