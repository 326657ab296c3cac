"""SHA-256 whose running state can be saved as bytes and resumed in another process.

hashlib objects cannot be pickled or copied across processes, so a resumable upload that
moves between workers, restarts and instances would have to re-read everything stored so far
to finish its hash. OpenSSL's SHA256_CTX is a plain 112-byte struct: through ctypes we call
SHA256_Init/Update/Final of the libcrypto that Python's own _hashlib already loaded (the same C
code hashlib runs) and keep the struct's raw bytes in the upload's state record.

The raw struct is only meaningful to the same layout, so a state carries a tag (byte order and
struct size); a process that cannot load libcrypto, or finds a foreign tag, falls back to
re-hashing the stored prefix once (see resumable.py)."""

from __future__ import annotations

import ctypes
import ctypes.util
import hashlib
import sys
from functools import cache

CTX_BYTES = 112  # sizeof(SHA256_CTX): h[8], Nl, Nh, data[16], num, md_len as 32-bit words
TAG = f"openssl-sha256-ctx/{sys.byteorder}/{CTX_BYTES}"


@cache
def libcrypto() -> ctypes.CDLL | None:
    """The libcrypto that _hashlib uses, or None if it cannot be found or lacks SHA256_*."""
    for path in _candidates():
        try:
            lib = ctypes.CDLL(path)
            for name in ("SHA256_Init", "SHA256_Update", "SHA256_Final"):
                getattr(lib, name)
        except (OSError, AttributeError):
            continue
        lib.SHA256_Init.argtypes = [ctypes.c_void_p]
        lib.SHA256_Update.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_size_t]
        lib.SHA256_Final.argtypes = [ctypes.c_char_p, ctypes.c_void_p]
        for function in (lib.SHA256_Init, lib.SHA256_Update, lib.SHA256_Final):
            function.restype = ctypes.c_int
        if _works(lib):
            return lib
    return None


def _candidates() -> list[str]:
    """Paths of libcrypto: the one mapped into this process by _hashlib first."""
    import _hashlib  # noqa: F401 - loads libcrypto into the process

    found = []
    try:
        with open("/proc/self/maps") as maps:
            for line in maps:
                path = line.split(maxsplit=5)[-1].strip()
                if "libcrypto" in path.rsplit("/", 1)[-1] and path not in found:
                    found.append(path)
    except OSError:
        pass
    name = ctypes.util.find_library("crypto")
    if name:
        found.append(name)
    return found


def _works(lib: ctypes.CDLL) -> bool:
    ctx = ctypes.create_string_buffer(CTX_BYTES)
    out = ctypes.create_string_buffer(32)
    ok = lib.SHA256_Init(ctx) and lib.SHA256_Update(ctx, b"abc", 3) and lib.SHA256_Final(out, ctx)
    return bool(ok) and out.raw == hashlib.sha256(b"abc").digest()


class ResumableSha256:
    """A running SHA-256 whose state() can be stored and given back to from_state()."""

    def __init__(self, lib: ctypes.CDLL, ctx: bytes | None = None) -> None:
        self._lib = lib
        self._ctx = ctypes.create_string_buffer(CTX_BYTES)
        if ctx is None:
            lib.SHA256_Init(self._ctx)
        else:
            if len(ctx) != CTX_BYTES:
                raise ValueError("a SHA256_CTX is 112 bytes")
            ctypes.memmove(self._ctx, ctx, CTX_BYTES)

    @classmethod
    def new(cls) -> ResumableSha256 | None:
        """A fresh hash, or None when libcrypto is not available."""
        lib = libcrypto()
        return None if lib is None else cls(lib)

    @classmethod
    def from_state(cls, tag: str, ctx: bytes) -> ResumableSha256 | None:
        """Resume a saved state, or None if this process cannot (no libcrypto, other layout)."""
        lib = libcrypto()
        if lib is None or tag != TAG:
            return None
        return cls(lib, ctx)

    def update(self, data: bytes) -> None:
        """Hash more bytes."""
        self._lib.SHA256_Update(self._ctx, data, len(data))

    def state(self) -> bytes:
        """The raw SHA256_CTX."""
        return self._ctx.raw

    def hexdigest(self) -> str:
        """The digest of everything so far (the running state is left as it was)."""
        copy = ctypes.create_string_buffer(self._ctx.raw, CTX_BYTES)
        out = ctypes.create_string_buffer(32)
        self._lib.SHA256_Final(out, copy)
        return out.raw.hex()
