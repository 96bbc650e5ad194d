"""``GET /alerts`` and ``GET /forecasts`` on a real FastAPI app over a real
embedded warehouse, holding the alerts and forecasts the core makes from
counted window rows."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
from fastapi import FastAPI
from starlette.testclient import TestClient

from camcount.alerts.engine import AlertEngine
from camcount.alerts.rules import FlowRule
from camcount.errors import RequestError
from camcount.events import Alert, Forecast, WindowRow, from_arrow, to_arrow
from camcount.forecast.book import ForecastBook, ForecastSettings
from camcount.http.alerts import (
    alerts_router,
    checked_alerts_query,
    checked_forecasts_query,
)
from camcount.http.errors import exception_handlers
from camcount.http.rest import RestContext
from camcount.warehouse import Warehouse, connect, run_query
from tests.core.test_warehouse_chdb import T0, make_events

SIZES = (60, 900, 3600)
RULES = (
    # cam-a's first line always has more than 5 crossings in 15 minutes:
    # one alert that opens and stays open
    FlowRule(id="busy-door", camera="cam-a", counter="line-1", above=5, window_s=900),
    # people coming in through it: about 4.5 a window, so alerts open and
    # resolve over the three hours
    FlowRule(
        id="person-surge",
        camera="cam-a",
        counter="line-1",
        class_name="person",
        direction="in",
        above=5,
        window_s=900,
        severity="critical",
    ),
)


def watched(window_rows: pa.Table) -> dict[str, pa.Table]:
    """Alerts and forecasts made from the window rows as a shard makes them:
    rows in the order their windows close, the watermark after each."""
    rows = from_arrow(WindowRow, window_rows)
    book = ForecastBook(ForecastSettings(window_sizes_s=(900,)))
    engine = AlertEngine(RULES)
    alerts: list[Alert] = []
    forecasts: list[Forecast] = []
    for end in sorted({r.window_end for r in rows}):
        closed = [r for r in rows if r.window_end == end]
        issued = book.observe(closed)
        engine.on_forecasts(issued)
        forecasts += issued
        engine.on_rows(closed)
        alerts += engine.advance(end)
    return {"alert": to_arrow(Alert, alerts), "forecast": to_arrow(Forecast, forecasts)}


class WarehouseHistory:
    """The history side of the controller port over a warehouse opened in
    this process (the API replica asks the sink actor the same queries);
    ``None`` stands for a pipeline without a warehouse."""

    def __init__(self, wh: Warehouse | None) -> None:
        self.wh = wh

    async def warehouse_rows(
        self, name: str, params: Mapping[str, object]
    ) -> list[dict[str, Any]] | None:
        if self.wh is None:
            return None
        rows: list[dict[str, Any]] = run_query(self.wh.backend, name, params).to_pylist()
        return rows


def client(wh: Warehouse | None) -> TestClient:
    app = FastAPI(exception_handlers=exception_handlers())
    app.state.rest = RestContext(
        controller=WarehouseHistory(wh),  # type: ignore[arg-type]
        window_sizes=SIZES,
        preview_fps=1.0,
        auth_configured=False,
    )
    app.include_router(alerts_router(SIZES))
    return TestClient(app)


@pytest.fixture(scope="module")
def watched_events(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Warehouse, Any]]:
    """A warehouse holding a flow rule's alerts and the forecasts of three
    hours of counts, written twice (a replay: the same ids)."""
    wh = connect(f"chdb://{tmp_path_factory.mktemp('alerts')}/chdb")
    made = watched(make_events()["window_row"])
    for _ in range(2):
        for kind, table in made.items():
            wh.insert(kind, table)
    try:
        yield wh, made
    finally:
        wh.close()


@pytest.fixture
def answers(
    watched_events: tuple[Warehouse, Any],
) -> tuple[TestClient, list[Alert], list[Forecast]]:
    wh, made = watched_events
    return client(wh), from_arrow(Alert, made["alert"]), from_arrow(Forecast, made["forecast"])


def test_open_alerts_are_those_whose_latest_change_is_firing(
    answers: tuple[TestClient, list[Alert], list[Forecast]],
) -> None:
    c, alerts, _ = answers
    latest: dict[int, Alert] = {}
    for a in sorted(alerts, key=lambda a: a.event_time):
        latest[a.alert_id] = a
    want_open = sorted(a.alert_id for a in latest.values() if a.state == "firing")
    assert want_open and len(want_open) < len(latest)  # some resolved, some still open

    body = c.get("/alerts").json()
    assert body["source"] == "warehouse"
    assert sorted(a["alert_id"] for a in body["open"]) == want_open
    firing = {a.alert_id: a for a in alerts if a.state == "firing"}
    for got in body["open"]:
        a = firing[got["alert_id"]]
        assert got["event_id"] == a.event_id and got["state"] == "firing"
        assert got["opened_at"] == pytest.approx(a.opened_at, abs=1e-3)
        assert (got["rule_id"], got["target"], got["threshold"]) == (
            a.rule_id,
            a.target,
            a.threshold,
        )
    # the changes, newest first, each once although written twice
    changes = body["changes"]
    assert [ch["event_id"] for ch in changes] == [
        a.event_id for a in sorted(alerts, key=lambda a: (a.event_time, a.event_id), reverse=True)
    ][: len(changes)]
    assert len(changes) == min(len(alerts), 100) and body["truncated"] == (len(alerts) > 100)


def test_alert_filters_narrow_the_answer(
    answers: tuple[TestClient, list[Alert], list[Forecast]],
) -> None:
    c, alerts, _ = answers
    cut = sorted(a.event_time for a in alerts)[len(alerts) // 2]
    since = c.get("/alerts", params={"since": int(cut), "limit": 1000}).json()["changes"]
    assert {ch["event_id"] for ch in since} == {
        a.event_id for a in alerts if a.event_time >= int(cut)
    }
    one = c.get("/alerts", params={"limit": 1}).json()
    assert len(one["changes"]) == 1 and one["truncated"] is (len(alerts) > 1)
    # both rules watch cam-a: cam-b has none
    everything = c.get("/alerts", params={"limit": 1000}).json()
    assert c.get("/alerts", params={"camera": "cam-a", "limit": 1000}).json() == everything
    body = c.get("/alerts", params={"camera": "cam-b"}).json()
    assert body["open"] == [] and body["changes"] == []
    critical = c.get("/alerts", params={"severity": "critical", "limit": 1000}).json()
    assert {a["rule_id"] for a in critical["open"] + critical["changes"]} == {"person-surge"}
    assert {ch["event_id"] for ch in critical["changes"]} == {
        a.event_id for a in alerts if a.rule_id == "person-surge"
    }


def test_forecasts_are_each_keys_latest_issue_with_its_band(
    answers: tuple[TestClient, list[Alert], list[Forecast]],
) -> None:
    c, _, forecasts = answers
    latest: dict[tuple[str, ...], float] = {}
    for f in forecasts:
        key = (f.camera_id, f.counter_id, f.class_name, f.direction)
        latest[key] = max(latest.get(key, f.issued_for), f.issued_for)
    body = c.get("/forecasts", params={"camera": "cam-a", "window_size_s": 900}).json()
    series = {
        (s["camera_id"], s["counter_id"], s["class_name"], s["direction"]): s
        for s in body["series"]
    }
    assert set(series) == {k for k in latest if k[0] == "cam-a"}
    for key, s in series.items():
        assert s["issued_for"] == latest[key] and s["window_size_s"] == 900
        want = sorted(
            (f.window_start, f.value, f.lower, f.upper)
            for f in forecasts
            if (f.camera_id, f.counter_id, f.class_name, f.direction) == key
            and f.issued_for == latest[key]
        )
        got = [(p["window_start"], p["value"], p["lower"], p["upper"]) for p in s["points"]]
        assert got == want  # Float64 keeps every bit
        assert all(p["lower"] <= p["value"] <= p["upper"] for p in s["points"])
        assert all(p["window_end"] == p["window_start"] + 900 for p in s["points"])
    line2 = c.get("/forecasts", params={"camera": "cam-a", "counter": "line-2"}).json()["series"]
    assert line2 and {s["counter_id"] for s in line2} == {"line-2"}
    assert c.get("/forecasts", params={"group": "north"}).json()["series"] == []
    assert c.get("/forecasts", params={"window_size_s": 60}).json()["series"] == []
    assert min(p["window_start"] for s in series.values() for p in s["points"]) > T0


@pytest.mark.parametrize(
    ("path", "params", "field"),
    [
        ("/alerts", {"severity": "urgent"}, "severity"),  # not a severity
        ("/alerts", {"since": "yesterday"}, "since"),  # neither epoch nor ISO 8601
        ("/alerts", {"since": "-5"}, "since"),
        ("/alerts", {"limit": "0"}, "limit"),
        ("/alerts", {"limit": "many"}, "limit"),  # not a number: FastAPI's own check
        ("/alerts", {"camera": "a b"}, "camera"),
        ("/forecasts", {"window_size_s": "30"}, "window_size_s"),  # not a counted size
        ("/forecasts", {"window_size_s": "x"}, "window_size_s"),
        ("/forecasts", {"camera": "a", "group": "b"}, "group"),  # one or the other
        ("/forecasts", {"group": "a/b"}, "group"),
        ("/forecasts", {"counter": "a b"}, "counter"),
    ],
)
def test_a_bad_parameter_is_a_422_naming_it(
    path: str, params: dict[str, str], field: str, tmp_path: Path
) -> None:
    r = client(None).get(path, params=params)
    assert r.status_code == 422, r.text
    assert r.json()["error"] == "bad_parameter" and field in r.json()["message"]


def test_without_a_warehouse_the_answer_says_so() -> None:
    c = client(None)
    for path in ("/alerts", "/forecasts"):
        r = c.get(path)
        assert r.status_code == 404 and r.json()["error"] == "no_warehouse"


def test_typed_values_are_checked_once_where_they_enter() -> None:
    q = checked_alerts_query(camera="group:north", since="2026-01-01T00:00:00", limit=5)
    assert (q.camera_id, q.since, q.limit, q.severity) == ("group:north", T0, 5, "")
    f = checked_forecasts_query(SIZES, group="north", window_size_s=900)
    assert (f.camera_id, f.counter_id, f.window_size_s) == ("group:north", "", 900)
    with pytest.raises(RequestError, match="window_size_s"):
        checked_forecasts_query(SIZES, window_size_s=0)
