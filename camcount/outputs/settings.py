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


OutputConfig = Annotated[ArchiveOutputConfig, Field(discriminator="type")]
