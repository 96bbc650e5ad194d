"""The ``outputs:`` section of the config file: one entry per output, told
apart by ``type`` (a pydantic discriminated union).

Only pydantic here, so ``camcount.config`` can import it without loading
any output's libraries. An output type adds its model below, to
``OutputConfig``, and its factory to ``registry.py`` (docs/outputs.md).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Annotated, Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator

from camcount.errors import ConfigError
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


#: Kinds a webhook may carry: each has a ``camera_id`` to filter by.
WEBHOOK_KINDS = frozenset(
    {
        "crossing",
        "zone_transition",
        "zone_visit",
        "zone_sample",
        "window_row",
        "gap",
        "alert",
        "forecast",
    }
)
#: What a webhook posts when its entry names no kinds (occupancy samples,
#: one per zone and sampled frame, only when asked for).
WEBHOOK_DEFAULT_KINDS = ("crossing", "zone_transition", "zone_visit", "window_row", "gap", "alert")


class WebhookOutputConfig(OutputSettings):
    """Chosen events posted as signed JSON to a URL (docs/webhooks.md)."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    type: Literal["webhook"]
    url: str = Field(description="http:// or https:// address the events are posted to")
    secret: SecretStr | None = Field(default=None, description="the shared HMAC secret")
    secret_env: str | None = Field(
        default=None, description="environment variable that holds the secret (instead of secret)"
    )
    cameras: tuple[str, ...] = Field(default=(), description="only these cameras; () all")
    batch_size: Annotated[int, Field(ge=1, le=10_000)] = 100
    linger_s: Annotated[float, Field(ge=0)] = Field(
        default=1.0, description="longest an event waits for its post to fill"
    )
    timeout_s: Annotated[float, Field(gt=0)] = 10.0
    retries: Annotated[int, Field(ge=0)] = 8
    backoff_base_s: Annotated[float, Field(gt=0)] = 0.5
    backoff_max_s: Annotated[float, Field(gt=0)] = 30.0
    max_pending_events: Annotated[int, Field(ge=1)] = 10_000

    @field_validator("kinds")
    @classmethod
    def _webhook_kinds(cls, kinds: tuple[str, ...]) -> tuple[str, ...]:
        other = sorted(set(kinds) - WEBHOOK_KINDS)
        if other:
            raise ValueError(f"a webhook does not post {other}; it posts {sorted(WEBHOOK_KINDS)}")
        return kinds

    @field_validator("url")
    @classmethod
    def _http_url(cls, url: str) -> str:
        try:
            parts = urlsplit(url)
            parts.port  # noqa: B018 - a port that is not a number raises here
        except ValueError as exc:
            raise ValueError(f"not a URL ({exc}): {url!r}") from None
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"must be an http:// or https:// URL with a host, got {url!r}")
        return url

    @model_validator(mode="after")
    def _one_secret(self) -> WebhookOutputConfig:
        if (self.secret is None) == (self.secret_env is None):
            raise ValueError("give exactly one of secret and secret_env")
        if self.backoff_max_s < self.backoff_base_s:
            raise ValueError(
                f"backoff_max_s ({self.backoff_max_s}) is below backoff_base_s "
                f"({self.backoff_base_s})"
            )
        return self

    @property
    def webhook_kinds(self) -> tuple[str, ...]:
        return self.kinds or WEBHOOK_DEFAULT_KINDS

    def resolve_secret(self, environ: Mapping[str, str] = os.environ) -> str:
        """The secret itself, read where the webhook runs (an output
        actor's process), so it never travels in the config when named."""
        if self.secret is not None:
            return self.secret.get_secret_value()
        value = environ.get(self.secret_env or "")
        if not value:
            raise ConfigError(
                f"webhook {self.label!r}",
                [f"secret_env: environment variable {self.secret_env} is not set or empty"],
            )
        return value


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


OutputConfig = Annotated[
    ArchiveOutputConfig | WebhookOutputConfig | MqttOutputConfig, Field(discriminator="type")
]
