"""The sources a camera added through the API may have: one scenario a row."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pytest

from camcount.config import SourcesConfig, parse_config
from camcount.errors import ConfigError, RequestError
from camcount.http.sources import SourceRefused, camera_source_allowed, check_source

#: What names resolve to here: no network needed, and a name can be made
#: to point anywhere (as DNS can).
NAMES = {
    "cam.example.com": ["203.0.113.7"],
    "lobby.site.example": ["10.1.2.3"],
    "localhost": ["127.0.0.1", "::1"],
    "metadata.internal": ["169.254.169.254"],
    "split.example": ["10.1.2.4", "127.0.0.1"],
    "site.example.evil.com": ["198.51.100.1"],
}


def resolve(host: str) -> Sequence[str]:
    if host not in NAMES:
        raise OSError(f"no such host {host}")
    return NAMES[host]


DEFAULT = SourcesConfig()
NETWORKS = SourcesConfig(hosts=("10.0.0.0/8", "cam.example.com", "*.site.example"))
NAMES_ONLY = SourcesConfig(hosts=("cam.example.com",))


@pytest.mark.parametrize(
    ("source", "rules", "refusal"),
    [
        # the default: streams to any host but the server itself and link-local
        ("rtsp://cam.example.com/live", DEFAULT, None),
        ("rtsps://203.0.113.9:322/live", DEFAULT, None),
        ("http://10.1.2.3/video.mjpg", DEFAULT, None),
        ("https://user:pw@cam.example.com/x", DEFAULT, None),
        ("rtsp://127.0.0.1:8554/x", DEFAULT, "is the server itself or link-local"),
        ("http://localhost:8000/cameras", DEFAULT, "is the server itself or link-local"),
        ("http://[::1]/x", DEFAULT, "is the server itself or link-local"),
        ("http://[::ffff:127.0.0.1]/x", DEFAULT, "is the server itself or link-local"),
        ("http://0.0.0.0/x", DEFAULT, "is the server itself or link-local"),
        ("http://169.254.169.254/latest/meta-data", DEFAULT, "link-local"),
        ("http://metadata.internal/", DEFAULT, "link-local"),
        ("http://split.example/", DEFAULT, "(127.0.0.1)"),  # every address must pass
        ("rtsp://nosuchhost.invalid/x", DEFAULT, "host not found: nosuchhost.invalid"),
        ("file:///etc/passwd", DEFAULT, "scheme 'file' is not allowed"),
        ("FILE:///etc/passwd", DEFAULT, "scheme 'file' is not allowed"),
        ("udp://203.0.113.7:1234", DEFAULT, "scheme 'udp' is not allowed"),
        ("rtsp:///x", DEFAULT, "names no host"),
        ("http://[::1/x", DEFAULT, "not a valid URL"),
        ("/etc/passwd", DEFAULT, "local files are not allowed"),
        ("../../etc/passwd", DEFAULT, "local files are not allowed"),
        ("0", DEFAULT, "webcams are not allowed"),
        ("0", SourcesConfig(webcams=True), None),
        # hosts listed: names, subdomains, networks
        ("rtsp://10.200.0.1/x", NETWORKS, None),
        ("rtsp://cam.example.com/x", NETWORKS, None),
        ("rtsp://CAM.example.com./x", NETWORKS, None),
        ("rtsp://lobby.site.example/x", NETWORKS, None),
        ("rtsp://site.example.evil.com/x", NETWORKS, "not in an allowed network"),
        ("rtsp://203.0.113.9/x", NETWORKS, "not in an allowed network"),
        ("rtsp://split.example/x", NETWORKS, "(127.0.0.1) is not in an allowed network"),
        ("rtsp://127.0.0.1/x", SourcesConfig(hosts=("127.0.0.1",)), None),
        ("rtsp://10.1.2.3/x", NAMES_ONLY, "host '10.1.2.3' is not allowed"),
        ("rtsp://lobby.site.example/x", NAMES_ONLY, "is not allowed (api.sources.hosts)"),
    ],
)
def test_sources(source: str, rules: SourcesConfig, refusal: str | None) -> None:
    if refusal is None:
        check_source(source, rules, resolve)
    else:
        with pytest.raises(SourceRefused) as refused:
            check_source(source, rules, resolve)
        assert refusal in str(refused.value)


def test_local_files_only_below_a_listed_folder_with_links_resolved(tmp_path: Path) -> None:
    videos = tmp_path / "videos"
    videos.mkdir()
    (videos / "a.mp4").write_bytes(b"")
    (videos / "etc").symlink_to("/etc")
    rules = SourcesConfig(folders=(str(videos),))
    check_source(str(videos / "a.mp4"), rules, resolve)
    check_source(str(videos / "sub" / "later.mp4"), rules, resolve)  # may appear later
    for outside, why in [
        ("/etc/passwd", "is not below an allowed folder"),
        (str(videos / ".." / "secret.mp4"), "is not below an allowed folder"),
        (str(videos / "etc" / "passwd"), "is not below an allowed folder"),
        (str(tmp_path / "videos2" / "a.mp4"), "is not below an allowed folder"),
        ("videos/a.mp4", "must be an absolute path"),
    ]:
        with pytest.raises(SourceRefused) as refused:
            check_source(outside, rules, resolve)
        assert why in str(refused.value), outside


def test_the_api_refusal_is_a_422_naming_the_source_field() -> None:
    with pytest.raises(RequestError) as refused:
        camera_source_allowed("/etc/passwd", DEFAULT, resolve)
    err = refused.value
    assert (err.status, err.code) == (422, "source_not_allowed")
    assert err.detail == [
        {
            "loc": ["source"],
            "msg": "local files are not allowed (api.sources.folders is empty)",
            "type": "source_not_allowed",
        }
    ]


@pytest.mark.parametrize(
    ("sources", "message"),
    [
        ("{schemes: [rtsp, file]}", "file: is not a stream scheme"),
        ("{hosts: ['10.0.0.0/33']}", "is not a host name, address or network"),
        ("{hosts: ['cam.example.com/24']}", "is not a host name, address or network"),
        ("{hosts: ['user@cam']}", "is not a host name, address or network"),
        ("{folders: [videos]}", "folders must be absolute paths"),
    ],
)
def test_rules_that_cannot_work_are_config_errors(sources: str, message: str) -> None:
    with pytest.raises(ConfigError, match=r"api\.sources") as bad:
        parse_config(f"api:\n  sources: {sources}\n", "cfg.yaml")
    assert message in str(bad.value) and "line 2" in str(bad.value)


def test_hosts_accept_names_addresses_and_networks() -> None:
    rules = parse_config(
        "api:\n  sources: {hosts: [Cam.Example.com, '*.site.example', 10.0.0.0/8, '::1', "
        "'fd00::/8'], schemes: [RTSP]}\n"
    ).api.sources
    assert rules.hosts == ("cam.example.com", "*.site.example", "10.0.0.0/8", "::1", "fd00::/8")
    assert rules.schemes == ("rtsp",)
