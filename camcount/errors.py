"""Exceptions raised by the core.

Each carries the offending value so a caller can report it without
re-deriving it; none of them is raised with ``assert``.
"""

from __future__ import annotations

from collections.abc import Sequence


class CamcountError(Exception):
    """Base class: everything the core raises on purpose derives from it."""


class ConfigError(CamcountError):
    """A configuration file or value is invalid.

    ``problems`` holds one human-readable line per invalid field, each naming
    the field path and, when the value came from a file, the file and line.
    One problem is one line of message; several are listed a line each.
    """

    def __init__(self, source: str, problems: list[str]) -> None:
        self.source = source
        self.problems = problems
        sep = " " if len(problems) == 1 else "\n  "
        super().__init__(f"invalid configuration in {source}:{sep}" + "\n  ".join(problems))


class GeometryError(CamcountError, ValueError):
    """A line or polygon cannot be used (degenerate, too few points, outside
    the frame). ``loc`` says where in a camera's config, when known, so the
    REST API names the field as it does for any invalid value."""

    def __init__(self, message: str, loc: tuple[str | int, ...] = ()) -> None:
        super().__init__(message)
        self.loc = loc


class SlicingError(CamcountError, ValueError):
    """A slicing setting cannot cut a frame into tiles (a tile of no size,
    an overlap of a whole tile or more, a match threshold outside (0, 1])."""


class CameraNotHosted(CamcountError, KeyError):
    """A camera process was asked about a camera it does not hold (it was
    removed, or moved to another process): the caller looks the camera's
    process up again."""

    def __init__(self, camera_id: str) -> None:
        super().__init__(camera_id)
        self.camera_id = camera_id


class SourceError(CamcountError):
    """A video source cannot be opened or read."""

    def __init__(self, source: str, reason: str) -> None:
        self.source = source
        self.reason = reason
        super().__init__(f"{source}: {reason}")


class EmptyOutputError(SourceError):
    """An output would hold nothing (a video without frames): it is refused
    rather than left as a file that no player opens."""


class DetectorError(CamcountError):
    """A detector cannot be built or run (unknown model, missing weights...)."""


class StateError(CamcountError):
    """A snapshot does not match the object asked to restore it."""


class WatermarkRegression(CamcountError):
    """A watermark moved backwards: a bug upstream, never silently ignored."""

    def __init__(self, previous: float, proposed: float) -> None:
        self.previous = previous
        self.proposed = proposed
        super().__init__(f"watermark moved backwards: {previous} -> {proposed}")


class RequestError(CamcountError):
    """An API request or live message is malformed or refers to nothing.

    ``code`` is the machine-readable error (``bad_request``, ``not_found``...),
    ``status`` the HTTP status a REST route answers with, ``detail`` optional
    structured context (the invalid fields, say).
    """

    def __init__(self, code: str, message: str, status: int = 400, detail: object = None) -> None:
        self.code = code
        self.message = message
        self.status = status
        self.detail = detail
        super().__init__(f"{code}: {message}")


class SignatureError(CamcountError):
    """A webhook post's signature header is missing, malformed, does not
    match its body, or is too old: the receiver must not trust the post."""


# Query parameters of a storage URI that hold credentials (pyarrow's S3 and
# GCS URIs accept them); their values never reach a message.
_SECRET_QUERY_KEYS = frozenset(
    {"access_key", "secret_key", "session_token", "access_token", "password", "token"}
)


def redact_uri(uri: str) -> str:
    """The URI with its credentials masked, for messages and logs.

    A storage URI may carry ``user:pass@`` or ``access_key``/``secret_key``
    query parameters; error messages end up in logs, dashboards and bug
    reports, so they show ``***`` in their place. Plain paths pass through.
    """
    from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

    if "://" not in uri:
        return uri
    try:
        parts = urlsplit(uri)
    except ValueError:  # unparseable: show only the scheme
        return uri.split("://", 1)[0] + "://***"
    netloc = parts.netloc
    if "@" in netloc:
        netloc = "***@" + netloc.rsplit("@", 1)[1]
    query = parts.query
    if query:
        pairs = parse_qsl(query, keep_blank_values=True)
        if any(k.lower() in _SECRET_QUERY_KEYS for k, _ in pairs):
            masked = [(k, "***" if k.lower() in _SECRET_QUERY_KEYS else v) for k, v in pairs]
            query = urlencode(masked, safe="/:*")
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


class CheckpointStoreError(CamcountError):
    """A checkpoint object cannot be written, read or listed, or holds what
    this version cannot use (another format version, a truncated file).

    ``uri`` names the object (or the root) with credentials masked, so the
    error can be logged as is; ``detail`` says what went wrong there.
    """

    def __init__(self, uri: str, detail: str) -> None:
        self.uri = redact_uri(uri)
        self.detail = detail
        super().__init__(f"checkpoint store {self.uri}: {detail}")


class AlertRulesRefused(CamcountError, ValueError):
    """Alert rules valid alone that cannot run on this pipeline (a window
    size it does not count, a group it does not have): ``problems`` holds
    (position of the rule in the list, why), one per problem."""

    def __init__(self, problems: Sequence[tuple[int, str]]) -> None:
        self.problems = list(problems)
        super().__init__("; ".join(msg for _, msg in self.problems))

    def __reduce__(self) -> tuple[type[AlertRulesRefused], tuple[list[tuple[int, str]]]]:
        # Raised in the controller, caught in an API replica: it crosses
        # processes pickled, and must arrive with its problems.
        return (type(self), (self.problems,))
