"""The error handlers both HTTP apps install, on a real FastAPI app."""

from __future__ import annotations

import logging
from typing import Annotated

import pytest
from fastapi import FastAPI, Query
from starlette.testclient import TestClient

from camcount.errors import RequestError
from camcount.http.errors import exception_handlers


def app() -> FastAPI:
    api = FastAPI(exception_handlers=exception_handlers())

    @api.get("/refuse")
    async def refuse(status: int, wait_s: float | None = None) -> None:
        detail = {"retry_after_s": wait_s} if wait_s is not None else None
        raise RequestError("some_code", "refused", status, detail)

    @api.get("/typed")
    async def typed(limit: Annotated[int, Query(ge=1, le=10)]) -> dict[str, int]:
        return {"limit": limit}

    @api.get("/broken")
    async def broken() -> None:
        raise RuntimeError("a bug")

    return api


@pytest.mark.parametrize(
    ("params", "status", "retry_after"),
    [
        ({"status": 422}, 422, None),  # a plain refusal: no Retry-After
        ({"status": 404}, 404, None),
        ({"status": 503}, 503, "2"),  # the pipeline unreachable: come back soon
        ({"status": 429, "wait_s": 2.2}, 429, "3"),  # a limit says how long, rounded up
        ({"status": 429, "wait_s": 0.01}, 429, "1"),  # never 0
    ],
)
def test_a_refusal_is_the_error_body_with_retry_after_where_it_passes(
    params: dict[str, float], status: int, retry_after: str | None
) -> None:
    with TestClient(app()) as c:
        r = c.get("/refuse", params=params)
    assert r.status_code == status
    assert r.json()["error"] == "some_code" and r.json()["message"] == "refused"
    assert r.headers.get("retry-after") == retry_after


def test_a_declared_parameter_of_the_wrong_type_is_a_422_naming_it() -> None:
    with TestClient(app()) as c:
        assert c.get("/typed", params={"limit": 3}).json() == {"limit": 3}
        for bad in ("x", "0", "11", ""):
            r = c.get("/typed", params={"limit": bad})
            assert r.status_code == 422, bad
            body = r.json()
            assert body["error"] == "bad_parameter" and "limit" in body["message"]
            assert body["detail"][0]["loc"] == ["query", "limit"]


def test_unknown_routes_and_methods_keep_the_error_body() -> None:
    with TestClient(app()) as c:
        assert c.get("/nowhere").json()["error"] == "not_found"
        r = c.post("/typed")
        assert r.status_code == 405 and r.json()["error"] == "method_not_allowed"


def test_an_unexpected_error_is_a_500_with_a_reference_found_in_the_log(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with (
        caplog.at_level(logging.ERROR, "camcount.http"),
        TestClient(app(), raise_server_exceptions=False) as c,
    ):
        r = c.get("/broken")
    assert r.status_code == 500 and r.json()["error"] == "internal_error"
    reference = r.json()["detail"]["reference"]
    assert "a bug" not in r.text  # the cause stays in the log
    logged = [rec for rec in caplog.records if reference in rec.getMessage()]
    assert logged and logged[0].exc_info is not None
