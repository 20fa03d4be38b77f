"""Decontamination stage: drop training rows that near-duplicate any evaluation row (MinHash + exact Jaccard).

The whole content is compared when the eval set has the training set's kind; otherwise (a DPO set
against an SFT eval set) the prompt (question) field alone. Prompt-only matching on same-kind data was
tried and rejected: short everyday prompts reach 0.6 without sharing an answer (demo row 98).

Conversations are compared on their user turns, each turn on its own (an eval question hidden as the
third turn of a long conversation must still be found): kind chat always, against the eval set's user
turns (chat) or prompts (other kinds); dpo also looks at the user turns of its history.

RAFT against a RAFT eval set also compares golden documents (curate/documents.py): a training row about an
eval row's document is dropped even when its question differs (evidence: "golden document Jaccard ...").
"""

from __future__ import annotations

import numpy as np
import polars as pl

from tunelab.curate import minhash
from tunelab.curate.common import StageContext, StageOutput, decisions, survivors
from tunelab.curate.config import DecontaminateSettings
from tunelab.curate.documents import golden_documents
from tunelab.records.fields import user_turns_text

PROMPT_FIELD = {"sft": "prompt", "chat": "messages", "dpo": "prompt", "raft": "question", "text": "text"}
VIEW_NAME = {"chat": "user turn"}


def prompt_view(frame: pl.DataFrame, kind: str) -> tuple[list[str], list[int]]:
    """(texts, row of each text): the prompt field, or every user turn of a conversation separately."""
    field = PROMPT_FIELD[kind]
    if field not in frame.columns:
        return [], []
    if kind == "chat":
        turns = user_turns_text("messages")
    elif kind == "dpo" and "history" in frame.columns:  # the history's user turns and the final prompt
        empty = pl.lit([], pl.List(pl.String))
        turns = pl.concat_list(user_turns_text("history").fill_null(empty), pl.col("prompt").fill_null(""))
    else:
        return frame[field].fill_null("").to_list(), list(range(frame.height))
    exploded = frame.select(turns.alias("turn")).with_row_index("row").explode("turn").drop_nulls("turn")
    return exploded["turn"].to_list(), exploded["row"].to_list()


def eval_view(
    loaded: pl.DataFrame, eval_kind: str, train_kind: str
) -> tuple[list[str], list[str], list[str]]:
    """(content, prompts, ids) of normalised eval rows with `content`: same kind compares whole contents
    (prompts alone are too short), except conversations, compared on user turns; another kind (a DPO set
    against an SFT eval set) compares prompts (ids repeat when one eval row gives several turns)."""
    ids = loaded["sample_id"].to_list()
    if eval_kind == train_kind == "raft":
        # RAFT against RAFT: the second list is each eval row's golden document ("" for none), compared
        # with the training rows' golden documents besides the contents (run)
        documents = [doc or "" for doc in golden_documents(loaded)]
        return loaded["content"].to_list(), documents, ids
    if eval_kind == train_kind and train_kind != "chat":
        return loaded["content"].to_list(), [], ids
    texts, rows = prompt_view(loaded, eval_kind)
    return [], texts, [ids[r] for r in rows]


def matches(
    train: list[str], evals: list[str], ngram: int, threshold: float, num_perm: int = 128, seed: int = 1
) -> list[tuple[int, int, float]]:
    """(train index, eval index, exact Jaccard) for every train text with an eval text at >= threshold
    (the best eval match per train text)."""
    if not train or not evals:
        return []
    # eval texts first: a bucket's star root is its lowest doc, so any bucket holding an eval text pairs
    # every train text in it with an eval text (pairs inside one side are of no interest)
    texts = evals + train
    n_eval = len(evals)
    sig = minhash.signatures(texts, ngram, num_perm, seed)
    bands, rows = minhash.band_params(threshold, num_perm)
    pairs = minhash.candidate_pairs(sig, bands, rows, seed)
    pairs = pairs[(pairs[:, 0] >= n_eval) & (pairs[:, 1] < n_eval)]  # (train doc, eval root)
    if len(pairs) == 0:
        return []
    sets = minhash.ShingleSets(texts, np.unique(pairs.reshape(-1)), ngram, seed)
    best: dict[int, tuple[int, float]] = {}
    for doc, other in pairs:
        j = sets.jaccard(int(doc), int(other))
        train_index = int(doc) - n_eval
        if j >= threshold and j > best.get(train_index, (-1, -1.0))[1]:
            best[train_index] = (int(other), j)
    return [(doc, other, j) for doc, (other, j) in sorted(best.items())]


def run(frame: pl.DataFrame, cfg: DecontaminateSettings, ctx: StageContext) -> StageOutput:
    """contaminated:eval drops; ref_sample_id = the eval row's id, score = exact Jaccard."""
    evals = ctx.eval_texts or []
    eval_prompts = ctx.eval_prompts or []
    eval_ids = ctx.eval_ids or [f"eval:{i}" for i in range(max(len(evals), len(eval_prompts)))]
    if not evals and not eval_prompts:
        ctx.stats["decontaminate"] = {"eval_rows": 0, "dropped": 0, "note": "no evaluation set given"}
        return StageOutput(frame, decisions([], "decontaminate", True))
    found: dict[int, tuple[int, float, str]] = {}
    for j_train, j_eval, j in matches(
        frame["content"].fill_null("").to_list(), evals, cfg.ngram, cfg.threshold
    ):
        found[j_train] = (j_eval, j, "content")
    field = PROMPT_FIELD[ctx.kind]
    view = VIEW_NAME.get(ctx.kind, field)
    compared_documents = ctx.kind == "raft" and bool(evals) and len(eval_prompts) == len(evals)
    if compared_documents:
        # a training row whose golden document is (nearly) an eval row's golden document: training on it
        # would let the eval score measure a memorised document, whatever the question
        train_docs = [doc or "" for doc in golden_documents(frame)]
        for j_train, j_eval, j in matches(train_docs, eval_prompts, cfg.ngram, cfg.threshold):
            if train_docs[j_train] and eval_prompts[j_eval] and j > found.get(j_train, (0, -1.0, ""))[1]:
                found[j_train] = (j_eval, j, "golden document")
    if not evals and eval_prompts and field in frame.columns:
        prompts, rows_of = prompt_view(frame, ctx.kind)
        for j_text, j_eval, j in matches(prompts, eval_prompts, cfg.ngram, cfg.threshold):
            j_train = rows_of[j_text]
            if j > found.get(j_train, (0, -1.0, ""))[1]:
                found[j_train] = (j_eval, j, view)
    rows = sorted(found)
    ctx.stats["decontaminate"] = {
        "eval_rows": len(eval_ids),
        "view": ("content+golden document" if compared_documents else "content") if evals else view,
        "dropped": len(rows),
    }
    ids = frame["sample_id"]
    out = decisions(
        ids.gather(rows),
        "decontaminate",
        False,
        "contaminated:eval",
        ref_sample_id=[eval_ids[found[r][0]] for r in rows],
        score=[found[r][1] for r in rows],
        evidence=[
            f"{found[r][2]} Jaccard {found[r][1]:.2f} >= {cfg.threshold} with an eval row" for r in rows
        ],
    )
    return survivors(frame, out)
