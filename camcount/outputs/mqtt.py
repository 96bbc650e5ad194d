"""The MQTT output: every event on a topic of its kind and camera, and the
current counts as retained messages (docs/mqtt.md).

Topics, under a configurable prefix (``camcount`` by default):

- ``{prefix}/events/{kind}/{camera}``: one JSON message per event (a
  crossing, a zone transition, a closed window row, a dead letter), with
  its stable ``event_id``;
- ``{prefix}/{camera}/{counter}/{class}/{direction}/count``, retained: the
  count since start of one key, ``{"count": n, "event_time": t}``, so a
  client that subscribes late gets the current counts at once.

Guarantee: at-least-once with stable event ids. ``flush(n)`` at a
checkpoint barrier works so:

1. every message published since the last flush is waited on until the
   broker acknowledges it (QoS 1: PUBACK; QoS 2: PUBCOMP);
2. while the broker is away the client reconnects with backoff and
   resends what it had not acknowledged, for up to ``flush_timeout_s``
   (60 s by default: a broker restart or a short outage loses nothing);
3. whatever is still unacknowledged then goes to this output's dead
   letters (reason ``mqtt_unacknowledged``) and the flush returns, so one
   dead broker never stops the checkpoints of the counting itself.

A replay after a restore publishes the same events again with the same
ids; receivers dedupe by ``event_id``. The retained counts are not
doubled by a replay: each key's count remembers the position of the last
event it took (the frame and track of a crossing, in the order a camera
counts them) and skips anything at or before it.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import pyarrow as pa

from camcount.events import Alert, Crossing, DeadLetter, WindowRow, ZoneTransition
from camcount.outputs.port import Ack, Guarantee

if TYPE_CHECKING:
    from camcount.outputs.settings import MqttOutputConfig

MQTT_ERR_QUEUE_SIZE = 15  # paho.mqtt.enums.MQTTErrorCode.MQTT_ERR_QUEUE_SIZE

log = logging.getLogger("camcount.outputs.mqtt")

#: The kinds this output publishes unless told otherwise.
DEFAULT_KINDS = frozenset(
    {Crossing.kind, ZoneTransition.kind, WindowRow.kind, DeadLetter.kind, Alert.kind}
)
#: Kinds whose events move a retained count.
COUNTED_KINDS = frozenset({Crossing.kind, ZoneTransition.kind})
UNACKED_REASON = "mqtt_unacknowledged"
#: Reading the retained counts back at the start: done once none came for
#: this long after the subscription, or given up after the timeout.
RESTORE_QUIET_S = 0.3
RESTORE_TIMEOUT_S = 3.0
#: Characters MQTT gives a meaning in topic names.
_TOPIC_SPECIAL = str.maketrans({"/": "_", "+": "_", "#": "_"})


class MqttError(Exception):
    """The MQTT output cannot be set up (a bad setting, no client library)."""


@dataclass(frozen=True)
class MqttSettings:
    """Where and how to publish; every number an operator may tune."""

    host: str = "127.0.0.1"
    port: int = 1883
    topic_prefix: str = "camcount"
    qos: int = 1
    client_id: str = ""
    username: str | None = None
    password: str | None = None
    keepalive_s: int = 30
    reconnect_min_delay_s: float = 0.5
    reconnect_max_delay_s: float = 5.0
    flush_timeout_s: float = 60.0
    max_inflight: int = 0  # no limit: paho rescans its in-flight messages at every ack
    kinds: frozenset[str] = field(default_factory=lambda: DEFAULT_KINDS)

    def __post_init__(self) -> None:
        if self.qos not in (0, 1, 2):
            raise MqttError(f"qos must be 0, 1 or 2, got {self.qos}")
        if not 0 < self.port < 65536:
            raise MqttError(f"port must be 1..65535, got {self.port}")
        if not self.topic_prefix or any(c in self.topic_prefix for c in "+#"):
            raise MqttError(f"topic_prefix must be a plain topic, got {self.topic_prefix!r}")
        if self.flush_timeout_s <= 0:
            raise MqttError(f"flush_timeout_s must be > 0, got {self.flush_timeout_s}")
        if not 0 < self.reconnect_min_delay_s <= self.reconnect_max_delay_s:
            raise MqttError(
                "reconnect delays must satisfy 0 < min <= max, got "
                f"{self.reconnect_min_delay_s} and {self.reconnect_max_delay_s}"
            )


def topic_part(text: str) -> str:
    """One level of a topic: ids are safe already, class names may not be."""
    return text.translate(_TOPIC_SPECIAL) or "_"


def event_topic(prefix: str, kind: str, camera: str) -> str:
    return f"{prefix}/events/{kind}/{topic_part(camera)}"


def count_topic(prefix: str, key: tuple[str, str, str, str]) -> str:
    camera, counter, cls, direction = (topic_part(p) for p in key)
    return f"{prefix}/{camera}/{counter}/{cls}/{direction}/count"


@dataclass
class _Count:
    """One retained count and the position of the last event it took."""

    count: int = 0
    event_time: float = 0.0
    position: tuple[int, int] = (-1, -1)


class MqttSink:
    """An output (port.py) that publishes to one MQTT broker with paho-mqtt."""

    guarantee = Guarantee.AT_LEAST_ONCE

    def __init__(self, settings: MqttSettings, name: str = "mqtt") -> None:
        try:
            import paho.mqtt.client as mqtt
        except ImportError as exc:  # pragma: no cover - a dependency
            raise MqttError("the MQTT output needs paho-mqtt>=2 installed") from exc
        self.name = name
        self.settings = settings
        self.kinds = frozenset(settings.kinds)
        self._lock = threading.Lock()
        self._counts: dict[tuple[str, str, str, str], _Count] = {}
        # Keys this output has taken events for (it republishes only those)
        # and the restore of the counts from the broker's retained ones.
        self._owned: set[tuple[str, str, str, str]] = set()
        self._restored = threading.Event()
        self._restore_started = time.monotonic()
        self._restore_mark: float | None = None
        # Acknowledgements by message id (paho calls on_publish on PUBACK,
        # also for a message resent after a reconnect): those not yet
        # acknowledged, with the dead letter each becomes if never; acks
        # that came before their publish call returned; and ids given up
        # on, whose late acks are ignored.
        self._acks = threading.Condition(threading.RLock())
        self._waiting: dict[int, DeadLetter | None] = {}
        self._early: set[int] = set()
        self._given_up: set[int] = set()
        self._dead: list[DeadLetter] = []
        self._delivered_since_flush = 0
        self._metrics = {
            "published": 0.0,
            "delivered": 0.0,
            "dead_lettered": 0.0,
            "connects": 0.0,
            "disconnects": 0.0,
        }
        self._connected = threading.Event()
        client = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2,
            client_id=settings.client_id,
            protocol=mqtt.MQTTv311,
            clean_session=True,
        )
        if settings.username is not None:
            client.username_pw_set(settings.username, settings.password)
        client.reconnect_delay_set(
            max(1, round(settings.reconnect_min_delay_s)),
            max(1, round(settings.reconnect_max_delay_s)),
        )
        client.max_inflight_messages_set(settings.max_inflight)
        client.max_queued_messages_set(0)  # unbounded: flush bounds what waits
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_publish = self._on_publish
        self._client = client
        # Connect in the background: a broker down at the start is the same
        # as one that goes away later (the client retries; flush waits).
        client.connect_async(settings.host, settings.port, settings.keepalive_s)
        client.loop_start()

    # ------------------------------------------------------------ callbacks

    def _on_connect(self, client: Any, userdata: Any, flags: Any, reason: Any, props: Any) -> None:
        if getattr(reason, "is_failure", False):
            log.warning("mqtt: connection refused by %s: %s", self.settings.host, reason)
            return
        self._metrics["connects"] += 1
        self._connected.set()
        if not self._restored.is_set():
            client.message_callback_add(self._counts_filter(), self._on_retained)
            client.on_subscribe = self._on_subscribed
            client.subscribe(self._counts_filter(), qos=1)
        # A broker that lost its retained messages (restarted without
        # persistence) gets the current counts again. Published outside
        # ``_lock``: paho holds its callback lock here, and a writer holding
        # ``_lock`` may need it for a QoS 0 publish.
        with self._lock:
            counts = [
                (key, _Count(c.count, c.event_time, c.position))
                for key, c in self._counts.items()
                if key in self._owned
            ]
        for key, c in counts:
            self._publish_count(key, c)

    def _on_disconnect(
        self, client: Any, userdata: Any, flags: Any, reason: Any, props: Any
    ) -> None:
        self._connected.clear()
        self._metrics["disconnects"] += 1
        if not getattr(reason, "is_failure", True):
            return  # our own close
        log.warning(
            "mqtt: disconnected from %s:%s (%s)", self.settings.host, self.settings.port, reason
        )

    # A restarted output (its actor restarted by Ray) starts from nothing,
    # and the shards replay from their checkpoint: the counts it had
    # published are read back from the broker's retained messages, with
    # the position of the last event each took, so the replay's repeats
    # are skipped and the counts go on from where they were.

    def _counts_filter(self) -> str:
        return f"{self.settings.topic_prefix}/+/+/+/+/count"

    def _on_subscribed(self, *args: Any) -> None:
        self._restore_mark = time.monotonic()

    def _on_retained(self, client: Any, userdata: Any, msg: Any) -> None:
        if self._restored.is_set() or not msg.retain:
            return
        try:
            body = json.loads(msg.payload)
            key = (body["camera_id"], body["counter_id"], body["class_name"], body["direction"])
            frame, track = body["after"]
            restored = _Count(
                int(body["count"]), float(body["event_time"]), (int(frame), int(track))
            )
        except (ValueError, KeyError, TypeError):
            return  # not one of ours, or from before positions were published
        with self._lock:
            self._counts.setdefault(key, restored)
        self._restore_mark = time.monotonic()

    def _wait_restored(self) -> None:
        """Before the first write: the retained counts have come (none for
        ``RESTORE_QUIET_S`` after the subscription), or ``RESTORE_TIMEOUT_S``
        passed (a broker away at the start: counts start from nothing)."""
        while not self._restored.is_set():
            now = time.monotonic()
            mark = self._restore_mark
            quiet = mark is not None and now - mark >= RESTORE_QUIET_S
            if quiet or now - self._restore_started >= RESTORE_TIMEOUT_S:
                self._restored.set()
                self._client.unsubscribe(self._counts_filter())
                self._client.message_callback_remove(self._counts_filter())
                return
            time.sleep(0.02)

    def _on_publish(self, client: Any, userdata: Any, mid: int, reason: Any, props: Any) -> None:
        with self._acks:
            if mid in self._given_up:
                self._given_up.discard(mid)
            elif mid in self._waiting:
                self._delivered_since_flush += self._waiting.pop(mid) is not None
                self._acks.notify_all()
            else:
                self._early.add(mid)

    def _publish(
        self, topic: str, payload: str, letter: DeadLetter | None, retain: bool = False
    ) -> None:
        """Publish and wait for the acknowledgement at the next flush; not
        under ``_acks``, since paho may call ``on_publish`` from inside."""
        info = self._client.publish(topic, payload, qos=self.settings.qos, retain=retain)
        if info.rc == MQTT_ERR_QUEUE_SIZE:
            if letter is not None:
                self._dead.append(letter)
            return
        with self._acks:
            if info.mid in self._early:
                self._early.discard(info.mid)
                self._delivered_since_flush += letter is not None
            else:
                self._waiting[info.mid] = letter

    # ------------------------------------------------------------ the port

    def write(self, kind: str, batch: pa.Table) -> None:
        if kind not in self.kinds:
            return
        self._wait_restored()
        prefix = self.settings.topic_prefix
        rows = batch.to_pylist()
        with self._lock:
            for row in rows:
                camera = str(row.get("camera_id", row.get("source", "")))
                payload = json.dumps({"kind": kind, **row}, separators=(",", ":"))
                self._metrics["published"] += 1
                self._publish(event_topic(prefix, kind, camera), payload, self._letter(kind, row))
            if kind in COUNTED_KINDS:
                self._count(rows)

    def _letter(self, kind: str, row: Mapping[str, Any]) -> DeadLetter:
        """What an event becomes if the broker never acknowledges it."""
        where = f"{self.settings.host}:{self.settings.port}"
        return DeadLetter(
            source=str(row.get("camera_id", row.get("source", ""))),
            reason=UNACKED_REASON,
            detail=f"{self.name}: {kind} not acknowledged by {where}",
            event_time=float(row.get("event_time", row.get("window_start", 0.0)) or 0.0),
            payload_kind=kind,
            payload_id=int(row.get("event_id", 0)),
        )

    def _count(self, rows: list[dict[str, Any]]) -> None:
        """A camera counts its frames in order, so (frame, track) only
        grows per key: anything not above the last one taken is an event
        this count has already (a replay)."""
        changed: set[tuple[str, str, str, str]] = set()
        for row in sorted(rows, key=lambda r: (r["frame_index"], r["track_id"])):
            key = (row["camera_id"], row["counter_id"], row["class_name"], row["direction"])
            c = self._counts.setdefault(key, _Count())
            position = (int(row["frame_index"]), int(row["track_id"]))
            if position <= c.position:
                continue
            c.position = position
            c.count += 1
            c.event_time = max(c.event_time, float(row["event_time"]))
            changed.add(key)
            self._owned.add(key)
        for key in sorted(changed):
            self._publish_count(key, self._counts[key])

    def _publish_count(self, key: tuple[str, str, str, str], c: _Count) -> None:
        payload = json.dumps(
            {
                "camera_id": key[0],
                "counter_id": key[1],
                "class_name": key[2],
                "direction": key[3],
                "count": c.count,
                "event_time": c.event_time,
                "after": list(c.position),
            },
            separators=(",", ":"),
        )
        # Retained counts are states, not events: a newer one replaces an
        # older one, so one lost with a dead broker is no dead letter; the
        # next connect publishes every count again.
        self._publish(count_topic(self.settings.topic_prefix, key), payload, None, retain=True)

    def flush(self, checkpoint_id: int) -> Ack:
        """Steps 1 to 3 of the module docstring."""
        deadline = time.monotonic() + self.settings.flush_timeout_s
        with self._acks:
            due = set(self._waiting)
            # Step 1 and 2: paho resends across reconnects; we wait.
            while due & self._waiting.keys():
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self._acks.wait(min(left, 0.5))
            # Step 3: what the broker never took is given up, with the reason.
            lost = due & self._waiting.keys()
            letters = [self._waiting.pop(mid) for mid in lost]
            self._given_up |= lost
            dead = [x for x in letters if x is not None]
            delivered, self._delivered_since_flush = self._delivered_since_flush, 0
        with self._lock:
            self._dead.extend(dead)
            self._metrics["delivered"] += delivered
            self._metrics["dead_lettered"] += len(dead)
        if dead:
            log.warning(
                "mqtt: %s messages not acknowledged within %.0f s: dead letters",
                len(dead),
                self.settings.flush_timeout_s,
            )
        return Ack(checkpoint_id, delivered=delivered, dead_lettered=len(dead))

    def dead_letters(self) -> Sequence[DeadLetter]:
        with self._lock:
            return list(self._dead)

    def metrics(self) -> Mapping[str, float]:
        with self._lock:
            return {
                **self._metrics,
                "pending": float(len(self._waiting)),
                "connected": 1.0 if self._connected.is_set() else 0.0,
            }

    def counts(self) -> dict[tuple[str, str, str, str], int]:
        """The counts this output publishes retained, by key."""
        with self._lock:
            return {k: c.count for k, c in self._counts.items()}

    def connected(self, timeout_s: float = 0.0) -> bool:
        return self._connected.wait(timeout_s)

    def close(self) -> None:
        self._client.disconnect()
        self._client.loop_stop()


def mqtt_sink(cfg: MqttOutputConfig, stream: str) -> MqttSink:
    """The sink of an ``outputs:`` entry of type ``mqtt``, for one stream
    of batches (a shard's): streams publish side by side, each with its
    own connection."""
    password = os.environ.get(cfg.password_env) if cfg.password_env else None
    settings = MqttSettings(
        host=cfg.host,
        port=cfg.port,
        topic_prefix=cfg.topic_prefix,
        qos=cfg.qos,
        client_id=f"{cfg.client_id}-{stream}" if cfg.client_id else "",
        username=cfg.username,
        password=password,
        keepalive_s=cfg.keepalive_s,
        reconnect_min_delay_s=cfg.reconnect_min_delay_s,
        reconnect_max_delay_s=max(cfg.reconnect_min_delay_s, cfg.reconnect_max_delay_s),
        flush_timeout_s=cfg.flush_timeout_s,
        max_inflight=cfg.max_inflight,
        kinds=frozenset(cfg.kinds) or DEFAULT_KINDS,
    )
    return MqttSink(settings, name=cfg.label)
