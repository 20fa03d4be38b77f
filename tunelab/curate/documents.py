"""The golden document of a RAFT row: what `split.group_by: document` groups by and decontamination compares.

"Golden" is, in this order:
1. the row's `golden` field (RAFT's `oracle_context`; `tunelab raft build` writes it), so a row built
   without its golden document (RAFT's share 1 - p) still belongs to that document's group;
2. else the first document of its `context` that contains the answer text;
3. else none: the row is a group of its own.
Documents are compared after whitespace is collapsed, so a copy that differs only in spacing is the same
document.
"""

from __future__ import annotations

import re
from typing import Any

import polars as pl

_SPACE = re.compile(r"\s+")


def document_key(text: str) -> str:
    """A document as compared: whitespace runs collapsed, ends stripped."""
    return _SPACE.sub(" ", text).strip()


def golden_document(row: dict[str, Any]) -> str | None:
    """The golden document of one row (the rules above), or None."""
    golden = row.get("golden")
    if isinstance(golden, str) and golden.strip():
        return document_key(golden)
    answer = row.get("answer")
    if not isinstance(answer, str) or not answer.strip():
        return None
    needle = document_key(answer)
    for doc in row.get("context") or []:
        if isinstance(doc, str) and needle in document_key(doc):
            return document_key(doc)
    return None


def golden_documents(frame: pl.DataFrame) -> list[str | None]:
    """The golden document of every row of a RAFT frame (None where the rules find none)."""
    columns = [c for c in ("golden", "answer", "context") if c in frame.columns]
    if not columns:
        return [None] * frame.height
    return [golden_document(row) for row in frame.select(columns).iter_rows(named=True)]
