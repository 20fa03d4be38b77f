"""The `dataset:` block of a recipe; separate from loader.py so configs import without polars."""

from __future__ import annotations

import codecs
import re
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

Kind = Literal["sft", "chat", "dpo", "raft", "text"]
Format = Literal["auto", "jsonl", "json", "csv", "tsv", "parquet"]
_SELECTOR = re.compile(r"^(\[\]|[^.\[\]]+(\[\])?)(\.[^.\[\]]+(\[\])?)*$")


class DerivedField(BaseModel):
    """A field computed from a source column: the first group of `regex` searched in its text
    (`label: {from: id, regex: "^([a-z]+)"}`: conversation_915 -> conversation). No match: null."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    from_: str = Field(alias="from", min_length=1)
    regex: str

    @field_validator("regex")
    @classmethod
    def _one_group(cls, value: str) -> str:
        try:
            pattern = re.compile(value)
        except re.error as exc:
            raise ValueError(f"{value!r} is not a regular expression ({exc})") from None
        if pattern.groups < 1:
            raise ValueError(f"{value!r} has no group: the first (...) group is the value")
        return value


class DatasetConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    # a file, a glob of shards (data/*.parquet), a folder of data files, or a datasets save_to_disk folder
    path: Path
    name: str
    format: Format = "auto"
    kind: Kind = "sft"
    # canonical field -> source column, for sources no adapter recognises (e.g. {prompt: Q, response: A});
    # a source may be a path into nested values (answers[0].text), or a derived field ({from, regex})
    fields: dict[str, str | DerivedField] = Field(default_factory=dict)
    # force the text encoding (utf-8, cp949, euc-kr, utf-16 ...); None: detected per file
    encoding: str | None = None
    # where records are inside a JSON document, e.g. data[].paragraphs[].qas[] (SQuAD / KorQuAD)
    records: str | None = None
    # the source's own record id, kept as `source_id`; None: the first of id, _id, uuid, guid present
    id_field: str | None = None

    @field_validator("name")
    @classmethod
    def _name_is_a_plain_name(cls, value: str) -> str:
        if not value or ":" in value:
            raise ValueError("must be non-empty and contain no ':' (sample ids are '<name>:<row>')")
        # the name becomes part of folder names (curation ids): it must never reach outside the workspace
        if "/" in value or "\\" in value or ".." in value or value.startswith(".") or not value.isprintable():
            raise ValueError(f"{value!r}: must be a plain name (no '/', '\\' or '..', not starting with '.')")
        return value

    @field_validator("encoding")
    @classmethod
    def _known_encoding(cls, value: str | None) -> str | None:
        if value is None:
            return None
        try:
            codecs.lookup(value)
        except LookupError:
            raise ValueError(f"unknown encoding {value!r} (e.g. utf-8, cp949, euc-kr, utf-16)") from None
        return value

    @field_validator("records")
    @classmethod
    def _selector(cls, value: str | None) -> str | None:
        if value is not None and not _SELECTOR.match(value):
            raise ValueError(
                f"{value!r}: expected keys joined by '.', lists marked '[]' (e.g. data[].paragraphs[].qas[])"
            )
        return value

    def source_fields(self) -> dict[str, str]:
        """The plain column mappings (derived fields left out)."""
        return {k: v for k, v in self.fields.items() if isinstance(v, str)}
