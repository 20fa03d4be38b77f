"""The `dataset:` block of a recipe; separate from loader.py so configs import without polars."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

Kind = Literal["sft", "dpo", "raft", "text"]
Format = Literal["auto", "jsonl", "json", "csv", "tsv", "parquet"]


class DatasetConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    path: Path
    name: str
    format: Format = "auto"
    kind: Kind = "sft"
    # canonical field -> source column, for sources no adapter recognises (e.g. {prompt: Q, response: A})
    fields: dict[str, str] = Field(default_factory=dict)

    @field_validator("name")
    @classmethod
    def _name_has_no_colon(cls, value: str) -> str:
        if not value or ":" in value:
            raise ValueError("must be non-empty and contain no ':' (sample ids are '<name>:<row>')")
        return value
