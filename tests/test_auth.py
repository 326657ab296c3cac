"""auth.py's rules, without a request: credentials, scopes, prefixes, signatures."""

from __future__ import annotations

import base64
import hashlib

import pytest

from filedock import auth
from filedock.config import ConfigError, Token


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def test_new_tokens_are_256_bit_urlsafe_and_distinct() -> None:
    tokens = {auth.new_token() for _ in range(50)}
    assert len(tokens) == 50
    for token in tokens:
        assert len(base64.urlsafe_b64decode(token + "=")) == 32
        assert auth.hash_token(token) == hashlib.sha256(token.encode()).hexdigest()


@pytest.mark.parametrize(
    ("header", "token"),
    [
        ("Bearer abc", "abc"),
        ("bearer   abc  ", "abc"),
        (basic("", "abc"), "abc"),
        (basic("someone", "abc"), "abc"),
        (basic("abc", ""), "abc"),
        (basic("", "a:b"), "a:b"),
    ],
)
def test_credentials(header: str, token: str) -> None:
    assert auth.credential_from_header(header) == token


def test_no_header_is_no_credentials() -> None:
    assert auth.credential_from_header(None) is None


@pytest.mark.parametrize(
    "header",
    [
        "",
        "Bearer",
        "Bearer ",
        "Token abc",
        "Basic",
        "Basic !!!!",
        "Basic " + base64.b64encode(b"no-colon").decode(),
        "Basic " + base64.b64encode(b":\xff\xfe").decode(),
        "Basic " + base64.b64encode(b":").decode(),
        "Basic \u00e9\u00e9",
        "Bearer " + "x" * 5000,
    ],
)
def test_malformed_credentials(header: str) -> None:
    with pytest.raises(auth.Unauthorized):
        auth.credential_from_header(header)


def test_find_token_by_hash() -> None:
    tokens = [
        Token(auth.hash_token("one"), ("read",), name="one"),
        Token(auth.hash_token("two").upper(), ("write",), name="two"),
    ]
    assert auth.find_token(tokens, "one") == tokens[0]
    assert auth.find_token(tokens, "two") == tokens[1]
    assert auth.find_token(tokens, "three") is None
    assert auth.find_token(tokens, auth.hash_token("one")) is None  # the hash is not a token


@pytest.mark.parametrize(
    ("prefix", "key", "covered"),
    [
        ("", "anything/at/all", True),
        ("team-a", "team-a", True),
        ("team-a", "team-a/x.json", True),
        ("team-a", "team-ab", False),
        ("team-a", "team-ab/x.json", False),
        ("team-a", "team", False),
        ("team-a/sub", "team-a/sub/x", True),
        ("team-a/sub", "team-a/x", False),
    ],
)
def test_prefix_covers(prefix: str, key: str, covered: bool) -> None:
    assert auth.covers(prefix, key) is covered


def test_scopes() -> None:
    reader = Token("0" * 64, ("read",))
    writer = Token("0" * 64, ("write",), prefix="drop")
    admin = Token("0" * 64, ("admin",))
    assert auth.permits(reader, "read", "a") and not auth.permits(reader, "write", "a")
    assert auth.permits(writer, "write", "drop/x") and not auth.permits(writer, "read", "drop/x")
    assert not auth.permits(writer, "write", None)  # a prefixed token never covers everything
    assert auth.permits(admin, "read", None) and auth.permits(admin, "write", "z")
    assert auth.scope_for_method("HEAD") == "read" and auth.scope_for_method("patch") == "write"


@pytest.mark.parametrize(
    "token",
    [
        Token("xyz", ("read",)),
        Token("0" * 64, ("reed",)),
        Token("0" * 64, ()),
        Token("0" * 64, ("read",), prefix="../x"),
        Token("0" * 64, ("read",), prefix="a//b"),
    ],
)
def test_bad_config_tokens_are_refused(token: Token) -> None:
    with pytest.raises(ConfigError):
        auth.validate_tokens([token])


def test_signatures() -> None:
    secret = b"k" * 32
    signature = auth.sign(secret, "PUT", "a/b.json", 2000)
    grant = auth.verify(secret, "PUT", "a/b.json", "2000", signature, now=1999)
    assert grant == auth.Grant("PUT", "a/b.json", 2000)
    changed = [
        (secret, "GET", "a/b.json", "2000", signature, 1999),
        (secret, "PUT", "a/b.jso", "2000", signature, 1999),
        (secret, "PUT", "a/b.json", "2001", signature, 1999),
        (secret, "PUT", "a/b.json", "02000", signature + "x", 1999),
        (b"j" * 32, "PUT", "a/b.json", "2000", signature, 1999),
        (secret, "PUT", "a/b.json", "2000", signature, 2000),  # expired
        (secret, "PUT", "a/b.json", "-1", signature, 0),
        (secret, "PUT", "a/b.json", "", signature, 0),
        (secret, "PUT", "a/b.json", "2000", "\u00e9", 0),
    ]
    for args in changed:
        with pytest.raises(auth.Forbidden):
            auth.verify(*args)


@pytest.mark.parametrize("value", [0, -5, 604801, 1.5, "60", True, None])
def test_bad_lifetimes(value: object) -> None:
    with pytest.raises(ValueError):
        auth.check_expires_in(value)


def test_rfc3339() -> None:
    assert auth.rfc3339(0) == "1970-01-01T00:00:00Z"
    assert auth.check_expires_in(604800) == 604800
