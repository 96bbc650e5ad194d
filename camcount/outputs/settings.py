"""The ``outputs:`` section of the config file: one entry per output, told
apart by ``type`` (a pydantic discriminated union).

Only pydantic here, so ``camcount.config`` can import it without loading
any output's libraries. An output type adds its model below, to
``OutputConfig``, and its factory to ``registry.py`` (docs/outputs.md).
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from camcount.outputs.tables import CAMERA_KINDS, EVENT_KINDS

_KNOWN_KINDS = EVENT_KINDS | CAMERA_KINDS


class OutputSettings(BaseModel):
    """What every output entry has: a ``name`` (unique in the file; its
    actor, metrics and dead letters carry it) and the event ``kinds`` it
    takes (empty: every kind its type takes)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_]*$", max_length=64)] = ""
    kinds: tuple[str, ...] = ()

    @field_validator("kinds")
    @classmethod
    def _known_kinds(cls, kinds: tuple[str, ...]) -> tuple[str, ...]:
        unknown = sorted(set(kinds) - _KNOWN_KINDS)
        if unknown:
            raise ValueError(f"unknown kinds {unknown}; known: {sorted(_KNOWN_KINDS)}")
        return kinds

    @property
    def label(self) -> str:
        """The name, or the type where none was given."""
        return self.name or str(getattr(self, "type", "output"))


class ArchiveOutputConfig(OutputSettings):
    """Raw events as Parquet files (docs/outputs.md, "The archive")."""

    type: Literal["archive"]
    uri: str = Field(
        default="",
        description="where the files go (file://, s3://, gs://); empty: {storage.root}/archive",
    )
    compression: Literal["zstd", "snappy", "gzip", "none"] = "zstd"


class MqttOutputConfig(OutputSettings):
    """Events and retained counts on an MQTT broker (docs/mqtt.md)."""

    type: Literal["mqtt"]
    host: str = "127.0.0.1"
    port: Annotated[int, Field(ge=1, le=65535)] = 1883
    topic_prefix: Annotated[str, Field(min_length=1, pattern=r"^[^+#]+$")] = "camcount"
    qos: Literal[0, 1, 2] = 1
    client_id: str = Field(default="", description="suffixed with the stream (one per shard)")
    username: str | None = None
    password_env: str | None = Field(
        default=None, description="the environment variable holding the password"
    )
    keepalive_s: Annotated[int, Field(ge=5)] = 30
    reconnect_min_delay_s: Annotated[float, Field(gt=0)] = 1.0
    reconnect_max_delay_s: Annotated[float, Field(gt=0)] = 5.0
    flush_timeout_s: Annotated[float, Field(gt=0)] = Field(
        default=60.0,
        description="how long a flush waits for the broker's acknowledgements before what is "
        "unacknowledged goes to the dead letters",
    )
    max_inflight: Annotated[int, Field(ge=0)] = Field(
        default=0,
        description="messages on their way at once; 0: no limit (paho rescans what is in "
        "flight at every acknowledgement)",
    )


OutputConfig = Annotated[ArchiveOutputConfig | MqttOutputConfig, Field(discriminator="type")]
