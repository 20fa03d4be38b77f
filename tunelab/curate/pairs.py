"""Pairs stage: preference pairs (kind dpo) that cannot teach a preference.

Reasons, in the order they are checked (a row gets the first):

- `pair:empty_chosen`, `pair:empty_rejected`: nothing is left of the answer once special tokens
  (`pairs.special_tokens`, and any `<|name|>`) and whitespace are removed: a rejected answer that is only
  `<|endoftext|>` (a generation that stopped at once) teaches "say anything rather than nothing".
- `pair:identical`: chosen and rejected are the same text apart from whitespace (Korean spacing variants
  are one answer): the DPO loss of such a pair is constant, its gradient zero; it only dilutes the batch.
- `pair:length_bias` (off by default, `length_ratio: 0`): rejected is at least `length_ratio` times as long
  as chosen while chosen has at most `short_chars` (30) characters: in helpfulness data "OK." beating a
  long answer teaches brevity, not the preference. In harmlessness data the curt evasive chosen answer is
  the preference, which is why it is off unless asked for. Score = rejected / chosen characters.
- `pair:contradictory`: the same prompt (history + prompt) prefers A over B in one row and B over A in
  another. `contradictory: drop_both` (default) drops every row of such a prompt-and-answers set: the
  labels disagree, and keeping the first would pick the winner by file order. `keep_first` keeps the
  first row's direction and drops the rows that contradict it. `ref_sample_id` = the first row of the
  opposite direction.

Other kinds skip the stage (`skipped: not preference data`). Signal per row: `length_ratio` (rejected /
chosen characters), for the dashboard's distribution of length bias.
"""

from __future__ import annotations

import numpy as np
import polars as pl

from tunelab.curate.common import SIGNAL_SCHEMA, StageContext, StageOutput, decisions, survivors
from tunelab.curate.config import PairsSettings
from tunelab.curate.quality import _tokens
from tunelab.records.fields import field_text

STAGE = "pairs"


# whitespace that never changes what an answer says; removed (not collapsed) before comparing, since a
# literal removal is ~2.5x cheaper than a regex collapse, and Korean spacing variants are the same answer
WHITESPACE = (" ", "\n", "\t", "\r", "\u3000", "\xa0")


def _key(expr: pl.Expr) -> pl.Expr:
    """The text with all whitespace removed: what `identical` and `contradictory` compare."""
    expr = expr.fill_null("")
    for space in WHITESPACE:
        expr = expr.str.replace_all(space, "", literal=True)
    return expr


def _left_after_tokens(texts: pl.Series, keys: pl.Series, tokens: str) -> pl.Series:
    """Per answer: its length once special tokens and whitespace are gone (only rows holding a token are
    rewritten; a search is far cheaper than a replace)."""
    left = keys.str.len_chars()
    holding = texts.str.contains(tokens).fill_null(False)
    if holding.any():
        rows = holding.arg_true()
        stripped = keys.gather(rows).str.replace_all(tokens, "").str.len_chars()
        left = left.scatter(rows, stripped)
    return left


def run(frame: pl.DataFrame, cfg: PairsSettings, ctx: StageContext) -> StageOutput:
    """pair:* drops; the per-row length_ratio signal; counts per reason in ctx.stats."""
    if ctx.kind != "dpo":
        return StageOutput(
            frame, decisions([], STAGE, False), skipped=f"not preference data (kind {ctx.kind})"
        )
    n = frame.height
    tokens = _tokens(tuple(cfg.special_tokens), True)
    view = frame.select(
        pl.col("sample_id"),
        chosen=pl.col("chosen").fill_null("").str.strip_chars(),
        rejected=pl.col("rejected").fill_null("").str.strip_chars(),
        chosen_key=_key(pl.col("chosen")),
        rejected_key=_key(pl.col("rejected")),
    ).with_columns(
        chosen_chars=pl.col("chosen").str.len_chars(),
        rejected_chars=pl.col("rejected").str.len_chars(),
    )
    chosen_chars = view["chosen_chars"].to_numpy().astype(np.float64)
    rejected_chars = view["rejected_chars"].to_numpy().astype(np.float64)
    ratio = rejected_chars / np.maximum(chosen_chars, 1.0)
    reason = np.full(n, None, dtype=object)
    evidence = np.full(n, None, dtype=object)
    ref = np.full(n, None, dtype=object)
    score = np.full(n, np.nan)

    def mark(rows: np.ndarray, why: str, says: list[str], scores: np.ndarray | None = None) -> None:
        fresh = reason[rows] == None  # noqa: E711 (elementwise, object array)
        rows = rows[fresh]
        reason[rows] = why
        evidence[rows] = np.array(says, dtype=object)[fresh]
        if scores is not None:
            score[rows] = scores[fresh]

    for side in ("chosen", "rejected"):
        empty = (_left_after_tokens(view[side], view[f"{side}_key"], tokens) == 0).to_numpy()
        rows = np.flatnonzero(empty)
        raw = view[side]
        says = [f"{side}: only {raw[int(i)][:60]!r}" if raw[int(i)] else f"{side}: empty" for i in rows]
        mark(rows, f"pair:empty_{side}", says)
    if cfg.identical:
        rows = np.flatnonzero((view["chosen_key"] == view["rejected_key"]).to_numpy())
        says = [f"chosen == rejected apart from whitespace ({int(chosen_chars[i])} chars)" for i in rows]
        mark(rows, "pair:identical", says)
    if cfg.length_ratio > 0:
        biased = (ratio >= cfg.length_ratio) & (chosen_chars <= cfg.short_chars)
        rows = np.flatnonzero(biased)
        says = [
            f"rejected {int(rejected_chars[i])} chars = {ratio[i]:.1f}x chosen {int(chosen_chars[i])} chars"
            for i in rows
        ]
        mark(rows, "pair:length_bias", says, ratio[rows])
    if cfg.contradictory != "off":
        _contradictions(frame, view, cfg.contradictory, reason, evidence, ref)
    hit = np.flatnonzero(reason != None)  # noqa: E711
    out = decisions(
        frame["sample_id"].gather(hit),
        STAGE,
        False,
        reason[hit].tolist(),
        ref_sample_id=ref[hit].tolist(),
        score=[None if np.isnan(s) else float(s) for s in score[hit]],
        evidence=evidence[hit].tolist(),
    )
    ctx.stats[STAGE] = {"dropped": dict(sorted(out.group_by("reason").len().iter_rows()))}
    signals = pl.DataFrame(
        {
            "sample_id": frame["sample_id"],
            "stage": STAGE,
            "field": None,
            "signal": "length_ratio",
            "value": ratio,
        },
        schema=SIGNAL_SCHEMA,
    )
    return StageOutput(survivors(frame, out).frame, out, signals=signals)


def _contradictions(
    frame: pl.DataFrame,
    view: pl.DataFrame,
    policy: str,
    reason: np.ndarray,
    evidence: np.ndarray,
    ref: np.ndarray,
) -> None:
    """Rows whose prompt has the opposite preference in another row (rows already dropped don't count).

    Rows are first grouped by their two answers as an unordered pair (hashes of the whitespace-free
    answers); only groups holding both directions have their prompts compared, so long prompts (hh-rlhf's
    whole conversations) are read for the few candidate rows alone."""
    alive = pl.Series(reason == None)  # noqa: E711
    rows = (
        view.with_row_index("i")
        .filter(alive)
        .select("i", "sample_id", a=pl.col("chosen_key").hash(), b=pl.col("rejected_key").hash())
        .with_columns(lo=pl.min_horizontal("a", "b"), hi=pl.max_horizontal("a", "b"))
        .with_columns(forward=pl.col("a") == pl.col("lo"))
    )
    both = rows.group_by("lo", "hi").agg(pl.col("forward").n_unique().alias("directions"))
    candidates = rows.join(both.filter(pl.col("directions") > 1), on=["lo", "hi"], how="semi")
    if candidates.height == 0:
        return
    history = field_text("history") if "history" in frame.columns else pl.lit("")
    prompts = frame.select(
        _key(pl.concat_str([history.fill_null(""), pl.col("prompt").fill_null("")], separator="\n"))
        .hash()
        .alias("prompt")
    )["prompt"].gather(candidates["i"])
    groups = (
        candidates.with_columns(prompt=prompts)
        .group_by("prompt", "lo", "hi")
        .agg(
            pl.col("forward").n_unique().alias("directions"),
            pl.col("i"),
            pl.col("sample_id"),
            pl.col("forward"),
        )
        .filter(pl.col("directions") > 1)
    )
    for members, ids, forward in groups.select("i", "sample_id", "forward").iter_rows():
        order = np.argsort(members)
        members = [members[k] for k in order]
        ids = [ids[k] for k in order]
        forward = [forward[k] for k in order]
        first_of = {direction: ids[forward.index(direction)] for direction in (True, False)}
        for i, direction in zip(members, forward, strict=True):
            if policy == "keep_first" and direction == forward[0]:
                continue
            other = first_of[not direction]
            reason[i] = "pair:contradictory"
            ref[i] = other
            evidence[i] = f"{other} prefers the other answer for the same prompt"
