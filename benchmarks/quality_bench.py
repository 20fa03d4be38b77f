"""Rows/s of the quality and pairs stages on 100k rows, against datatrove's Gopher filters on the same rows.

Rows: ChatbotData, HRC (grounded answers) and hh-rlhf harmless-base (prompt, chosen) from ../shared/data,
cycled to --rows SFT rows; the pairs stage gets hh-rlhf's pairs cycled to the same count. The peer is
datatrove's GopherRepetitionFilter + GopherQualityFilter (the checks closest to `quality`: duplicated
lines / paragraphs / n-grams, symbol ratio, bullet and ellipsis lines) in the same process on the same
rows, one document per row (prompt + "\\n" + response). Its English / Korean word tokenizers need spacy /
kiwipiepy models; a whitespace WordTokenizer is passed instead (Korean eojeol are whitespace-separated),
which is also the cheapest tokenizer it can have. One thread each (POLARS_MAX_THREADS=1 is set before
polars loads); best of two runs. Also printed: how many rows each flags, since speed at different work is no comparison.

    pip install datatrove   # the peer (no models)
    python benchmarks/quality_bench.py --rows 100000
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import time
from pathlib import Path

os.environ.setdefault("POLARS_MAX_THREADS", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")

import polars as pl  # noqa: E402

from tunelab.curate import normalize, pairs, quality  # noqa: E402
from tunelab.curate.common import StageContext  # noqa: E402
from tunelab.curate.config import NormalizeSettings, PairsSettings, QualitySettings  # noqa: E402
from tunelab.records.config import DatasetConfig  # noqa: E402
from tunelab.records.loader import load_dataset_records  # noqa: E402

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def sources() -> tuple[pl.DataFrame, pl.DataFrame]:
    """(sft rows: prompt, response; dpo rows) from the shared datasets, normalised."""
    if not SHARED.is_dir():
        sys.exit(f"the shared datasets are not at {SHARED}")
    chatbot = DatasetConfig(
        path=SHARED / "songys__Chatbot_data/ChatbotData.csv",
        name="c",
        fields={"prompt": "Q", "response": "A"},
    )
    hrc = DatasetConfig(
        path=SHARED / "human-rights-corpus__HRC/humane_right_copus_v1.jsonl.json",
        name="h",
        fields={"prompt": "질의", "response": "상담례, 결정례 기반 답변"},
    )
    hh = DatasetConfig(path=SHARED / "anthropics__hh-rlhf/harmless-base_test.jsonl.gz", name="hh", kind="dpo")
    dpo = load_dataset_records(hh).frame
    sft = pl.concat(
        [load_dataset_records(c).frame.select("sample_id", "prompt", "response") for c in (chatbot, hrc)]
        + [dpo.select("sample_id", "prompt", response="chosen")]
    )
    return normalize.transform(sft, NormalizeSettings()), normalize.transform(dpo, NormalizeSettings())


def cycled(frame: pl.DataFrame, rows: int, name: str, distinct: bool = True) -> pl.DataFrame:
    """`rows` rows, the source repeated; with `distinct`, every copy after the first has its copy number
    put before each text, so no text repeats (the stage measures each distinct text once: exact copies
    would flatter it against a peer that does not)."""
    reps = -(-rows // frame.height)
    texts = [c for c in ("prompt", "response", "chosen", "rejected") if c in frame.columns]
    copies = []
    for k in range(reps):
        copy = frame
        if distinct and k:
            copy = frame.with_columns((pl.lit(f"({k}) ") + pl.col(c)).alias(c) for c in texts)
        copies.append(copy)
    out = pl.concat(copies).head(rows)
    ids = pl.Series("sample_id", [f"{name}:{i}" for i in range(out.height)])
    return out.drop("sample_id", strict=False).with_columns(ids)


def timed(fn, *args, repeat: int = 2):  # noqa: ANN001, ANN202 (a benchmark helper)
    """(value, best seconds of `repeat` runs): the first run also pays one-off costs (regex compilation,
    the letter table of the run check)."""
    best = float("inf")
    for _ in range(repeat):
        started = time.perf_counter()
        value = fn(*args)
        best = min(best, time.perf_counter() - started)
    return value, best


def datatrove_peer(texts: list[str]) -> tuple[float, int, int]:
    """(seconds, rows GopherRepetitionFilter drops, rows GopherQualityFilter drops) over one document each."""
    from datatrove.data import Document
    from datatrove.pipeline.filters import GopherQualityFilter, GopherRepetitionFilter
    from datatrove.utils.word_tokenizers import WordTokenizer

    class Whitespace(WordTokenizer):
        sentence = re.compile(r"[^.!?\n]+[.!?\n]*")

        def word_tokenize(self, text: str) -> list[str]:
            return text.split()

        def sent_tokenize(self, text: str) -> list[str]:
            return [s.strip() for s in self.sentence.findall(text) if s.strip()]

        def span_tokenize(self, text: str) -> list[tuple[int, int]]:
            return [m.span() for m in self.sentence.finditer(text)]

    tokenizer = Whitespace("ko")
    repetition = GopherRepetitionFilter(language=tokenizer)  # type: ignore[arg-type]
    gopher = GopherQualityFilter(language=tokenizer)  # type: ignore[arg-type]
    docs = [Document(text=t, id=str(i)) for i, t in enumerate(texts)]
    started = time.perf_counter()
    rep_drops = sum(1 for d in docs if repetition.filter(d) is not True)
    quality_drops = sum(1 for d in docs if gopher.filter(d) is not True)
    return time.perf_counter() - started, rep_drops, quality_drops


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--no-peer", action="store_true", help="skip datatrove")
    parser.add_argument("--repeated", action="store_true", help="exact copies instead of distinct texts")
    args = parser.parse_args()
    sft, dpo = sources()
    parser_distinct = not args.repeated
    sft, dpo = cycled(sft, args.rows, "s", parser_distinct), cycled(dpo, args.rows, "d", parser_distinct)
    chars = int(sft["prompt"].str.len_chars().sum() + sft["response"].str.len_chars().sum())
    kind = "exact copies of" if args.repeated else "distinct texts cycled from"
    print(
        f"{sft.height:,} sft rows ({chars / sft.height:.0f} characters a row), {dpo.height:,} dpo rows, {kind} the sources"
    )
    out, seconds = timed(quality.run, sft, QualitySettings(), StageContext(kind="sft"))
    found = dict(out.decisions.group_by("reason").len().sort("reason").iter_rows())
    print(f"quality (all checks)      {seconds:7.2f} s  {sft.height / seconds:10,.0f} rows/s  {found}")
    for check in ("special_tokens", "repetition", "refusal", "truncated", "symbol_ratio"):
        _, seconds = timed(quality.run, sft, QualitySettings(checks=[check]), StageContext(kind="sft"))
        print(f"  quality {check:<16s} {seconds:7.2f} s  {sft.height / seconds:10,.0f} rows/s")
    out, seconds = timed(pairs.run, dpo, PairsSettings(), StageContext(kind="dpo"))
    found = dict(out.decisions.group_by("reason").len().sort("reason").iter_rows())
    print(f"pairs                     {seconds:7.2f} s  {dpo.height / seconds:10,.0f} rows/s  {found}")
    if args.no_peer:
        return
    texts = (sft["prompt"] + "\n" + sft["response"]).to_list()
    try:
        seconds, rep_drops, quality_drops = datatrove_peer(texts)
    except ImportError as exc:
        print(f"datatrove peer skipped: {exc}")
        return
    print(
        f"datatrove Gopher repetition + quality {seconds:7.2f} s  {len(texts) / seconds:10,.0f} rows/s  "
        f"(repetition drops {rep_drops:,}, quality drops {quality_drops:,} of {len(texts):,})"
    )


if __name__ == "__main__":
    main()
