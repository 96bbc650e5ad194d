"""Output types by name: the config model of each and the factory that
builds its ``Sink`` from an entry.

Adding an output is three small steps (docs/outputs.md): its config model
in ``settings.py`` (added to ``OutputConfig``), a ``Sink`` in its own
module here, and one entry in ``OUTPUT_TYPES``. The generic output actor
(actors/output.py) then runs it, and the controller creates, watches and
recovers it like the warehouse sink.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from camcount.outputs.errors import OutputConfigError
from camcount.outputs.port import Sink
from camcount.outputs.settings import (
    ArchiveOutputConfig,
    MqttOutputConfig,
    OutputSettings,
    WebhookOutputConfig,
)


@dataclass(frozen=True)
class SinkContext:
    """Where a sink runs: the pipeline's storage root, the stream of
    batches this instance takes (one per shard, ``s0``, ``s1``...; camera
    metadata from the controller is ``controller``) and the run's id
    (letters and digits), which names what it leaves behind."""

    storage_root: str
    stream: str
    run: str


Factory = Callable[[Any, SinkContext], Sink]


@dataclass(frozen=True)
class OutputType:
    config: type[OutputSettings]
    factory: Factory


def _archive(cfg: ArchiveOutputConfig, ctx: SinkContext) -> Sink:
    from camcount.outputs.archive import ArchiveSink
    from camcount.outputs.tables import CAMERA_KINDS, EVENT_KINDS

    uri = cfg.uri or f"{ctx.storage_root.rstrip('/')}/archive"
    return ArchiveSink(
        uri,
        ctx.stream,
        ctx.run,
        name=cfg.label,
        kinds=frozenset(cfg.kinds) or EVENT_KINDS | CAMERA_KINDS,
        compression=cfg.compression,
    )


def _webhook(cfg: WebhookOutputConfig, ctx: SinkContext) -> Sink:
    from camcount.outputs.webhook import WebhookSink

    return WebhookSink(cfg, ctx.storage_root)


def _mqtt(cfg: MqttOutputConfig, ctx: SinkContext) -> Sink:
    from camcount.outputs.mqtt import mqtt_sink

    return mqtt_sink(cfg, ctx.stream)


OUTPUT_TYPES: dict[str, OutputType] = {
    "archive": OutputType(ArchiveOutputConfig, _archive),
    "webhook": OutputType(WebhookOutputConfig, _webhook),
    "mqtt": OutputType(MqttOutputConfig, _mqtt),
}


def build_sink(cfg: OutputSettings, ctx: SinkContext) -> Sink:
    """The ``Sink`` an ``outputs:`` entry describes, for one stream."""
    type_name = str(getattr(cfg, "type", ""))
    entry = OUTPUT_TYPES.get(type_name)
    if entry is None:
        raise OutputConfigError(f"no output type {type_name!r}; known: {sorted(OUTPUT_TYPES)}")
    if not isinstance(cfg, entry.config):
        raise OutputConfigError(
            f"output {cfg.label!r}: a {type(cfg).__name__} is not a {entry.config.__name__}"
        )
    return entry.factory(cfg, ctx)
