"""API.md section 1: which paths are accepted."""

from __future__ import annotations

import pytest

from filedock.storage import InvalidKey, check_key

REJECTED = [
    "",
    "/etc/passwd",
    "a//b",
    "a/",
    ".",
    "..",
    "../x",
    "a/../b",
    "a/./b",
    "a\\b",
    "..\\x",
    "a\x00b",
    "a\nb",
    "a\x7fb",
    ".filedock",
    ".filedock-x/y",
    "a/.filedock/b",
    "x" * 256,
    "/".join(["abcdefgh"] * 120),  # 1079 bytes
    "a\udcff",  # not encodable as UTF-8
]

ACCEPTED = [
    "labels.json",
    "a/b/c.txt",
    "%2e%2e",  # a '%' left after the one decoding is an ordinary character
    "...",
    ".hidden",
    "caf\u00e9",
    "cafe\u0301",
    "x" * 255,
    "/".join(["abcdefg"] * 128)[:1024],
    "sp ace",
]


@pytest.mark.parametrize("path", REJECTED)
def test_rejected(path: str) -> None:
    with pytest.raises(InvalidKey):
        check_key(path)


@pytest.mark.parametrize("path", ACCEPTED)
def test_accepted(path: str) -> None:
    assert check_key(path) == path
