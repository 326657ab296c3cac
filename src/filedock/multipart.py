"""Streaming multipart/form-data: file parts are read straight from the request body.

Werkzeug's form parser spools every file to a temporary file before the handler sees it;
a store would then copy it again. This reader hands each file part to the caller as a
stream, so the store's staging file is the only copy, and it bounds everything a hostile
body could use to exhaust the server: parts, header bytes, field bytes, total bytes.

A store without Staging (S3) gets each file spooled to a temporary file instead, since its
name is known only once the whole form is read; it is then put from there.

Inside a file part's data the reader looks for the delimiter itself: a piece of the body that
cannot hold (the start of) one is handed on as read, not copied through the decoder's buffer.
Wherever a delimiter may begin, Werkzeug's decoder decides, so what counts as one is its rule."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import IO, BinaryIO, cast

from werkzeug.datastructures import MultiDict
from werkzeug.exceptions import RequestEntityTooLarge
from werkzeug.sansio.multipart import (
    Data,
    Epilogue,
    Field,
    File,
    MultipartDecoder,
    NeedData,
    State,
)

from .storage import (
    ANYTHING,
    Expect,
    Key,
    ObjectInfo,
    ObjectStore,
    Staged,
    Staging,
    TooLarge,
)

READ_BYTES = 1 << 20
PAGE_BYTES = 4096

# Bytes a delimiter may carry after its boundary (transport padding) that are read before the
# decoder is asked whether it is one; past this the decoder decides on what it has.
PADDING_BYTES = 4 << 10
_LINE_BREAK = b"\r\n"
_PADDING = b" \t\x0b\x0c"  # whitespace but line breaks: [^\S\n\r] in Werkzeug's patterns
_IN_DATA = (State.DATA_START, State.DATA)


class MalformedMultipart(ValueError):
    """The body is not valid multipart/form-data, or breaks one of the reader's bounds."""


@dataclass
class FilePart:
    """One file of the form; `stream` is readable until the next part is asked for."""

    name: str
    filename: str
    content_type: str
    stream: BinaryIO


@dataclass
class MultipartReader:
    """Iterate over the file parts of a body; non-file fields are collected in `fields`."""

    stream: IO[bytes]
    boundary: bytes
    max_bytes: int | None = None
    max_parts: int = 1000
    max_field_bytes: int = 64 << 10
    max_header_bytes: int = 16 << 10
    fields: MultiDict[str, str] = field(default_factory=MultiDict)

    def __post_init__(self) -> None:
        if not self.boundary or len(self.boundary) > 200:
            raise MalformedMultipart("the multipart boundary is missing or too long")
        # The bound on its buffer: a piece of the body around a delimiter, with what is read
        # after it (see _settled); part headers are bounded in _next().
        self._decoder = MultipartDecoder(
            self.boundary, max_form_memory_size=3 * READ_BYTES, max_parts=self.max_parts
        )
        self._dash_boundary = b"--" + self.boundary
        self._received = 0
        self._eof = False
        self._done = False
        self._handed_over = False  # the decoder's buffer begins where a delimiter may
        self._part_bytes = 0  # of the current part's data, returned so far

    def _read(self, size: int = READ_BYTES) -> bytes:
        """The next piece of the body, up to size bytes (b"" at its end, once)."""
        if self._eof:
            raise MalformedMultipart("the multipart body ended before its closing boundary")
        chunk = self.stream.read(size)
        if not chunk:
            self._eof = True
            return chunk
        self._received += len(chunk)
        if self.max_bytes is not None and self._received > self.max_bytes:
            raise TooLarge(f"the body is larger than {self.max_bytes} bytes")
        return chunk

    def _feed(self) -> None:
        """Give the decoder the next piece of the body."""
        chunk = self._read()
        try:
            self._decoder.receive_data(chunk if chunk else None)
        except RequestEntityTooLarge:
            raise MalformedMultipart("a multipart part header is too long") from None

    def _next(self) -> object:
        """The decoder's next event, reading more of the body when it needs data."""
        while True:
            if self._decoder.state in _IN_DATA and self._data_cut_short():
                self._feed()
                continue
            in_headers = self._decoder.state == State.PART
            buffered = len(self._decoder.buffer)
            try:
                event = self._decoder.next_event()
            except RequestEntityTooLarge:
                raise MalformedMultipart(
                    f"the multipart body has more than {self.max_parts} parts"
                ) from None
            except (ValueError, UnicodeDecodeError) as exc:
                raise MalformedMultipart(f"malformed multipart body: {exc}") from None
            if in_headers:
                # In the PART state the buffer starts with a part's header section: for the
                # part the decoder consumes exactly that section, and while it waits for the
                # blank line that ends it, all that is buffered belongs to it.
                kept = len(self._decoder.buffer)
                header_bytes = kept if isinstance(event, NeedData) else buffered - kept
                if header_bytes > self.max_header_bytes:
                    raise MalformedMultipart(
                        f"a multipart part header is longer than {self.max_header_bytes} bytes"
                    )
            if not isinstance(event, NeedData):
                return event
            if len(self._decoder.buffer) > self.max_header_bytes + READ_BYTES:
                raise MalformedMultipart("a multipart part header is too long")
            self._feed()

    def _data(self) -> tuple[bytes, bool]:
        """The next piece of the current part's data, and whether more of it follows."""
        data, more = self._next_data()
        self._part_bytes += len(data)
        return data, more

    def _next_data(self) -> tuple[bytes, bool]:
        """The next piece of the current part's data, and whether more of it follows.

        Past its first piece, the body is read here: a piece in which no delimiter can begin
        is returned as it is, and the few bytes at its end that could begin one wait in the
        decoder's buffer for the next piece. From where a delimiter may begin, the decoder
        reads what follows, and says whether it is one."""
        decoder = self._decoder
        while decoder.state == State.DATA and not self._eof and not self._handed_over:
            held = bytes(decoder.buffer)
            del decoder.buffer[:]
            # Once the part's data is at a page boundary, it stays there: a file written in
            # pieces that end within a page, each handed to the disk as it is written, has a
            # page under writeback written again and waits for the disk (1 GiB: 0.5 s).
            misaligned = (self._part_bytes + len(held)) % PAGE_BYTES
            chunk = self._read(PAGE_BYTES - misaligned if misaligned else READ_BYTES)
            if not chunk:
                decoder.receive_data(held)
                decoder.receive_data(None)
                break
            data = held + chunk if held else chunk
            found = data.find(self._dash_boundary)
            if found < 0:
                cut = self._safe_end(data)
                if cut == len(data):
                    return data, True
                decoder.receive_data(data[cut:])
                if cut:
                    return data[:cut], True
                continue
            data = self._settled(data)
            cut = _before_line_break(data, found)
            decoder.receive_data(data[cut:])
            if self._eof:
                decoder.receive_data(None)
            if cut:
                self._handed_over = True
                return data[:cut], True
            break
        self._handed_over = False
        event = self._next()
        if not isinstance(event, Data):
            raise MalformedMultipart("malformed multipart body")
        return event.data, event.more_data

    def _safe_end(self, data: bytes) -> int:
        """How much of data (holding no full boundary) certainly precedes any delimiter: all
        but an end that could begin one (a line break, then a prefix of "--" + boundary)."""
        dash_boundary = self._dash_boundary
        start = max(0, len(data) - len(dash_boundary) + 1)
        at = data.find(b"-", start)
        while at >= 0 and not dash_boundary.startswith(data[at:]):
            at = data.find(b"-", at + 1)
        return _before_line_break(data, len(data) if at < 0 else at)

    def _settled(self, data: bytes) -> bytes:
        """data, with more of the body read until what follows its last boundary is in hand."""
        while self._unsettled(data):
            data += self._read()
        return data

    def _data_cut_short(self) -> bool:
        """Whether the decoder's buffer ends where more of the body could change what it
        makes of it: within a delimiter, or before a part's data is long enough to tell
        whether it starts with one (the line break ending the part's header counts as the
        delimiter's, as when the whole body is in hand)."""
        buffer = self._decoder.buffer
        if self._decoder.state == State.DATA_START and not self._eof:
            if len(buffer) < len(_LINE_BREAK) + len(self._dash_boundary) + 2:
                return True
        return self._unsettled(buffer)

    def _unsettled(self, data: bytes | bytearray) -> bool:
        """Whether data ends within what may follow a boundary in a delimiter (its padding,
        then "--" or a line break) and more of the body can be read: the decoder would take
        a delimiter cut short there for data (Werkzeug 3.1 holds back only the line break
        and the boundary)."""
        found = data.rfind(self._dash_boundary)
        if found < 0 or self._eof:
            return False
        end = found + len(self._dash_boundary)
        window = data[end : end + PADDING_BYTES]
        padding = len(window) - len(window.lstrip(_PADDING))
        return len(data) - end < padding + 2 and padding < PADDING_BYTES

    def __iter__(self) -> Iterator[FilePart]:
        while not self._done:
            event = self._next()
            if isinstance(event, Epilogue):
                self._done = True
            elif isinstance(event, Field):
                self.fields.add(event.name or "", self._read_field())
            elif isinstance(event, File):
                self._part_bytes = 0
                body = _PartStream(self)
                yield FilePart(
                    name=event.name or "",
                    filename=event.filename or "",
                    content_type=event.headers.get("content-type", ""),
                    stream=body,  # type: ignore[arg-type]
                )
                body.drain()

    def _read_field(self) -> str:
        value = bytearray()
        more = True
        while more:
            event = self._next()
            if not isinstance(event, Data):
                raise MalformedMultipart("malformed multipart body")
            value += event.data
            more = event.more_data
            if len(value) > self.max_field_bytes:
                raise TooLarge(f"a form field is larger than {self.max_field_bytes} bytes")
        try:
            return value.decode("utf-8")
        except UnicodeDecodeError:
            raise MalformedMultipart("a form field is not valid UTF-8") from None


class _PartStream:
    """The bytes of one file part, read on demand from the body."""

    def __init__(self, reader: MultipartReader) -> None:
        self._reader = reader
        self._buffer = b""
        self._more = True

    def read(self, size: int = -1) -> bytes:
        """Up to size bytes of the part (all of it for -1); b"" at its end."""
        while self._more and (size < 0 or len(self._buffer) < size):
            data, self._more = self._reader._data()
            if self._buffer:
                self._buffer += data
            else:
                self._buffer = data
            if size >= 0 and self._buffer:
                break
        if size < 0 or size >= len(self._buffer):
            data, self._buffer = self._buffer, b""
        else:
            data, self._buffer = self._buffer[:size], self._buffer[size:]
        return data

    def drain(self) -> None:
        """Skip whatever the caller did not read."""
        while self.read(READ_BYTES):
            pass


def _before_line_break(data: bytes, end: int) -> int:
    """end, moved back over the line break (at most CR LF) that may precede it."""
    start = end
    while start > max(0, end - len(_LINE_BREAK)) and data[start - 1] in _LINE_BREAK:
        start -= 1
    return start


@dataclass
class StagedFile:
    """A file of the form, staged and waiting for its final name: in the store's staging
    area, or in a temporary file for a store without one."""

    filename: str
    content_type: str
    staged: Staged | None
    spool: IO[bytes] | None = None

    def commit(
        self, storage: ObjectStore, key: Key, content_type: str, expect: Expect = ANYTHING
    ) -> ObjectInfo:
        """Make the file the object at key if `expect` holds (it stays staged if not)."""
        if self.staged is not None:
            return cast(Staging, storage).commit(key, self.staged, content_type, expect)
        assert self.spool is not None
        self.spool.seek(0)
        return storage.put(key, cast(BinaryIO, self.spool), content_type, expect)

    def discard(self, storage: ObjectStore) -> None:
        """Drop the staged data."""
        if self.staged is not None:
            cast(Staging, storage).discard(self.staged)
        if self.spool is not None:
            self.spool.close()


@dataclass
class StagedForm:
    """What stage_form() took from a body: staged files, in order, and the text fields."""

    files: list[StagedFile]
    fields: MultiDict[str, str]

    def discard(self, storage: ObjectStore) -> None:
        """Drop every staged file that was not committed."""
        for item in self.files:
            item.discard(storage)


def stage_form(
    storage: ObjectStore,
    stream: IO[bytes],
    boundary: bytes,
    file_field: str,
    max_bytes: int | None,
) -> StagedForm:
    """Stream each file of `file_field` into the store's staging area in one pass.

    Fields may come before or after the files (curl sends them in command-line order), so
    names are decided once the whole body is read; nothing is visible until committed."""
    reader = MultipartReader(stream, boundary, max_bytes=max_bytes)
    form = StagedForm(files=[], fields=reader.fields)
    try:
        for part in reader:
            if part.name != file_field:
                continue
            if isinstance(storage, Staging):
                staged = storage.stage(part.stream)
                form.files.append(StagedFile(part.filename, part.content_type, staged))
            else:
                spool = tempfile.TemporaryFile()
                form.files.append(StagedFile(part.filename, part.content_type, None, spool))
                shutil.copyfileobj(part.stream, spool, READ_BYTES)
    except BaseException:
        form.discard(storage)
        raise
    return form


def client_basename(filename: str) -> str:
    """The last segment of a client's filename, split on both '/' and '\\'."""
    return filename.replace("\\", "/").rsplit("/", 1)[-1]
