"""Hostile paths and names, shared by the tests of every endpoint that takes one."""

from __future__ import annotations

# Paths as they appear in a URL (before the server's one percent-decoding). Each one, once
# decoded, breaks a rule of API.md section 1, and many aim at ../sentinel.json beside the store.
HOSTILE_URL_PATHS = [
    "../sentinel.json",
    "..%2fsentinel.json",
    "%2e%2e/sentinel.json",
    "%2e%2e%2fsentinel.json",
    "a/../../sentinel.json",
    "..%5csentinel.json",
    "..\\sentinel.json",
    "/sentinel.json",
    "%2fsentinel.json",
    "a//b.json",
    "./sentinel.json",
    "sentinel.json%00.png",
    "a%0ab.json",
    "a%0d%0ab.json",
    ".filedock/state/probe",
    "x/.filedock/y",
    "x" * 256,
    "/".join(["y" * 200] * 6),
]

# Client filenames of multipart parts: only the last segment counts, and it must pass section 1.
HOSTILE_FILENAMES = [
    "..",
    ".",
    "../..",
    "a/..",
    "x\x00y.txt",
    "x\ny.txt",
    ".filedock",
    "z" * 256,
    "",
]

SENTINEL = '{"secret": "sentinel"}'
