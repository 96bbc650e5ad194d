"""Warehouse URLs: parsing, password sources, masking."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from camcount.warehouse.errors import WarehouseUrlError
from camcount.warehouse.urls import (
    DEFAULT_DATABASE,
    HostPort,
    mask_url,
    parse_url,
    redact,
    resolve_password,
)


@pytest.mark.parametrize(
    ("url", "hosts", "user", "password", "database"),
    [
        # the documented form
        ("clickhouse://u:p@db1:9000/analytics", (("db1", 9000),), "u", "p", "analytics"),
        # several hosts: failover order kept
        ("clickhouse://u:p@a:9000,b:9001/x", (("a", 9000), ("b", 9001)), "u", "p", "x"),
        # no port, no database, no user
        ("clickhouse://db1", (("db1", 9000),), "default", None, DEFAULT_DATABASE),
        # percent-encoded password with URL-special characters
        ("clickhouse://u:p%40s%3As%2F@h:1/d", (("h", 1),), "u", "p@s:s/", "d"),
        # an unencoded @ inside the password: the last @ ends the userinfo
        ("clickhouse://u:p@ss@h:2/d", (("h", 2),), "u", "p@ss", "d"),
        # IPv6 literal
        ("clickhouse://u@[::1]:9000/d", (("::1", 9000),), "u", None, "d"),
        # TLS default port
        ("clickhouse://h/d?secure=true", (("h", 9440),), "default", None, "d"),
    ],
)
def test_server_urls(
    url: str, hosts: tuple, user: str, password: str | None, database: str
) -> None:
    u = parse_url(url)
    assert u.scheme == "clickhouse"
    assert u.hosts == tuple(HostPort(h, p) for h, p in hosts)
    assert (u.user, u.password, u.database) == (user, password, database)


@pytest.mark.parametrize(
    ("url", "path", "database"),
    [
        ("chdb:///var/lib/camcount", "/var/lib/camcount", DEFAULT_DATABASE),
        ("chdb://./var/chdb", "./var/chdb", DEFAULT_DATABASE),  # the config default
        ("chdb://rel/dir?database=site_a", "rel/dir", "site_a"),
        ("chdb://:memory:", ":memory:", DEFAULT_DATABASE),
    ],
)
def test_embedded_urls(url: str, path: str, database: str) -> None:
    u = parse_url(url)
    assert (u.scheme, u.path, u.database, u.is_embedded) == ("chdb", path, database, True)


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("postgres://h/d", "unknown scheme"),
        ("h:9000", "expected chdb://"),
        ("clickhouse://u:secret@h:99999/d", "port must be"),
        ("clickhouse://u:secret@h:abc/d", "port must be"),
        ("clickhouse://u:secret@/d", "no host"),
        ("clickhouse://u:secret@h/d?timeout=3", "unknown option"),
        ("clickhouse://u:secret@h/d?compression=gzip", "compression"),
        ("clickhouse://u:secret@h/bad-name", "database name"),
        ("chdb://", "needs a path"),
        ("chdb:///x?user=u", "unknown option"),
    ],
)
def test_bad_urls_are_refused_with_the_password_masked(url: str, message: str) -> None:
    with pytest.raises(WarehouseUrlError, match=message) as info:
        parse_url(url)
    assert "secret" not in str(info.value)


def test_option_values_are_checked() -> None:
    u = parse_url("clickhouse://h/d?connect_timeout=0&secure=maybe")
    with pytest.raises(WarehouseUrlError, match="above 0"):
        u.option_float("connect_timeout", 3.0)
    with pytest.raises(WarehouseUrlError, match="true or false"):
        u.option_bool("secure", False)
    assert (
        parse_url("clickhouse://h/d?connect_timeout=1.5").option_float("connect_timeout", 3) == 1.5
    )


@pytest.mark.parametrize(
    ("text", "masked"),
    [
        ("clickhouse://u:secret@h:9000/d", "clickhouse://u:***@h:9000/d"),
        ("rtsp://admin:cam-pass@10.0.0.5/stream1", "rtsp://admin:***@10.0.0.5/stream1"),
        ("clickhouse://u@h/d", "clickhouse://u@h/d"),  # no password: unchanged
        ("/videos/a.mp4", "/videos/a.mp4"),  # not a URL
        ("http://h/x?a=b@c", "http://h/x?a=b@c"),  # @ in the query, no password before it
        ("clickhouse://u:pa?ss#@h/d", "clickhouse://u:***@h/d"),  # unencoded ? and # in it
    ],
)
def test_mask_url(text: str, masked: str) -> None:
    assert mask_url(text) == masked


@given(
    user=st.text(st.characters(blacklist_characters=":@/?#"), min_size=1, max_size=8),
    password=st.text(min_size=4, max_size=16).filter(lambda p: "@" not in p and p.strip()),
    host=st.sampled_from(["h", "db.example.com", "10.0.0.1"]),
)
def test_masking_never_shows_the_password(user: str, password: str, host: str) -> None:
    url = f"clickhouse://{user}:{password}@{host}:9000/d"
    assert mask_url(url) == f"clickhouse://{user}:***@{host}:9000/d"


def test_parsed_url_never_shows_its_password() -> None:
    u = parse_url("clickhouse://u:topsecret@h:9000/d")
    for shown in (str(u), repr(u), u.masked()):
        assert "topsecret" not in shown
    assert u.masked() == "clickhouse://u:***@h:9000/d"


def test_password_from_env_or_file(tmp_path: Path) -> None:
    base = parse_url("clickhouse://u@h/d")
    assert resolve_password(base, password_env="PW", environ={"PW": "from-env"}).password == (
        "from-env"
    )
    f = tmp_path / "pw"
    f.write_text("from-file\n")
    assert resolve_password(base, password_file=str(f)).password == "from-file"
    assert resolve_password(base).password is None


@pytest.mark.parametrize(
    ("url", "env", "file", "message"),
    [
        ("clickhouse://u:p@h/d", "PW", None, "the URL and password_env"),
        ("clickhouse://u@h/d", "PW", "f", "password_env and password_file"),
        ("clickhouse://u@h/d", "MISSING", None, "not set"),
        ("clickhouse://u@h/d", None, "/nonexistent/pw", "cannot read password_file"),
        ("chdb:///x", "PW", None, "takes no password"),
    ],
)
def test_password_sources_conflicts(
    url: str, env: str | None, file: str | None, message: str
) -> None:
    with pytest.raises(WarehouseUrlError, match=message):
        resolve_password(parse_url(url), env, file, environ={"PW": "x"})


def test_redact() -> None:
    assert redact("login s3cr3t failed for s3cr3t", "s3cr3t") == "login *** failed for ***"
    assert redact("nothing", None) == "nothing"
