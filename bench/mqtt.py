"""The MQTT output's cost per 1,000 events, against a real broker.

For N crossings written in batches of B (as a shard hands them to its
outputs) and one flush at the end (the checkpoint barrier), measures

1. the time to write them (encode to JSON, publish, track acknowledgements),
2. the time until the flush returns (every message acknowledged, QoS 1),

and reports milliseconds per 1,000 events and events/s. A paho subscriber
checks that every event arrived (by ``event_id``). Without ``--port`` it
starts ``/usr/sbin/mosquitto`` on a free port in a temporary directory.

    python bench/mqtt.py --events 20000 --batch 500 --qos 1
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import platform
import sys
import tempfile
import threading
import time
from pathlib import Path

import paho.mqtt.client as mqtt

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from camcount.events import Crossing, Direction, to_arrow
from camcount.outputs.mqtt import MqttSettings, MqttSink
from tests.mosquitto import Mosquitto


def crossings(n: int) -> list[Crossing]:
    return [
        Crossing(
            f"cam-{i % 8:02d}",
            "line-main",
            i,
            i * 3,
            1767225600.0 + i / 10,
            "person",
            Direction.IN if i % 2 else Direction.OUT,
            0.9,
            320.0,
            240.0,
        )
        for i in range(n)
    ]


def run(host: str, port: int, n: int, batch: int, qos: int) -> dict[str, float]:
    events = crossings(n)
    tables = [to_arrow(Crossing, events[i : i + batch]) for i in range(0, n, batch)]
    prefix = f"bench{time.monotonic_ns()}"
    got: set[int] = set()
    done = threading.Event()
    subscribed = threading.Event()

    def on_message(client: mqtt.Client, userdata: object, msg: mqtt.MQTTMessage) -> None:
        if not msg.topic.endswith("/count"):
            got.add(json.loads(msg.payload)["event_id"])
            if len(got) == n:
                done.set()

    sub = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
    sub.on_message = on_message
    sub.on_subscribe = lambda *_: subscribed.set()
    sub.connect(host, port)
    sub.subscribe(f"{prefix}/events/#", qos=qos)
    sub.loop_start()
    subscribed.wait(5)
    sink = MqttSink(MqttSettings(host, port, topic_prefix=prefix, qos=qos))
    sink.connected(5)
    t0 = time.perf_counter()
    for t in tables:
        sink.write("crossing", t)
    t1 = time.perf_counter()
    ack = sink.flush(1)
    t2 = time.perf_counter()
    done.wait(60)
    sink.close()
    sub.disconnect()
    sub.loop_stop()
    if ack.delivered != n or len(got) != n:
        raise SystemExit(f"lost events: {ack.delivered} acknowledged, {len(got)} received of {n}")
    return {
        "write_ms_per_1000": (t1 - t0) / n * 1e6,
        "flush_ms": (t2 - t1) * 1e3,
        "total_ms_per_1000": (t2 - t0) / n * 1e6,
        "events_per_s": n / (t2 - t0),
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--events", type=int, default=20_000)
    p.add_argument("--batch", type=int, default=500)
    p.add_argument("--qos", type=int, default=1, choices=(0, 1, 2))
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=0, help="a running broker (default: start one)")
    args = p.parse_args()
    broker = None
    port = args.port
    if not port:
        broker = Mosquitto(Path(tempfile.mkdtemp(prefix="bench-mqtt-")))
        broker.start()
        port = broker.port
    try:
        runs = [
            run(args.host, port, args.events, args.batch, args.qos) for _ in range(args.repeats)
        ]
    finally:
        if broker is not None:
            broker.stop()
    best = min(runs, key=lambda r: r["total_ms_per_1000"])
    paho = importlib.metadata.version("paho-mqtt")
    print(f"machine: {platform.machine()}, Python {platform.python_version()}, paho-mqtt {paho}")
    print(
        f"{args.events} crossings, batches of {args.batch}, QoS {args.qos}, best of {args.repeats}:"
    )
    for k, v in best.items():
        print(f"  {k}: {v:,.1f}")


if __name__ == "__main__":
    main()
