"""The `dataset:` block of a recipe; separate from loader.py so configs import without polars."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

Kind = Literal["sft", "chat", "dpo", "raft", "text"]
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
    def _name_is_a_plain_name(cls, value: str) -> str:
        if not value or ":" in value:
            raise ValueError("must be non-empty and contain no ':' (sample ids are '<name>:<row>')")
        # the name becomes part of folder names (curation ids): it must never reach outside the workspace
        if "/" in value or "\\" in value or ".." in value or value.startswith(".") or not value.isprintable():
            raise ValueError(f"{value!r}: must be a plain name (no '/', '\\' or '..', not starting with '.')")
        return value
