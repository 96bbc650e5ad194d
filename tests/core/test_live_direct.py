"""A replica's own live port, on loopback: real ``websockets`` clients and
raw sockets against ``DirectServer`` over a real fan-out."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
import websockets
from websockets.exceptions import ConnectionClosed

from camcount.config import ApiConfig
from camcount.http.limits import RateLimiter
from camcount.http.live.direct import DirectServer, split_path
from camcount.http.live.encoding import message
from camcount.http.live.fanout import Fanout
from camcount.http.tokens import TokenCheck, token_digest
from tests.core.liveupdates import upd

TOKEN = "direct-token-51c2"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


async def _ready() -> bool:
    return True


def _hello(transport: str, batch: bool = False) -> str:
    return message("hello", protocol=1, transport=transport, batch=batch)


async def with_server(
    body: Callable[[DirectServer, Fanout, str], Awaitable[None]], **settings: Any
) -> None:
    fan = Fanout(100)
    config = ApiConfig(port=8000, **settings)
    server = DirectServer(
        fan,
        config,
        TokenCheck([token_digest(TOKEN)]),
        RateLimiter(config.rate_limit_per_s, config.rate_limit_burst),
        _hello,
        _ready,
    )
    port = await server.start("127.0.0.1", 0)
    try:
        await body(server, fan, f"127.0.0.1:{port}")
    finally:
        await server.stop()


def publish(server: DirectServer, fan: Fanout, seqs: range, camera: str = "cam") -> None:
    fan.publish([upd(i, camera=camera) for i in seqs])
    server.flush()


async def recv_json(ws: Any) -> dict[str, Any]:
    raw = await asyncio.wait_for(ws.recv(), 5)
    return json.loads(raw)


async def until_type(ws: Any, type_: str) -> dict[str, Any]:
    while True:
        msg = await recv_json(ws)
        if msg["type"] == type_:
            return msg


def test_split_path_keeps_every_value() -> None:
    assert split_path("/ws?after=3&kinds=a,b&kinds=c") == (
        "/ws",
        {"after": ["3"], "kinds": ["a,b", "c"]},
    )


def test_a_websocket_client_subscribes_resumes_and_gets_only_what_matches() -> None:
    async def body(server: DirectServer, fan: Fanout, addr: str) -> None:
        publish(server, fan, range(1, 6), camera="a")
        async with websockets.connect(f"ws://{addr}/ws?after=2", additional_headers=AUTH) as ws:
            assert (await recv_json(ws))["type"] == "hello"
            await ws.send(json.dumps({"type": "subscribe", "cameras": ["a"]}))
            assert (await recv_json(ws))["type"] == "subscribed"
            got = [(await recv_json(ws))["seq"] for _ in range(3)]
            assert got == [3, 4, 5]  # the backlog after 2
            publish(server, fan, range(6, 8), camera="b")  # filtered out
            publish(server, fan, range(8, 9), camera="a")
            assert (await recv_json(ws))["seq"] == 8
            await ws.send("not json")
            assert (await recv_json(ws))["code"] == "bad_json"
            await ws.send(json.dumps({"type": "ping", "data": "x"}))
            assert (await until_type(ws, "pong"))["data"] == "x"

    asyncio.run(with_server(body))


def test_batched_clients_get_one_frame_per_round_built_once() -> None:
    async def body(server: DirectServer, fan: Fanout, addr: str) -> None:
        url = f"ws://{addr}/ws?batch=1"
        async with (
            websockets.connect(url, additional_headers=AUTH) as one,
            websockets.connect(url, additional_headers=AUTH) as two,
        ):
            for ws in (one, two):
                await recv_json(ws)
                await ws.send(json.dumps({"type": "subscribe"}))
                await recv_json(ws)
            publish(server, fan, range(1, 4))
            frames = [await recv_json(ws) for ws in (one, two)]
            assert frames[0] == frames[1]
            assert [u["seq"] for u in frames[0]["updates"]] == [1, 2, 3]

    asyncio.run(with_server(body))


@pytest.mark.parametrize(
    ("url_tail", "headers", "first", "code"),
    [
        # a wrong token in the header
        ("", {"Authorization": "Bearer wrong"}, None, 4401),
        # a wrong token in the query
        ("?access_token=wrong", {}, None, 4401),
        # no token: the first message must authenticate
        ("", {}, {"type": "subscribe"}, 4401),
        # a page from another origin
        ("", {**AUTH, "Origin": "http://evil.example"}, None, 4403),
        # a resume point that is not a number
        ("?after=x", AUTH, None, 4400),
    ],
)
def test_refusals_are_an_error_then_a_close_code(
    url_tail: str, headers: dict[str, str], first: dict[str, Any] | None, code: int
) -> None:
    async def body(server: DirectServer, fan: Fanout, addr: str) -> None:
        async with websockets.connect(
            f"ws://{addr}/ws{url_tail}", additional_headers=headers
        ) as ws:
            if first is not None:
                await ws.send(json.dumps(first))
            assert (await recv_json(ws))["type"] == "error"
            with pytest.raises(ConnectionClosed) as closed:
                await recv_json(ws)
            assert closed.value.rcvd is not None and closed.value.rcvd.code == code

    asyncio.run(with_server(body))


def test_auth_by_first_message_and_the_api_origin_are_accepted() -> None:
    async def body(server: DirectServer, fan: Fanout, addr: str) -> None:
        host = addr.split(":")[0]
        origin = {"Origin": f"http://{host}:8000"}  # the page the API served
        async with websockets.connect(f"ws://{addr}/ws", additional_headers=origin) as ws:
            await ws.send(json.dumps({"type": "auth", "token": TOKEN}))
            assert (await recv_json(ws))["type"] == "hello"

    asyncio.run(with_server(body))


def test_compression_is_negotiated_with_clients_that_offer_it() -> None:
    async def body(server: DirectServer, fan: Fanout, addr: str) -> None:
        async with websockets.connect(f"ws://{addr}/ws", additional_headers=AUTH) as ws:
            assert ws.response is not None
            assert "permessage-deflate" in ws.response.headers.get("Sec-WebSocket-Extensions", "")
            await recv_json(ws)
            await ws.send(json.dumps({"type": "subscribe"}))
            await recv_json(ws)
            publish(server, fan, range(1, 2))
            assert (await recv_json(ws))["seq"] == 1

    asyncio.run(with_server(body))


def test_a_client_that_never_reads_is_told_and_closed_and_others_keep_up() -> None:
    async def body(server: DirectServer, fan: Fanout, addr: str) -> None:
        async with (
            websockets.connect(
                f"ws://{addr}/ws", additional_headers=AUTH, max_queue=None, compression=None
            ) as silent,
            websockets.connect(f"ws://{addr}/ws?batch=1", additional_headers=AUTH) as good,
        ):
            for ws in (silent, good):
                await recv_json(ws)
                await ws.send(json.dumps({"type": "subscribe"}))
                await recv_json(ws)
            # ``silent`` never acknowledges: 8 go out, 16 more wait, then overflow.
            got: list[int] = []
            for start in range(1, 40, 5):
                publish(server, fan, range(start, start + 5))
                while not got or got[-1] < start + 4:
                    frame = await recv_json(good)
                    got += [u["seq"] for u in frame.get("updates", [frame])]
                    await good.send(json.dumps({"type": "ack", "seq": got[-1]}))
            assert got == list(range(1, 41))
            seen = [await recv_json(silent) for _ in range(8)]
            assert [m["seq"] for m in seen] == list(range(1, 9))
            overflow = await until_type(silent, "overflow")
            assert overflow["resume_after"] == 8
            with pytest.raises(ConnectionClosed) as closed:
                await recv_json(silent)
            assert closed.value.rcvd is not None and closed.value.rcvd.code == 4408
            assert server.connections == 1

    asyncio.run(with_server(body, ack_window=8, client_buffer=16))


async def http_get(addr: str, target: str, headers: dict[str, str], read_s: float = 1.0) -> bytes:
    host, port = addr.split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    head = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
    writer.write(f"GET {target} HTTP/1.1\r\nHost: {addr}\r\n{head}\r\n".encode())
    data = b""
    try:
        while True:
            chunk = await asyncio.wait_for(reader.read(65536), read_s)
            if not chunk:
                break
            data += chunk
    except TimeoutError:
        pass
    writer.close()
    return data


def test_server_sent_events_resume_after_last_event_id_and_end_after_max_events() -> None:
    async def body(server: DirectServer, fan: Fanout, addr: str) -> None:
        publish(server, fan, range(1, 5))
        headers = {**AUTH, "Last-Event-ID": "2", "Origin": "http://127.0.0.1:8000"}
        task = asyncio.create_task(http_get(addr, "/events?cameras=cam", headers, 3.0))
        await asyncio.sleep(0.3)
        publish(server, fan, range(5, 8))
        data = (await task).decode()
        head, _, stream = data.partition("\r\n\r\n")
        assert head.startswith("HTTP/1.1 200") and "text/event-stream" in head
        assert "Access-Control-Allow-Origin: http://127.0.0.1:8000" in head
        ids = [int(line[4:]) for line in stream.splitlines() if line.startswith("id: ")]
        # The backlog after 2, then the live stream, ending once at least
        # sse_max_events went out (EventSource then resumes after 7).
        assert ids == [3, 4, 5, 6, 7]
        assert "event: end" in stream

    asyncio.run(with_server(body, sse_max_events=4))


@pytest.mark.parametrize(
    ("target", "headers", "status", "error"),
    [
        # no token
        ("/events", {}, 401, "unauthorized"),
        # an unknown kind is refused, naming it
        ("/events?kinds=crosing", AUTH, 422, "bad_filter"),
        # a Last-Event-ID that is no number
        ("/events", {**AUTH, "Last-Event-ID": "x"}, 422, "bad_parameter"),
        # nothing there
        ("/nothing", AUTH, 404, "not_found"),
    ],
)
def test_bad_http_requests_get_one_clear_error(
    target: str, headers: dict[str, str], status: int, error: str
) -> None:
    async def body(server: DirectServer, fan: Fanout, addr: str) -> None:
        data = (await http_get(addr, target, headers)).decode()
        head, _, text = data.partition("\r\n\r\n")
        assert head.startswith(f"HTTP/1.1 {status}")
        assert json.loads(text)["error"] == error

    asyncio.run(with_server(body))


def test_health_counts_the_open_streams() -> None:
    async def body(server: DirectServer, fan: Fanout, addr: str) -> None:
        async with websockets.connect(f"ws://{addr}/ws", additional_headers=AUTH) as ws:
            await recv_json(ws)
            data = (await http_get(addr, "/healthz", {})).decode()
            assert json.loads(data.partition("\r\n\r\n")[2])["connections"] == 1

    asyncio.run(with_server(body))


def test_a_taken_port_moves_the_next_replica_to_the_next_one() -> None:
    async def body(server: DirectServer, fan: Fanout, addr: str) -> None:
        taken = int(addr.split(":")[1])
        other = DirectServer(fan, server.settings, server.check, server.limiter, _hello, _ready)
        try:
            assert await other.start("127.0.0.1", taken, 5) == taken + 1
        finally:
            await other.stop()
        with pytest.raises(OSError, match="no free live port"):
            await DirectServer(
                fan, server.settings, server.check, server.limiter, _hello, _ready
            ).start("127.0.0.1", taken, 1)

    asyncio.run(with_server(body))
