"""Warehouse URLs: parsing, password resolution and masking.

Two forms:

- ``clickhouse://user:password@host:port[,host2:port2...]/database?option=value``
  a server reached through the native protocol; several hosts are tried in
  order (failover). Options: ``connect_timeout``, ``send_receive_timeout``,
  ``sync_request_timeout`` (seconds), ``compression`` (``lz4`` default,
  ``lz4hc``, ``zstd``, ``none``), ``secure`` and ``verify`` (``true``/``false``).
- ``chdb:///absolute/path``, ``chdb://relative/path`` or ``chdb://:memory:``:
  the embedded engine; option ``database``.

The password may also come from an environment variable or a file, so it
never has to sit in a config file. Whatever is shown (logs, errors, repr)
goes through `mask_url`, which hides the password of any URL, camera
source URLs included.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal
from urllib.parse import parse_qsl, quote, unquote

from camcount.warehouse.errors import WarehouseUrlError

DEFAULT_DATABASE = "camcount"
DEFAULT_PORT = 9000
DEFAULT_SECURE_PORT = 9440
MASK = "***"

_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_SERVER_OPTIONS = {
    "connect_timeout",
    "send_receive_timeout",
    "sync_request_timeout",
    "compression",
    "secure",
    "verify",
}
_CHDB_OPTIONS = {"database"}
_COMPRESSIONS = {"lz4", "lz4hc", "zstd", "none"}


def mask_url(url: str) -> str:
    """The URL with its password replaced by ``***``; other text unchanged.

    Works on any ``scheme://user:password@host...`` string (an RTSP camera
    source too). When the text is ambiguous it masks more, never less.
    """
    head, sep, rest = url.partition("://")
    if not sep:
        return url
    # The last @ anywhere: a password may hold unencoded ?, # or /.
    at = rest.rfind("@")
    if at < 0:
        return url
    userinfo = rest[:at]
    user, colon, _ = userinfo.partition(":")
    if not colon:
        return url
    return f"{head}://{user}:{MASK}{rest[at:]}"


@dataclass(frozen=True)
class HostPort:
    host: str
    port: int

    def __str__(self) -> str:
        return f"{self.host}:{self.port}"


@dataclass(frozen=True)
class WarehouseUrl:
    """A parsed warehouse URL. ``password`` never appears in repr or str."""

    scheme: Literal["clickhouse", "chdb"]
    database: str
    hosts: tuple[HostPort, ...] = ()
    user: str = "default"
    password: str | None = field(default=None, repr=False)
    path: str = ""
    options: Mapping[str, str] = field(default_factory=dict)

    @property
    def is_embedded(self) -> bool:
        return self.scheme == "chdb"

    @property
    def in_memory(self) -> bool:
        return self.is_embedded and self.path == ":memory:"

    def masked(self) -> str:
        """The URL as it may be shown: the password, if any, as ``***``."""
        query = "&".join(f"{k}={v}" for k, v in sorted(self.options.items()))
        suffix = f"?{query}" if query else ""
        if self.is_embedded:
            return f"chdb://{self.path}{suffix}"
        auth = quote(self.user, safe="")
        if self.password:
            auth += f":{MASK}"
        hosts = ",".join(str(h) for h in self.hosts)
        return f"clickhouse://{auth}@{hosts}/{self.database}{suffix}"

    def __str__(self) -> str:
        return self.masked()

    def with_password(self, password: str | None) -> WarehouseUrl:
        return WarehouseUrl(
            self.scheme, self.database, self.hosts, self.user, password, self.path, self.options
        )

    def option_float(self, name: str, default: float) -> float:
        raw = self.options.get(name)
        if raw is None:
            return default
        try:
            value = float(raw)
        except ValueError:
            raise WarehouseUrlError(
                self.masked(), f"{name} must be a number, got {raw!r}"
            ) from None
        if not value > 0:
            raise WarehouseUrlError(self.masked(), f"{name} must be above 0, got {raw!r}")
        return value

    def option_bool(self, name: str, default: bool) -> bool:
        raw = self.options.get(name)
        if raw is None:
            return default
        if raw.lower() in {"1", "true", "yes"}:
            return True
        if raw.lower() in {"0", "false", "no"}:
            return False
        raise WarehouseUrlError(self.masked(), f"{name} must be true or false, got {raw!r}")


def parse_url(url: str) -> WarehouseUrl:
    """Parse and validate; errors name the masked URL and the problem."""
    shown = mask_url(url)
    scheme, sep, rest = url.partition("://")
    if not sep:
        raise WarehouseUrlError(shown, "expected chdb://PATH or clickhouse://USER@HOST:PORT/DB")
    scheme = scheme.lower()
    rest, _, query = rest.partition("?")
    options = dict(parse_qsl(query, keep_blank_values=True))
    if scheme == "chdb":
        return _parse_chdb(shown, rest, options)
    if scheme == "clickhouse":
        return _parse_server(shown, rest, options)
    raise WarehouseUrlError(shown, f"unknown scheme {scheme!r}: use chdb:// or clickhouse://")


def _parse_chdb(shown: str, rest: str, options: dict[str, str]) -> WarehouseUrl:
    unknown = sorted(set(options) - _CHDB_OPTIONS)
    if unknown:
        raise WarehouseUrlError(
            shown, f"unknown option(s) {unknown}; chdb:// takes {_CHDB_OPTIONS}"
        )
    path = unquote(rest)
    if not path:
        raise WarehouseUrlError(shown, "chdb:// needs a path, e.g. chdb:///var/lib/camcount")
    database = options.pop("database", DEFAULT_DATABASE)
    _check_identifier(shown, database)
    return WarehouseUrl("chdb", database, path=path, options=options)


def _parse_server(shown: str, rest: str, options: dict[str, str]) -> WarehouseUrl:
    unknown = sorted(set(options) - _SERVER_OPTIONS)
    if unknown:
        raise WarehouseUrlError(
            shown, f"unknown option(s) {unknown}; known: {sorted(_SERVER_OPTIONS)}"
        )
    compression = options.get("compression", "lz4").lower()
    if compression not in _COMPRESSIONS:
        raise WarehouseUrlError(shown, f"compression must be one of {sorted(_COMPRESSIONS)}")
    at = rest.rfind("@")
    userinfo, hostpart = (rest[:at], rest[at + 1 :]) if at >= 0 else ("", rest)
    user, colon, password = userinfo.partition(":")
    hostlist, _, database = hostpart.partition("/")
    database = unquote(database.strip("/")) or DEFAULT_DATABASE
    _check_identifier(shown, database)
    secure = options.get("secure", "false").lower() in {"1", "true", "yes"}
    default_port = DEFAULT_SECURE_PORT if secure else DEFAULT_PORT
    hosts = tuple(_host_port(shown, h, default_port) for h in hostlist.split(",") if h.strip())
    if not hosts:
        raise WarehouseUrlError(shown, "no host given")
    return WarehouseUrl(
        "clickhouse",
        database,
        hosts=hosts,
        user=unquote(user) or "default",
        password=unquote(password) if colon else None,
        options=options,
    )


def _host_port(shown: str, text: str, default_port: int) -> HostPort:
    text = text.strip()
    if text.startswith("["):  # [IPv6]:port
        host, _, tail = text[1:].partition("]")
        port_text = tail.removeprefix(":")
    else:
        host, _, port_text = text.partition(":")
    if not host:
        raise WarehouseUrlError(shown, f"empty host in {text!r}")
    if not port_text:
        return HostPort(host, default_port)
    if not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise WarehouseUrlError(shown, f"port must be 1..65535, got {port_text!r}")
    return HostPort(host, int(port_text))


def _check_identifier(shown: str, database: str) -> None:
    if not _IDENTIFIER.match(database):
        raise WarehouseUrlError(
            shown, f"database name must match {_IDENTIFIER.pattern}, got {database!r}"
        )


def resolve_password(
    url: WarehouseUrl,
    password_env: str | None = None,
    password_file: str | None = None,
    environ: Mapping[str, str] | None = None,
) -> WarehouseUrl:
    """The URL with its password taken from exactly one place.

    The URL, an environment variable or a file may each carry it; naming
    two is refused rather than silently preferring one, so what runs is
    what the operator meant. A file's trailing newline is dropped.
    """
    env = os.environ if environ is None else environ
    sources = [
        name
        for name, given in (
            ("the URL", url.password is not None),
            ("password_env", password_env is not None),
            ("password_file", password_file is not None),
        )
        if given
    ]
    if len(sources) > 1:
        raise WarehouseUrlError(
            url.masked(), f"password given in {' and '.join(sources)}; keep one"
        )
    if url.is_embedded and sources:
        raise WarehouseUrlError(url.masked(), "chdb:// takes no password")
    if password_env is not None:
        if password_env not in env:
            raise WarehouseUrlError(
                url.masked(), f"password_env names {password_env!r}, which is not set"
            )
        return url.with_password(env[password_env])
    if password_file is not None:
        try:
            text = Path(password_file).read_text()
        except OSError as exc:
            raise WarehouseUrlError(
                url.masked(), f"cannot read password_file {password_file}: {exc.strerror}"
            ) from None
        return url.with_password(text.rstrip("\r\n"))
    return url


def redact(text: str, secret: str | None) -> str:
    """``text`` with every occurrence of ``secret`` masked (error messages
    from libraries may quote what they were given)."""
    if secret:
        text = text.replace(secret, MASK)
    return text
