"""Which sources a camera added through the API may have (``api.sources``).

A camera's source is opened by the server, with the server's files and
network: unchecked, any token could have the server read ``/etc/passwd``
as a video, or reach an address only the server can (its own ports, a cloud
metadata service). Cameras in the config file are the operator's and are
not checked; this is applied where the API takes a new camera.

The rules, in order:

- a device index (``0``) needs ``webcams``;
- a URL needs its scheme in ``schemes`` (``file:`` is never one), and a host
  that ``hosts`` allows: a listed name (``*.example.com`` for subdomains) or
  an address inside a listed network; a name is resolved to check networks,
  and every address it resolves to must pass. With ``hosts`` empty, any
  host but loopback, link-local and unspecified addresses;
- a local path must be absolute and, links resolved, lie below one of
  ``folders``.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Callable, Sequence
from pathlib import Path
from urllib.parse import urlsplit

from camcount.config import SourcesConfig
from camcount.errors import RequestError

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
#: The addresses of a host name; raises ``OSError`` when it has none.
Resolver = Callable[[str], Sequence[str]]


class SourceRefused(ValueError):
    """The source is not allowed; the message says which rule refused it."""


def resolve_host(host: str) -> list[str]:
    return sorted({str(info[4][0]) for info in socket.getaddrinfo(host, None)})


def check_source(source: str, rules: SourcesConfig, resolve: Resolver = resolve_host) -> None:
    """Raises ``SourceRefused`` naming the rule a source breaks."""
    if source.isdigit():
        if not rules.webcams:
            raise SourceRefused("webcams are not allowed (api.sources.webcams)")
        return
    if "://" in source:
        _check_url(source, rules, resolve)
        return
    _check_path(source, rules)


def _check_url(source: str, rules: SourcesConfig, resolve: Resolver) -> None:
    try:
        parts = urlsplit(source)
        host = parts.hostname
    except ValueError:
        raise SourceRefused("not a valid URL") from None
    scheme = parts.scheme.lower()
    if scheme not in rules.schemes:
        allowed = ", ".join(rules.schemes) or "none"
        raise SourceRefused(f"scheme {scheme!r} is not allowed (api.sources.schemes: {allowed})")
    if not host:
        raise SourceRefused("the URL names no host")
    names = [h for h in rules.hosts if _network(h) is None]
    networks = [n for h in rules.hosts if (n := _network(h)) is not None]
    if any(_name_matches(host, name) for name in names):
        return
    if rules.hosts and not networks:
        raise SourceRefused(f"host {host!r} is not allowed (api.sources.hosts)")
    for address in _addresses(host, resolve):
        if networks and not any(address in net for net in networks):
            raise SourceRefused(
                f"host {host!r} ({address}) is not in an allowed network (api.sources.hosts)"
            )
        if not networks and _local(address):
            raise SourceRefused(
                f"host {host!r} ({address}) is the server itself or link-local; "
                "list it in api.sources.hosts to allow it"
            )


def _network(entry: str) -> ipaddress.IPv4Network | ipaddress.IPv6Network | None:
    try:
        return ipaddress.ip_network(entry, strict=False)
    except ValueError:
        return None


def _name_matches(host: str, name: str) -> bool:
    host = host.lower().rstrip(".")
    if name.startswith("*."):
        return host.endswith(name[1:])
    return host == name.rstrip(".")


def _addresses(host: str, resolve: Resolver) -> list[IPAddress]:
    try:
        return [ipaddress.ip_address(host)]
    except ValueError:
        pass
    try:
        found = [ipaddress.ip_address(a.split("%", 1)[0]) for a in resolve(host)]
    except (OSError, ValueError):
        found = []
    if not found:
        raise SourceRefused(f"host not found: {host}")
    return found


def _local(address: IPAddress) -> bool:
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return address.is_loopback or address.is_link_local or address.is_unspecified


def _check_path(source: str, rules: SourcesConfig) -> None:
    if not rules.folders:
        raise SourceRefused("local files are not allowed (api.sources.folders is empty)")
    path = Path(source)
    if not path.is_absolute():
        raise SourceRefused("a local file must be an absolute path")
    real = path.resolve()
    for folder in rules.folders:
        if real.is_relative_to(Path(folder).resolve()):
            return
    raise SourceRefused(
        f"{source} is not below an allowed folder (api.sources.folders: {', '.join(rules.folders)})"
    )


def camera_source_allowed(
    source: str, rules: SourcesConfig, resolve: Resolver = resolve_host
) -> None:
    """The API's check of a new camera: a refusal is a 422 naming ``source``."""
    try:
        check_source(source, rules, resolve)
    except SourceRefused as exc:
        detail = [{"loc": ["source"], "msg": str(exc), "type": "source_not_allowed"}]
        raise RequestError("source_not_allowed", f"source: {exc}", 422, detail) from None
