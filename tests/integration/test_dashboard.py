"""The dashboard in headless Chromium: a camera's preview and counts that
move, an open alert and a counter's forecast band.

Debian's Chromium driven by Playwright (``playwright install`` downloads a
browser and is never needed). The camera plays a synthetic scene at its own
speed, looped, so counts change while the page is open. The screenshot is
kept in var/test-artifacts/dashboard.png.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from camcount.alerts.rules import AlertsConfig, OccupancyRule
from camcount.config import (
    ApiConfig,
    AppConfig,
    DetectorConfig,
    ForecastConfig,
    StorageConfig,
    WarehouseConfig,
    load_config,
)
from camcount.scenes.synthetic import ZONE_ID, generate_scene, write_scene
from serve_app.app import start_pipeline
from tests.conftest import ROOT, require_binary
from tests.integration.conftest import free_port

pytestmark = pytest.mark.integration

CHROMIUM = "/usr/bin/chromium"
TOKEN = "dashboard-token-51c2"
SCREENSHOT = ROOT / "var" / "test-artifacts" / "dashboard.png"
#: Never five people in the scene's zone: it opens a second in and stays open.
QUIET_FLOOR = OccupancyRule(
    id="floor-under-5", camera="dash", zone=ZONE_ID, below=5, hold_s=1, severity="warning"
)
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
]


def until(check: Callable[[], bool], timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")
        time.sleep(0.25)


def sync_playwright() -> Any:
    try:
        from playwright.sync_api import sync_playwright as start
    except ImportError:
        if os.environ.get("CI") == "true":
            pytest.fail("the playwright package is missing: it is a dev dependency")
        pytest.skip("the playwright package is not installed")
    return start()


@pytest.fixture(scope="module")
def dashboard(ray_cluster: None, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    require_binary(CHROMIUM, "Chromium (apt-get install chromium)")
    root = tmp_path_factory.mktemp("dash")
    video, _, _ = write_scene(generate_scene(43), root / "dash.mp4")
    camera = load_config(video.with_suffix(".yaml")).cameras[0]
    config = AppConfig(
        cameras=(camera.model_copy(update={"id": "dash", "realtime": True, "loop": True}),),
        detector=DetectorConfig(model="oracle"),
        api=ApiConfig(port=free_port(), tokens=(TOKEN,), preview_fps=4),
        # GET /alerts and /forecasts read the warehouse
        warehouse=WarehouseConfig(url=f"chdb://{root}/chdb", flush_interval_s=0.5),
        storage=StorageConfig(root=f"file://{root}/store", checkpoint_interval_s=2.0),
        alerts=AlertsConfig(rules=(QUIET_FLOOR,)),
        # 10 s windows forecast a minute ahead: the first band within seconds
        forecast=ForecastConfig(window_sizes_s=(10,), horizon_s=60),
    )
    pipeline = start_pipeline(config)
    try:
        yield pipeline.api_url
    finally:
        pipeline.stop()


def test_the_dashboard_shows_a_preview_and_counts_that_change(dashboard: str) -> None:
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1100, "height": 900})
            requests: list[str] = []
            errors: list[str] = []
            page.on("request", lambda r: requests.append(r.url))
            failed: list[str] = []
            page.on("response", lambda r: failed.append(r.url) if r.status >= 400 else None)
            page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.goto(f"{dashboard}/#token={TOKEN}")

            card = page.locator('section[data-camera="dash"]')
            card.wait_for(timeout=20_000)
            conn = page.locator("#conn")
            until(lambda: "WebSocket" in conn.inner_text(), 20, "the WebSocket")
            # a preview is drawn once the page watches, then keeps coming
            img = card.locator("img.preview")
            until(lambda: int(img.get_attribute("data-loaded") or 0) >= 2, 30, "previews")
            assert img.evaluate("img => img.naturalWidth") > 0
            # the count moves while the video plays
            total = card.locator("[data-total]")
            before = int(total.inner_text())
            until(lambda: int(total.inner_text()) > before, 60, "the count to move")
            assert card.locator("tr[data-counter]").count() >= 1
            assert page.evaluate("() => location.hash") == ""  # the token left the address bar
            # the open alert, live or from GET /alerts
            alert = page.locator('#alert-rows tr[data-rule="floor-under-5"]')
            until(lambda: alert.count() == 1, 30, "the open alert")
            assert alert.get_attribute("data-severity") == "warning"
            assert f"dash/{ZONE_ID}" in alert.inner_text() and "/ 5" in alert.inner_text()
            assert page.locator("#alert-count").inner_text() == "1"
            # a counter's chart: its counts beside the forecast band and line
            band = card.locator("svg.counter-chart polygon.forecast-band")
            until(lambda: band.count() >= 1, 60, "a forecast band")
            assert int(band.first.get_attribute("data-points") or 0) >= 1
            assert len((band.first.get_attribute("points") or "").split()) >= 4
            chart = band.first.locator("xpath=..")
            assert chart.locator("polyline.forecast-line").count() >= 1
            SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(SCREENSHOT), full_page=True)
            assert SCREENSHOT.stat().st_size > 10_000

            # Server-Sent Events as the fallback transport
            sse = browser.new_page()
            sse.goto(f"{dashboard}/?transport=sse#token={TOKEN}")
            until(lambda: "SSE" in sse.locator("#conn").inner_text(), 20, "SSE")
            until(lambda: sse.locator("#seq").inner_text().startswith("seq"), 30, "an update")
            # opened before this page subscribed: GET /alerts brought it
            sse_alert = sse.locator('#alert-rows tr[data-rule="floor-under-5"]')
            until(lambda: sse_alert.count() == 1, 30, "the open alert from GET /alerts")
        finally:
            browser.close()
    origin = dashboard.rstrip("/")
    outside = [u for u in requests if not u.startswith((origin, "blob:", "data:"))]
    assert outside == []  # the page loads nothing from anywhere else
    # the first preview of a camera nobody watched yet is a 404 (no frame
    # kept); nothing else failed
    assert all(u.endswith("/preview.jpg") for u in failed), failed
    assert [e for e in errors if not e.startswith("Failed to load resource")] == []


def test_the_api_docs_page_lists_every_route_offline(dashboard: str) -> None:
    """/docs, without a token and with every request off this app aborted,
    shows each route of /openapi.json with its method, summary, parameters
    and models."""
    import httpx

    doc = httpx.get(f"{dashboard}/openapi.json", timeout=30).json()  # public, like /docs
    operations = [
        (method.upper(), path, op)
        for path, item in doc["paths"].items()
        for method, op in item.items()
        if method in ("get", "post", "put", "patch", "delete")
    ]
    origin = dashboard.rstrip("/")
    outside: list[str] = []

    def only_this_app(route: Any) -> None:
        if route.request.url.startswith(origin):
            route.continue_()
        else:
            outside.append(route.request.url)
            route.abort()

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page()
            errors: list[str] = []
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.route("**/*", only_this_app)
            page.goto(f"{dashboard}/docs")
            page.locator('#routes[aria-busy="false"]').wait_for(timeout=20_000)
            shown = page.locator("article.route")
            assert shown.count() == len(operations) >= 10
            for method, path, op in operations:
                card = page.locator(f'article.route[data-method="{method}"][data-path="{path}"]')
                assert card.count() == 1, (method, path)
                assert op.get("summary", "") in card.locator(".summary").inner_text()
                for param in op.get("parameters", []):
                    assert card.locator(f'tr[data-param="{param["name"]}"]').count() == 1
            add = page.locator('article.route[data-method="POST"][data-path="/cameras"]')
            assert add.locator("[data-body]").inner_text() == "CameraConfig"
            assert "Camera" in add.locator('tr[data-status="201"]').inner_text()
            assert "ErrorBody" in add.locator('tr[data-status="422"]').inner_text()
            assert page.locator("#model-CameraPatch").count() == 1
            assert page.locator("#docs-error").is_hidden() and errors == []
        finally:
            browser.close()
    assert outside == []  # nothing was asked of anywhere else
