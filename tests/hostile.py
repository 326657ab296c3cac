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

# More of the same, for the corpus of tests/test_hostile_corpus.py (kept apart so that the
# tests above that start a server per path stay quick).
MORE_HOSTILE_URL_PATHS = [
    # more encodings of '..' and of separators
    ".%2e/sentinel.json",
    "%2e./sentinel.json",
    "%2E%2E%2Fsentinel.json",
    "a/%2e%2e/%2e%2e/sentinel.json",
    "%5c..%5csentinel.json",
    "a%5c..%5c..%5csentinel.json",
    "..%5c..%5csentinel.json",
    # control characters: C0, DEL and C1 (U+0085 NEL as UTF-8)
    "a%01b.json",
    "a%09b.json",
    "a%1fb.json",
    "a%7fb.json",
    "a%c2%85b.json",
    # too long: a 256-byte segment of 2-byte characters, a path over 1024 bytes
    "%c3%a9" * 128,
    "z/" * 512 + "z",
    # reserved names
    ".filedock",
    ".filedock/state/presign-key",
    ".filedockx/y.json",
    "a/.filedock-tmp",
]

# Paths that are not valid UTF-8 once decoded: overlong encodings of '.' and '/' (%c0%ae,
# %c0%af, %e0%80%ae) and stray bytes. Only a raw request line (or a raw PATH_INFO) carries
# them: HTTP clients and Werkzeug's test client replace the bad bytes before the app sees them.
INVALID_UTF8_URL_PATHS = [
    "%c0%ae%c0%ae/sentinel.json",
    "..%c0%afsentinel.json",
    "%c0%ae%c0%ae%c0%afsentinel.json",
    "%e0%80%ae%e0%80%ae/sentinel.json",
    "bad%ffname.json",
    "%fe%ff.json",
]

# Paths that break no rule once decoded exactly once: a '%' left after that decoding is an
# ordinary character, so each is stored literally inside the store (URL form -> stored key).
LITERAL_URL_PATHS = {
    "%252e%252e%252fsentinel.json": "%2e%2e%2fsentinel.json",
    "..%252fsentinel.json": "..%2fsentinel.json",
    "%252e%252e/x.json": "%2e%2e/x.json",
    "..%255csentinel.json": "..%5csentinel.json",
    "%25c0%25ae%25c0%25ae.json": "%c0%ae%c0%ae.json",
    "%2500.json": "%00.json",
}

# One name in NFC and NFD: two distinct paths, neither normalised into the other.
NFC_NAME = "caf\u00e9.json"
NFD_NAME = "cafe\u0301.json"

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
    "x\x7fy.txt",
    "x\x01y.txt",
    "\u00e9" * 128,
    ".filedockx",
]

# Client filenames whose last segment is a fine name: stored under it, inside the store.
REDUCED_FILENAMES = {
    "../sentinel.json": "sentinel.json",
    "..\\sentinel.json": "sentinel.json",
    "a/../../sentinel.json": "sentinel.json",
    "C:\\x\\..\\..\\sentinel.json": "sentinel.json",
    "/etc/../sentinel.json": "sentinel.json",
    "%2e%2e%2fsentinel.json": "%2e%2e%2fsentinel.json",
}

SENTINEL = '{"secret": "sentinel"}'
