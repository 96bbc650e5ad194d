"""Exceptions raised by the core.

Each carries the offending value so a caller can report it without
re-deriving it; none of them is raised with ``assert``.
"""

from __future__ import annotations


class CamcountError(Exception):
    """Base class: everything the core raises on purpose derives from it."""


class ConfigError(CamcountError):
    """A configuration file or value is invalid.

    ``problems`` holds one human-readable line per invalid field, each naming
    the field path and, when the value came from a file, the file and line.
    """

    def __init__(self, source: str, problems: list[str]) -> None:
        self.source = source
        self.problems = problems
        super().__init__(f"invalid configuration in {source}:\n  " + "\n  ".join(problems))


class GeometryError(CamcountError, ValueError):
    """A line or polygon cannot be used (degenerate, too few points...)."""


class SourceError(CamcountError):
    """A video source cannot be opened or read."""

    def __init__(self, source: str, reason: str) -> None:
        self.source = source
        self.reason = reason
        super().__init__(f"{source}: {reason}")


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
