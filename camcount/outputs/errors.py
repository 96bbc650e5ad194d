"""What the outputs raise on purpose."""

from __future__ import annotations

from camcount.errors import CamcountError, redact_uri


class OutputConfigError(CamcountError, ValueError):
    """An ``outputs:`` entry names a type no output registers."""


class ArchiveError(CamcountError):
    """The archive cannot be opened, written or read. ``uri`` is masked."""

    def __init__(self, uri: str, detail: str) -> None:
        self.uri = redact_uri(uri)
        self.detail = detail
        super().__init__(f"archive {self.uri}: {detail}")
