"""Exceptions raised by the warehouse layer.

They split by what a caller should do next: fix the configuration
(`WarehouseUrlError`, `WarehouseAuthError`), wait and retry
(`WarehouseUnavailable`), set the data aside as a dead letter
(`WarehouseRejected`), or use another way in (`WarehouseLocked`). Every
message that names a URL names it masked, never with its password.

Each class keeps its constructor arguments and rebuilds itself from them
when pickled, so an error raised inside a Ray actor reaches the caller as
the same type with the same fields.
"""

from __future__ import annotations

from typing import Any

from camcount.errors import CamcountError


class WarehouseError(CamcountError):
    """Base class of everything the warehouse layer raises on purpose."""

    def __init__(self, *args: Any) -> None:
        self._init_args = args
        super().__init__(self._message(*args))

    def _message(self, *args: Any) -> str:
        return " ".join(str(a) for a in args)

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), self._init_args)


class WarehouseUrlError(WarehouseError, ValueError):
    """A warehouse URL or password setting cannot be used."""

    def __init__(self, url: str, reason: str) -> None:
        self.url = url
        self.reason = reason
        super().__init__(url, reason)

    def _message(self, *args: Any) -> str:
        url, reason = args
        return f"warehouse URL {url!r}: {reason}"


class WarehouseAuthError(WarehouseError):
    """The server refused the user or password: a configuration problem,
    never retried."""

    def __init__(self, url: str, detail: str) -> None:
        self.url = url
        self.detail = detail
        super().__init__(url, detail)

    def _message(self, *args: Any) -> str:
        url, detail = args
        return f"{url}: authentication failed: {detail}"


class WarehouseUnavailable(WarehouseError):
    """The warehouse cannot be reached or cannot take writes right now;
    the same request may succeed later."""

    def __init__(self, url: str, detail: str) -> None:
        self.url = url
        self.detail = detail
        super().__init__(url, detail)

    def _message(self, *args: Any) -> str:
        url, detail = args
        return f"{url}: warehouse unavailable: {detail}"


class WarehouseRejected(WarehouseError):
    """The warehouse refused the rows themselves; retrying the same rows
    gives the same answer. ``message`` is the server's (or the encoder's)
    own text, kept for the dead letter."""

    def __init__(self, table: str, message: str, code: int = 0) -> None:
        self.table = table
        self.message = message
        self.code = code
        super().__init__(table, message, code)

    def _message(self, *args: Any) -> str:
        table, message, code = args
        return f"rows refused by table {table} (code {code}): {message}"


class WarehouseLocked(WarehouseError):
    """An embedded (chDB) database is held elsewhere: by another process,
    or this process already has another chDB path open."""

    def __init__(self, path: str, holder: str, advice: str) -> None:
        self.path = path
        self.holder = holder
        self.advice = advice
        super().__init__(path, holder, advice)

    def _message(self, *args: Any) -> str:
        path, holder, advice = args
        return f"the chDB warehouse at {path} is in use by {holder}. {advice}"


class WarehouseSchemaError(WarehouseError):
    """The schema cannot be created or migrated on this server."""


class QueryError(WarehouseError, ValueError):
    """A named query or its parameters are invalid, or the query failed."""
