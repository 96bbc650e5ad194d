"""The REST and live API on a running Serve app, through real clients.

One pipeline for the module (oracle detector, synthetic scenes, an
embedded chDB warehouse sink): httpx for
REST, SSE and long polling, ``websockets`` for the WebSocket, schemathesis
over the served OpenAPI document for bad input.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import httpx
import numpy as np
import pytest
import ray
import websockets
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.responses import PlainTextResponse
from starlette.routing import Route
from starlette.testclient import TestClient

from camcount.config import (
    ApiConfig,
    AppConfig,
    CameraConfig,
    DetectorConfig,
    SourcesConfig,
    StorageConfig,
    TokenConfig,
    WarehouseConfig,
    load_config,
)
from camcount.http.counts import counts_answer, counts_query
from camcount.http.limits import RateLimiter
from camcount.scenes.synthetic import generate_scene, write_scene
from serve_app.api import ApiService, ControllerClient
from serve_app.app import CONTROLLER_NAME, NAMESPACE, start_pipeline
from serve_app.auth import Guard, TokenCheck, resolve_digests, token_digest
from tests.integration.conftest import free_port

pytestmark = pytest.mark.integration

TOKEN = "test-token-7f3a9c"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
READ_TOKEN = "read-token-2b8e41"
READ = {"Authorization": f"Bearer {READ_TOKEN}"}
ACK_WINDOW = 64
CLIENT_BUFFER = 256


@dataclass
class Api:
    url: str
    pipeline: Any
    scenes: dict[str, CameraConfig]
    sink: Any
    #: ``GET /live/endpoints``: the live replica's own port, and the relayed routes.
    live: dict[str, Any]

    @property
    def ws_url(self) -> str:
        """The live replica's own port, as ``/live/endpoints`` names it."""
        return str(self.live["ws"])

    @property
    def events_url(self) -> str:
        return str(self.live["events"])

    @property
    def relayed_ws_url(self) -> str:
        return self.url.replace("http://", "ws://") + "/live/ws"

    def client(self, **kw: Any) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=30, **kw)

    def hub(self) -> Any:
        return ray.get(self.pipeline.controller.hub_handle.remote())

    def publish(self, n: int, camera: str, kind: str = "zone_sample") -> int:
        updates = [(kind, camera, {"zone_id": "z", "i": i}) for i in range(n)]
        return ray.get(self.hub().publish.remote(updates))


@pytest.fixture(scope="module")
def api(ray_cluster: None, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Api]:
    root = tmp_path_factory.mktemp("api")
    scenes = {}
    for seed in (41, 42):
        video, _, _ = write_scene(generate_scene(seed), root / f"cam{seed}.mp4")
        scenes[f"cam{seed}"] = load_config(video.with_suffix(".yaml")).cameras[0]
    config = AppConfig(
        detector=DetectorConfig(model="oracle"),
        api=ApiConfig(
            port=free_port(),
            tokens=(TOKEN, TokenConfig(token=READ_TOKEN, scope="read")),
            sources=SourcesConfig(folders=(str(root),)),  # the scenes' videos
            ack_window=ACK_WINDOW,
            client_buffer=CLIENT_BUFFER,
            heartbeat_s=1.0,
            rate_limit_per_s=2000,
            rate_limit_burst=5000,
        ),
        warehouse=WarehouseConfig(url=f"chdb://{root}/chdb", flush_interval_s=0.5),
        storage=StorageConfig(root=f"file://{root}/store"),
    )
    pipeline = start_pipeline(config)  # starts the warehouse sink the config names
    try:
        with httpx.Client(base_url=pipeline.api_url, headers=AUTH, timeout=30) as c:
            live = wait_for(
                lambda: (b := c.get("/live/endpoints").json())["endpoints"] and b,
                30,
                "the live replica's own port",
            )
        yield Api(pipeline.api_url, pipeline, scenes, pipeline.sink, live)
    finally:
        pipeline.stop()


def camera_body(api: Api, name: str, new_id: str, **changes: Any) -> dict[str, Any]:
    return api.scenes[name].model_copy(update={"id": new_id, **changes}).model_dump(mode="json")


def wait_for(check: Any, timeout_s: float, what: str) -> Any:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")


async def recv_json(ws: Any, timeout_s: float = 10.0) -> dict[str, Any]:
    return json.loads(await asyncio.wait_for(ws.recv(), timeout_s))


async def updates_until(ws: Any, last_seq: int, timeout_s: float = 30.0) -> list[dict[str, Any]]:
    """Updates until ``last_seq``, acknowledging as a client must."""
    got: list[dict[str, Any]] = []
    deadline = time.monotonic() + timeout_s
    while not got or got[-1]["seq"] < last_seq:
        got += await read_updates(ws, max(0.1, deadline - time.monotonic()), len(got))
    await ws.send(json.dumps({"type": "ack", "seq": got[-1]["seq"]}))  # all caught up
    return got


async def read_updates(ws: Any, timeout_s: float, before: int) -> list[dict[str, Any]]:
    """The updates of the next frame (one, a batch, or none), acknowledging
    every 16 as a client must."""
    m = await recv_json(ws, timeout_s)
    ups = m["updates"] if m["type"] == "updates" else [m] if m["type"] == "update" else []
    if ups and before // 16 != (before + len(ups)) // 16:
        await ws.send(json.dumps({"type": "ack", "seq": ups[-1]["seq"]}))
    return ups


# ----------------------------------------------------------------- auth


#: Every method a route of the API may have.
METHODS = ("get", "post", "put", "patch", "delete")


def test_every_route_but_health_refuses_a_missing_or_wrong_token(api: Api) -> None:
    with api.client() as c:
        assert c.get("/healthz").json()["status"] == "ok"
        assert c.get("/live/healthz").status_code == 200
        doc = c.get("/openapi.json", headers=AUTH).json()
        routes = [
            (method.upper(), path.replace("{camera_id}", "nope"))
            for path, ops in doc["paths"].items()
            for method in ops
            if method in METHODS and ops[method].get("security") != []
        ]
        assert len(routes) >= 10
        for method, path in routes:
            for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": TOKEN}):
                r = c.request(method, path, headers=headers, json={})
                assert r.status_code == 401, (method, path, headers)
                assert r.json()["error"] == "unauthorized" and "WWW-Authenticate" in r.headers
            with c.stream(method, path, headers=AUTH, json={}, params={"timeout": "0"}) as r:
                assert r.status_code != 401, (method, path)
        # a browser's EventSource passes the token in the query
        for events in ("/live/events", api.events_url):
            bad = c.get(events, params={"access_token": "wrong"})
            assert bad.status_code == 401 and bad.json()["error"] == "unauthorized"
        # the page itself holds no data and loads only what the app serves
        page = c.get("/")
        assert (
            page.status_code == 200
            and "default-src 'self'" in page.headers["content-security-policy"]
        )


def test_live_endpoints_name_the_replicas_own_port_and_the_relayed_routes(api: Api) -> None:
    with api.client(headers=READ) as c:
        body = c.get("/live/endpoints").json()
        assert c.get("/live/endpoints").status_code == 200
        assert c.get("/live/endpoints", headers={"Authorization": "Bearer x"}).status_code == 401
    (own,) = body["endpoints"]
    assert body["ws"] == own["ws"] and body["events"] == own["events"]
    assert own["ws"].startswith("ws://127.0.0.1:") and own["ws"].endswith("/ws")
    assert not own["ws"].startswith(api.relayed_ws_url.split("/live")[0] + "/")
    assert body["relayed"]["ws"] == api.relayed_ws_url
    health = httpx.get(own["health"], timeout=10).json()
    assert health["status"] == "ok" and health["seq"] >= 0


@pytest.mark.parametrize("path", ["direct", "relayed"])
def test_websocket_auth_by_header_query_or_first_message_and_close_codes(
    api: Api, path: str
) -> None:
    ws_url = api.ws_url if path == "direct" else api.relayed_ws_url

    async def run() -> None:
        async with websockets.connect(ws_url, additional_headers=AUTH) as ws:
            assert (await recv_json(ws))["type"] == "hello"
        async with websockets.connect(f"{ws_url}?access_token={TOKEN}") as ws:
            assert (await recv_json(ws))["type"] == "hello"
        async with websockets.connect(ws_url) as ws:
            await ws.send(json.dumps({"type": "auth", "token": TOKEN}))
            assert (await recv_json(ws))["type"] == "hello"
        refusals = [
            ({"type": "auth", "token": "wrong"}, f"{ws_url}", {}),
            ({"type": "subscribe"}, f"{ws_url}", {}),  # not authenticated first
            (None, f"{ws_url}?access_token=wrong", {}),
            (None, ws_url, {"Origin": "http://evil.example"}),
        ]
        for first, url, headers in refusals:
            async with websockets.connect(url, additional_headers=headers) as ws:
                if first is not None:
                    await ws.send(json.dumps(first))
                err = await recv_json(ws)
                assert err["type"] == "error"
                with pytest.raises(websockets.ConnectionClosed) as closed:
                    await recv_json(ws)
                assert closed.value.rcvd is not None
                assert closed.value.rcvd.code == (4403 if "Origin" in headers else 4401)

    asyncio.run(run())


def test_tokens_are_compared_as_digests_and_rate_limited_per_token() -> None:
    digests = resolve_digests(ApiConfig(tokens=("a",), tokens_env="X"), {"X": "b, c"})
    check = TokenCheck(digests)
    assert check.verify("b") == token_digest("b")[:8] and check.verify("d") is None
    assert TokenCheck(()).refusal(None)[0] == "auth_not_configured"

    async def ok(request: Any) -> PlainTextResponse:
        return PlainTextResponse("ok")

    app = Starlette(
        routes=[Route("/x", ok), Route("/healthz", ok)],
        middleware=[
            Middleware(
                Guard,
                check=check,
                limiter=RateLimiter(rate_per_s=0.01, burst=2),
                public=lambda p: p == "/healthz",
                query_allowed=lambda p: False,
                app_name="test",
            )
        ],
    )
    with TestClient(app) as c:
        codes = [c.get("/x", headers={"Authorization": "Bearer b"}).status_code for _ in range(3)]
        assert codes == [200, 200, 429]
        assert c.get("/x", headers={"Authorization": "Bearer c"}).status_code == 200  # own bucket
        r = c.get("/x", headers={"Authorization": "Bearer b"})
        assert r.json()["error"] == "rate_limited" and int(r.headers["Retry-After"]) >= 1
        assert c.get("/x", params={"access_token": "b"}).status_code == 401  # header only here
        assert c.get("/healthz").status_code == 200


# ----------------------------------------------------------------- REST


def test_a_read_token_reads_everything_and_may_change_nothing(api: Api) -> None:
    with api.client(headers=READ) as c:
        assert c.get("/cameras").status_code == 200
        assert c.get("/status").status_code == 200
        # a camera the pipeline never had is not found, for any token
        assert c.get("/counts", params={"camera": "nope"}).status_code == 404
        assert c.get("/live/poll", params={"timeout": 0}).status_code == 200
        doc = c.get("/openapi.json").json()
        writes = [
            (method.upper(), path.replace("{camera_id}", "cam41"))
            for path, ops in doc["paths"].items()
            for method in ops
            if method in ("post", "patch", "delete", "put")
        ]
        assert {m for m, _ in writes} == {"POST", "PUT", "PATCH", "DELETE"}
        for method, path in writes:
            r = c.request(method, path, json=camera_body(api, "cam41", "by-reader"))
            assert r.status_code == 403, (method, path, r.text)
            assert r.json()["error"] == "forbidden" and "admin" in r.json()["message"]
        # refused before anything ran: the camera was never added
        assert c.get("/cameras/by-reader").status_code == 404
        for events in ("/live/events", api.events_url):
            with c.stream("GET", events, params={"cameras": "x"}) as r:
                assert r.status_code == 200
                assert r.headers["content-type"].startswith("text/event-stream")

    async def live() -> None:
        async with websockets.connect(api.ws_url, additional_headers=READ) as ws:
            assert (await recv_json(ws))["type"] == "hello"
            await ws.send(json.dumps({"type": "subscribe", "cameras": ["x"]}))
            assert (await recv_json(ws))["type"] == "subscribed"

    asyncio.run(live())


def test_one_id_rule_in_bodies_and_paths_and_sources_only_from_the_allow_list(
    api: Api,
) -> None:
    longest = "c" * 128
    with api.client(headers=AUTH) as c:
        r = c.post("/cameras", json=camera_body(api, "cam41", longest))
        assert r.status_code == 201, r.text
        assert c.get(f"/cameras/{longest}").json()["config"]["id"] == longest
        assert c.patch(f"/cameras/{longest}", json={"site": "north"}).status_code == 200
        assert c.delete(f"/cameras/{longest}").status_code == 200
        for bad in ("c" * 129, "a/b", "é", "cam 1"):
            r = c.post("/cameras", json=camera_body(api, "cam41", bad))
            assert r.status_code == 422, (bad, r.text)
            assert [d["loc"] for d in r.json()["detail"]] == [["id"]]
        for source, why in [
            ("/etc/passwd", "is not below an allowed folder"),
            ("file:///etc/passwd", "scheme 'file' is not allowed"),
            (f"http://127.0.0.1:{free_port()}/x.mjpg", "the server itself"),
            ("0", "webcams are not allowed"),
        ]:
            r = c.post("/cameras", json=camera_body(api, "cam41", "outside", source=source))
            assert r.status_code == 422 and r.json()["error"] == "source_not_allowed", r.text
            assert r.json()["detail"][0]["loc"] == ["source"] and why in r.json()["message"]
        assert c.get("/cameras/outside").status_code == 404


def test_cameras_round_trip_while_running_and_counts_history(api: Api) -> None:
    async def observe(events: list[dict[str, Any]], stop: asyncio.Event) -> None:
        async with websockets.connect(api.ws_url, additional_headers=AUTH) as ws:
            await recv_json(ws)
            await ws.send(json.dumps({"type": "subscribe", "cameras": ["rest-a"]}))
            while not stop.is_set():
                try:
                    m = await recv_json(ws, 0.5)
                except TimeoutError:
                    continue
                if m["type"] == "update":
                    events.append(m)
                    await ws.send(json.dumps({"type": "ack", "seq": m["seq"]}))

    async def run() -> list[dict[str, Any]]:
        events: list[dict[str, Any]] = []
        stop = asyncio.Event()
        watcher = asyncio.create_task(observe(events, stop))
        await asyncio.sleep(1.0)
        async with httpx.AsyncClient(base_url=api.url, headers=AUTH, timeout=30) as c:
            r = await c.post("/cameras", json=camera_body(api, "cam41", "rest-a"))
            assert r.status_code == 201, r.text
            assert r.headers["location"] == "/cameras/rest-a"
            assert r.json()["config"]["id"] == "rest-a"
            dup = await c.post("/cameras", json=camera_body(api, "cam41", "rest-a"))
            assert dup.status_code == 409 and dup.json()["error"] == "exists"
            # lines change while it runs
            line2 = {"id": "line-2", "points": [[10, 300], [600, 300]]}
            lines = [*r.json()["config"]["lines"], line2]
            p = await c.patch("/cameras/rest-a", json={"lines": lines})
            assert p.status_code == 200, p.text
            assert [ln["id"] for ln in p.json()["config"]["lines"]] == ["line-main", "line-2"]
            # valid alone, wholly outside this camera's frame: the field named
            away = {"id": "line-3", "points": [[5000, 0], [6000, 10]]}
            out = await c.patch("/cameras/rest-a", json={"lines": [*lines, away]})
            assert out.status_code == 422 and out.json()["error"] == "invalid", out.text
            assert [d["loc"] for d in out.json()["detail"]] == [["lines", "2", "points"]]
            assert "line 'line-3'" in out.json()["message"]
            bad = await c.patch("/cameras/rest-a", json={"source": "/elsewhere.mp4"})
            assert bad.status_code == 422 and bad.json()["error"] == "immutable"
            listed = (await c.get("/cameras")).json()["cameras"]
            assert "rest-a" in [cam["config"]["id"] for cam in listed]
            for _ in range(300):
                status = (await c.get("/status")).json()
                cam = next(x for x in status["cameras"] if x["camera_id"] == "rest-a")
                if cam["state"] == "finished":
                    break
                await asyncio.sleep(0.2)
            assert cam["state"] == "finished" and cam["frames_dropped"] == 0
            assert {"fps", "lag_s", "frames_processed"} <= set(cam)
            await asyncio.sleep(2.0)
        stop.set()
        await watcher
        return events

    events = asyncio.run(run())
    status = api.client(headers=AUTH).get("/cameras/rest-a").json()["status"]
    crossings = [e for e in events if e["kind"] == "crossing"]
    want = sum(t["count"] for t in status["totals"] if t["counter_id"] == "line-main")
    assert want > 0
    assert len([e for e in crossings if e["data"]["counter_id"] == "line-main"]) == want
    assert [e["seq"] for e in events] == sorted({e["seq"] for e in events})

    # close the camera's windows (as its input going idle would), let the sink
    # write them: /counts answers from the warehouse, like the shards' memory
    ray.get([s.flush.remote() for s in ray.get(api.pipeline.controller.shard_handles.remote())])
    ray.get(api.sink.flush.remote())
    with api.client(headers=AUTH) as c:
        counts = c.get("/counts", params={"camera": "rest-a", "counter": "line-main"}).json()
        assert counts["source"] == "warehouse" and not counts["truncated"]
        assert sum(r["count"] for r in counts["rows"]) == want
        assert all(r["window_size_s"] == 10 for r in counts["rows"])
        q = counts_query({"camera": ["rest-a"], "counter": ["line-main"]}, [10, 60])
        alone = ControllerClient(CONTROLLER_NAME, NAMESPACE, find_sink=False)
        rows, source = asyncio.run(ApiService(ApiConfig(), (), alone, [10, 60]).fetch_counts(q))
        assert source == "aggregator" and counts_answer(q, rows, "x")["rows"] == counts["rows"]
        # An API deployed on its own (serve deploy) finds the pipeline's named sink.
        found = ControllerClient(CONTROLLER_NAME, NAMESPACE)
        rows, source = asyncio.run(ApiService(ApiConfig(), (), found, [10, 60]).fetch_counts(q))
        assert source == "warehouse" and counts_answer(q, rows, "x")["rows"] == counts["rows"]
        assert c.delete("/cameras/rest-a").json()["removed"] is True
        assert c.get("/cameras/rest-a").status_code == 404
        assert c.delete("/cameras/rest-a").json()["error"] == "not_found"
        # removed, its history stays readable; a camera never seen is not found
        after = c.get("/counts", params={"camera": "rest-a", "counter": "line-main"})
        assert after.status_code == 200 and after.json()["rows"] == counts["rows"]
        for params in ({"camera": "nope"}, {"camera": "nope", "window": 60}):
            nope = c.get("/counts", params=params)
            assert nope.status_code == 404 and nope.json()["error"] == "not_found", nope.text
        nope_alone = asyncio.run(alone.camera_known("nope"))
        assert asyncio.run(alone.camera_known("rest-a")) and not nope_alone


def test_a_preview_is_drawn_only_once_someone_watches(api: Api) -> None:
    body = camera_body(api, "cam42", "watched", realtime=True, loop=True)
    with api.client(headers=AUTH) as c:
        assert c.post("/cameras", json=body).status_code == 201
        wait_for(
            lambda: c.get("/cameras/watched").json()["status"]["frames_processed"] > 10,
            30,
            "frames",
        )
        first = c.get("/cameras/watched/preview.jpg")  # nobody watched: nothing kept
        assert first.status_code == 404 and first.json()["error"] == "no_frame_yet"
        jpeg = wait_for(
            lambda: (r := c.get("/cameras/watched/preview.jpg")).status_code == 200 and r.content,
            10,
            "a preview",
        )
        image = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR)
        assert image is not None and image.shape[1] <= 640
        # an <img> cannot send headers: the token may come in the query
        r = httpx.get(f"{api.url}/cameras/watched/preview.jpg", params={"access_token": TOKEN})
        assert r.headers["content-type"] == "image/jpeg"
        assert c.delete("/cameras/watched").status_code == 200


# ----------------------------------------------------------------- live


def test_resume_by_websocket_sse_and_poll_gets_exactly_the_missed_updates(api: Api) -> None:
    cam = "resume-a"
    sub = {"type": "subscribe", "cameras": [cam]}

    async def run() -> tuple[list[dict[str, Any]], list[dict[str, Any]], int, int]:
        async with websockets.connect(api.ws_url, additional_headers=AUTH) as observer:
            await recv_json(observer)
            await observer.send(json.dumps(sub))
            await recv_json(observer)  # subscribed
            async with websockets.connect(api.ws_url, additional_headers=AUTH) as first:
                await recv_json(first)
                await first.send(json.dumps(sub))
                await recv_json(first)
                with api.client(headers=AUTH) as c:
                    assert (
                        c.post("/cameras", json=camera_body(api, "cam41", cam)).status_code == 201
                    )
                seen = [m for m in [await recv_json(first) for _ in range(5)]]
            resume_after = seen[-1]["seq"]
            # every update of the camera: read until a long poll sees nothing new
            everything = await updates_until(observer, resume_after)
            while True:
                with api.client(headers=AUTH) as c:
                    more = c.get(
                        "/live/poll",
                        params={"after": everything[-1]["seq"], "cameras": cam, "timeout": 3},
                    ).json()
                if not more["updates"]:
                    break
                everything += await updates_until(observer, more["updates"][-1]["seq"])
            last = everything[-1]["seq"]
            async with websockets.connect(
                f"{api.ws_url}?after={resume_after}", additional_headers=AUTH
            ) as again:
                await recv_json(again)
                await again.send(json.dumps(sub))
                resumed = await updates_until(again, last)
        return everything, resumed, resume_after, last

    everything, resumed, resume_after, last = asyncio.run(run())
    missed = [m for m in everything if m["seq"] > resume_after]
    assert len(missed) >= 5
    assert resumed == missed  # exactly: no loss, no repeat, same order, same content

    # SSE: the browser's Last-Event-ID resumes the same way
    got: list[dict[str, Any]] = []
    headers = {**AUTH, "Last-Event-ID": str(resume_after)}
    with (
        api.client() as c,
        c.stream("GET", api.events_url, params={"cameras": cam}, headers=headers) as r,
    ):
        assert r.headers["content-type"].startswith("text/event-stream")
        event, ids = "", []
        for line in r.iter_lines():
            if line.startswith("id: "):
                ids.append(int(line[4:]))
            elif line.startswith("event: "):
                event = line[7:]
            elif line.startswith("data: ") and event == "update":
                got.append(json.loads(line[6:]))
                if got[-1]["seq"] >= last:
                    break
    assert got == missed and ids == [m["seq"] for m in missed]

    # long polling: after=SEQ, then the returned last_seq, until caught up
    polled: list[dict[str, Any]] = []
    after = resume_after
    with api.client(headers=AUTH) as c:
        while after < last:
            body = c.get("/live/poll", params={"after": after, "cameras": cam, "limit": 7}).json()
            assert not body["gap"]
            polled += body["updates"]
            after = body["last_seq"]
    assert [m for m in polled if m["seq"] <= last] == missed
    api.client(headers=AUTH).delete(f"/cameras/{cam}")


def test_malformed_websocket_messages_get_errors_and_the_connection_stays_usable(api: Api) -> None:
    bad_messages: list[str | bytes] = [
        "not json",
        "[]",
        '{"type": "dance"}',
        '{"type": "subscribe", "kinds": ["nope"]}',
        '{"type": "subscribe", "cameras": "x"}',
        '{"type": "ack", "seq": -3}',
        '{"type": "unsubscribe", "id": "never"}',
        '{"type": "auth", "token": "again"}',
        b"\x00\x01binary",
        "x" * 50_000,
    ]

    async def run() -> None:
        async with websockets.connect(api.ws_url, additional_headers=AUTH) as ws:
            hello = await recv_json(ws)
            assert hello["protocol"] == 1 and hello["ack_window"] == ACK_WINDOW
            ext = ws.response.headers.get("sec-websocket-extensions", "")
            assert "permessage-deflate" in ext  # compression negotiated
            for bad in bad_messages:
                await ws.send(bad)
                m = await recv_json(ws)
                assert m["type"] == "error" and m["code"] and m["message"], bad
            await ws.send(json.dumps({"type": "ping", "data": "still there?"}))
            assert (await recv_json(ws))["type"] == "pong"
            await ws.send(json.dumps({"type": "subscribe", "id": "s", "cameras": ["quiet"]}))
            assert (await recv_json(ws))["type"] == "subscribed"
            # nothing for this filter: the connection gets heartbeats
            assert (await recv_json(ws, 5))["type"] == "heartbeat"
            await ws.send(json.dumps({"type": "subscribe", "id": "s", "after": 1}))
            assert (await recv_json(ws))["code"] == "after_not_first"

    asyncio.run(run())


def test_a_client_that_stops_reading_is_told_and_dropped_and_the_others_keep_up(api: Api) -> None:
    n = 2 * (ACK_WINDOW + CLIENT_BUFFER)

    async def run() -> None:
        sub = json.dumps({"type": "subscribe", "cameras": ["synthetic"]})
        async with (
            websockets.connect(api.ws_url, additional_headers=AUTH, max_queue=None) as slow,
            websockets.connect(f"{api.ws_url}?batch=1", additional_headers=AUTH) as good,
        ):
            for ws in (slow, good):
                hello = await recv_json(ws)
                assert hello["batch"] is (ws is good)  # batched frames asked for by ?batch=1
                await ws.send(sub)
                await recv_json(ws)
            # a steady stream that the good client reads and acknowledges
            # as it comes, while the slow one never does
            bounds: list[int] = []

            async def publish() -> None:
                for _ in range(n // 32):
                    last = await asyncio.to_thread(api.publish, 32, "synthetic")
                    bounds.append(last)
                    await asyncio.sleep(0.05)

            async def read() -> list[dict[str, Any]]:
                got: list[dict[str, Any]] = []
                while len(bounds) < n // 32 or not got or got[-1]["seq"] < bounds[-1]:
                    got += await read_updates(good, 20, len(got))
                return got

            received, _ = await asyncio.gather(read(), publish())
            first = bounds[0] - 31
            assert [m["seq"] for m in received] == list(range(first, bounds[-1] + 1))
            # the slow one never acknowledged: a window's worth, the notice, 4408
            got: list[dict[str, Any]] = []
            with pytest.raises(websockets.ConnectionClosed) as closed:
                while True:
                    got.append(await recv_json(slow, 10))
            updates = [m for m in got if m["type"] == "update"]
            assert len(updates) == ACK_WINDOW
            assert got[-1]["type"] == "overflow"
            assert closed.value.rcvd is not None and closed.value.rcvd.code == 4408

    asyncio.run(run())


def test_a_resume_point_older_than_the_buffer_gets_a_gap(api: Api) -> None:
    with api.client(headers=AUTH) as c:
        start = c.get("/live/poll", params={"timeout": 0}).json()["last_seq"]
        api.publish(10_001, "flood")
        body = wait_for(
            lambda: (
                (b := c.get("/live/poll", params={"after": start, "timeout": 1}).json())["gap"]
                and b
            ),
            30,
            "a gap",
        )
        assert body["updates"][0]["seq"] > start + 1


# ----------------------------------------------------------------- bad input


def fuzz(api: Api, op: Any, mode: Any) -> None:
    """Hypothesis over one operation's generated requests: never a 5xx, and
    every refusal has a machine-readable error."""
    poll = op.path == "/live/poll"

    @settings(
        max_examples=25, deadline=None, database=None, suppress_health_check=list(HealthCheck)
    )
    @given(case=op.as_strategy(generation_mode=mode))
    def call(case: Any) -> None:
        if poll:  # don't wait on a long poll
            case.query = {**(case.query or {}), "timeout": 0}
        r = case.call(base_url=api.url, headers=AUTH, timeout=30)
        assert r.status_code < 500, (op.method, op.path, r.status_code, r.text[:300])
        if r.status_code >= 400:
            assert r.json()["error"], r.text

    call()


def test_generated_requests_from_the_openapi_document_never_get_a_5xx(api: Api) -> None:
    import schemathesis
    from schemathesis import GenerationMode

    doc = api.client(headers=AUTH).get("/openapi.json").json()
    checked = 0
    for result in schemathesis.openapi.from_dict(doc).get_all_operations():
        op = result.ok()
        if op.path == "/live/events":
            continue  # a stream never ends; its parameters are /live/poll's
        with contextlib.suppress(Unsatisfiable):  # nothing to get wrong (no parameters)
            fuzz(api, op, GenerationMode.NEGATIVE)
        if op.method.upper() != "POST":  # valid new cameras would start actors
            fuzz(api, op, GenerationMode.POSITIVE)
        checked += 1
    assert checked >= 10


def test_the_dashboard_static_files_are_served(api: Api) -> None:
    with api.client() as c:
        for name in ("dashboard.js", "chart.js", "style.css"):
            r = c.get(f"/static/{name}")
            assert r.status_code == 200 and "http" not in r.text.split("\n", 3)[0]
        assert Path(__file__).exists()
