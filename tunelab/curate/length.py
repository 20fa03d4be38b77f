"""Length stage: min/max per field in characters, and in tokens of the recipe's tokenizer when one is given.

A limit is per canonical field (`max_chars: {prompt: 2000}`) or one number for every text field of the
kind (`max_chars: 2048`). A field a row does not have (an optional `system`, `cot`) is not judged.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from tunelab.curate.common import StageContext, StageOutput, decisions, survivors
from tunelab.curate.config import LIMIT_KEYS, LengthSettings
from tunelab.errors import UserError
from tunelab.modeling.lengths import token_stats
from tunelab.records.fields import CANONICAL_FIELDS, LIST_FIELDS

HUB_CHECK_SECONDS = 3.0


def hub_reachable(timeout: float = HUB_CHECK_SECONDS) -> bool:
    """One short request to the hub: transformers retries an unreachable hub for about a minute before it
    fails, so a name that is not on disk is looked up only when this answers."""
    from huggingface_hub import constants
    from huggingface_hub.utils import get_session

    if constants.HF_HUB_OFFLINE:
        return False
    try:
        get_session().head(constants.ENDPOINT, timeout=timeout)
    except Exception:  # any connection error, timeout or proxy refusal means: no hub from here
        return False
    return True


@lru_cache(maxsize=4)
def _load_named(name_or_path: str) -> Any:
    from transformers import AutoTokenizer

    def first_line(exc: Exception) -> str:
        text = str(exc).strip()
        return text.splitlines()[0] if text else type(exc).__name__

    if name_or_path.startswith((".", "/", "~")) and not Path(name_or_path).expanduser().is_dir():
        raise UserError(f"curate.length.tokenizer: no tokenizer folder {name_or_path!r}")
    if Path(name_or_path).expanduser().is_dir():
        try:
            return AutoTokenizer.from_pretrained(str(Path(name_or_path).expanduser()))
        except Exception as exc:  # transformers raises OSError/ValueError/... for a folder without one
            raise UserError(
                f"curate.length.tokenizer: cannot load {name_or_path!r}: {first_line(exc)}"
            ) from None
    try:  # the Hugging Face cache first: no network for a tokenizer downloaded before
        return AutoTokenizer.from_pretrained(name_or_path, local_files_only=True)
    except Exception:
        pass
    if not hub_reachable():
        raise UserError(
            f"curate.length.tokenizer: {name_or_path!r} is not a folder and not in the Hugging Face cache, "
            "and the hub cannot be reached (offline); give a local tokenizer folder or tunelab-tiny"
        )
    try:
        return AutoTokenizer.from_pretrained(name_or_path)
    except Exception as exc:
        raise UserError(f"curate.length.tokenizer: cannot load {name_or_path!r}: {first_line(exc)}") from None


def load_tokenizer(
    name_or_path: str, workspace: Any = None, texts: Callable[[], list[str]] | None = None
) -> Any:
    """The tokenizer `curate.length.tokenizer` names: a folder, a hub name, or tunelab-tiny, which is the
    workspace's tiny model (built from `texts()` when the workspace has none yet, as training would)."""
    from tunelab.modeling.config import TINY_MODEL

    if name_or_path == TINY_MODEL:
        if workspace is None:
            raise UserError(f"curate.length.tokenizer: {TINY_MODEL} lives in a workspace; none was given")
        from tunelab.modeling.config import ModelSettings
        from tunelab.modeling.loading import quiet_libraries, resolve_base_model
        from tunelab.modeling.tiny import MARKER_FILE

        quiet_libraries()  # building it would print transformers' progress bars between our lines

        settings = ModelSettings(base_model=TINY_MODEL)
        try:
            built = (workspace.model_dir(TINY_MODEL) / MARKER_FILE).is_file()
            name_or_path = resolve_base_model(
                settings, workspace, None if built or texts is None else texts()
            )
        except UserError as exc:
            raise UserError(f"curate.length.tokenizer: {exc}") from None
    return _load_named(str(name_or_path))


def _text(frame: pl.DataFrame, field: str) -> pl.Series:
    """One string per row: a list of texts joined by newlines, a conversation as "role: content" lines."""
    dtype = frame.schema[field]
    col = pl.col(field)
    if isinstance(dtype, pl.List) and isinstance(dtype.inner, pl.Struct):
        turn = pl.concat_str(
            [pl.element().struct.field("role"), pl.element().struct.field("content")], separator=": "
        )
        col = col.list.eval(turn).list.join("\n")
    elif isinstance(dtype, pl.List) or field in LIST_FIELDS:
        col = col.list.join("\n")
    return frame.select(col.fill_null("").alias(field))[field]


def token_counts(tokenizer: Any, texts: list[str], batch: int = 1024) -> np.ndarray:
    counts = np.zeros(len(texts), dtype=np.int64)
    for begin in range(0, len(texts), batch):
        ids = tokenizer(texts[begin : begin + batch], add_special_tokens=False)["input_ids"]
        counts[begin : begin + len(ids)] = [len(x) for x in ids]
    return counts


def text_fields(frame: pl.DataFrame, kind: str) -> list[str]:
    """The canonical text fields of `kind` that `frame` holds as text (or a list of texts)."""
    fields = []
    for field in CANONICAL_FIELDS.get(kind, ()):
        dtype = frame.schema.get(field)
        if dtype == pl.String or (isinstance(dtype, pl.List) and dtype.inner in (pl.String, pl.Struct)):
            fields.append(field)
    return fields


def all_texts(frame: pl.DataFrame, kind: str) -> list[str]:
    """Every non-empty text of the frame's text fields (what tunelab-tiny's tokenizer is trained on)."""
    texts: list[str] = []
    for field in text_fields(frame, kind):
        texts.extend(t for t in _text(frame, field).to_list() if t)
    return texts


def _check_fields(cfg: LengthSettings) -> None:
    # one curate block may serve the SFT and the DPO dataset of a recipe: a field of another kind is
    # skipped for this one, a field of no kind at all is a typo
    allowed = {f for fields in CANONICAL_FIELDS.values() for f in fields}
    for block in LIMIT_KEYS:
        value = getattr(cfg, block)
        for field in value if isinstance(value, dict) else ():
            if field not in allowed:
                raise UserError(
                    f"curate.length.{block}: {field!r} is not a canonical field ({', '.join(sorted(allowed))})"
                )
    if cfg.uses_tokens() and not cfg.tokenizer:
        raise UserError(
            "curate.length: min_tokens/max_tokens need curate.length.tokenizer "
            "(a tokenizer name or folder, or tunelab-tiny)"
        )


def run(frame: pl.DataFrame, cfg: LengthSettings, ctx: StageContext) -> StageOutput:
    """too_short/too_long drops (first failing limit wins: chars before tokens); length stats in ctx.stats."""
    _check_fields(cfg)
    fields = text_fields(frame, ctx.kind)
    tokenizer = None
    if cfg.tokenizer:
        tokenizer = load_tokenizer(cfg.tokenizer, ctx.workspace, lambda: all_texts(frame, ctx.kind))
    limits = {block: cfg.limits(block, tuple(fields)) for block in LIMIT_KEYS}
    n = frame.height
    reason = np.full(n, None, dtype=object)
    evidence = np.full(n, None, dtype=object)
    stats: dict[str, dict[str, Any]] = {}

    def apply(
        field: str,
        values: np.ndarray,
        present: np.ndarray,
        unit: str,
        low: dict[str, int],
        high: dict[str, int],
    ) -> None:
        for bounds, too, word, sign in (
            (low, values.__lt__, "too_short", "<"),
            (high, values.__gt__, "too_long", ">"),
        ):
            if field not in bounds:
                continue
            # an absent optional field (no system prompt) is not "too short"
            fresh = too(bounds[field]) & present & (reason == None)  # noqa: E711 (elementwise, object array)
            reason[fresh] = f"{word}:{field}_{unit}{sign}{bounds[field]}"
            evidence[fresh] = [f"{v} {unit}" for v in values[fresh]]

    for field in fields:
        texts = _text(frame, field)
        present = frame[field].is_not_null().to_numpy()
        chars = texts.str.len_chars().to_numpy().astype(np.int64)
        stats[field] = {"chars": token_stats(chars[present])}
        apply(field, chars, present, "chars", limits["min_chars"], limits["max_chars"])
        if tokenizer is not None:
            tokens = token_counts(tokenizer, texts.to_list())
            stats[field]["tokens"] = token_stats(tokens[present])
            apply(field, tokens, present, "tokens", limits["min_tokens"], limits["max_tokens"])
    ctx.stats["length"] = {"tokenizer": cfg.tokenizer, "fields": stats}
    dropped = np.flatnonzero(reason != None)  # noqa: E711
    out = decisions(
        frame["sample_id"].gather(dropped),
        "length",
        False,
        reason[dropped].tolist(),
        evidence=evidence[dropped].tolist(),
    )
    return survivors(frame, out)
