"""Each curation stage on small frames that go through the real loader (tunelab.records.loader)."""

from __future__ import annotations

import json
import unicodedata
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tunelab.curate import balance, decontaminate, exact, length, minhash, normalize, schema, split
from tunelab.curate.common import DECISION_SCHEMA, StageContext, with_content
from tunelab.curate.config import (
    BalanceSettings,
    DecontaminateSettings,
    ExactSettings,
    LengthSettings,
    MinhashSettings,
    NormalizeSettings,
    SchemaSettings,
    SplitSettings,
)
from tunelab.errors import UserError
from tunelab.records.config import DatasetConfig
from tunelab.records.loader import load_dataset_records
from tunelab.textnorm import char_shingles, exact_jaccard, normalize_expr, normalize_text


def load_rows(tmp_path: Path, rows: list, kind: str = "sft", name: str = "t") -> pl.DataFrame:
    path = tmp_path / f"{name}.jsonl"
    path.write_text(
        "\n".join(r if isinstance(r, str) else json.dumps(r, ensure_ascii=False) for r in rows) + "\n"
    )
    return load_dataset_records(DatasetConfig(path=path, name=name, kind=kind)).frame


def prepared(tmp_path: Path, rows: list, kind: str = "sft") -> pl.DataFrame:
    frame = load_rows(tmp_path, rows, kind)
    return with_content(normalize.transform(frame, NormalizeSettings()), kind)


def reasons(decisions: pl.DataFrame) -> dict[str, str]:
    return dict(decisions.filter(~pl.col("kept")).select("sample_id", "reason").iter_rows())


def test_schema_reasons_per_field(tmp_path: Path) -> None:
    frame = load_rows(
        tmp_path,
        [
            {"prompt": "질문", "response": "답변입니다"},
            {"prompt": "질문"},
            {"response": "답만 있음"},
            {"prompt": "질문", "response": 42},
            {"prompt": "질문", "response": "   "},
            {"prompt": ["a"], "response": ""},
            {"prompt": "질문", "response": "답", "system": 3},
        ],
    )
    out = schema.run(frame, SchemaSettings(), StageContext(kind="sft")).decisions
    assert out.schema == DECISION_SCHEMA
    assert reasons(out) == {
        "t:1": "missing_field:response",
        "t:2": "missing_field:prompt",
        "t:3": "wrong_type:response",
        "t:4": "empty:response",
        "t:5": "wrong_type:prompt",  # first failing field in canonical order wins
        "t:6": "wrong_type:system",
    }
    assert out.filter(pl.col("sample_id") == "t:3")["evidence"].item() == "response is int, expected str"


def test_schema_require_label(tmp_path: Path) -> None:
    frame = load_rows(
        tmp_path, [{"prompt": "a", "response": "b", "label": "x"}, {"prompt": "a", "response": "c"}]
    )
    out = schema.run(frame, SchemaSettings(require=["label"]), StageContext(kind="sft")).decisions
    assert reasons(out) == {"t:1": "missing_field:label"}


def test_normalize_composes_jamo_strips_controls_and_counts(tmp_path: Path) -> None:
    decomposed = unicodedata.normalize("NFD", "한국어 데이터")
    frame = load_rows(
        tmp_path,
        [
            {"prompt": decomposed, "response": "좋아요\u200b  정말\t\t좋아요\x07"},
            {"prompt": "그대로", "response": "변화 없음"},
            {"prompt": "줄\r\n\n\n\n바꿈", "response": "- 하나\n- 둘  "},
        ],
    )
    ctx = StageContext(kind="sft")
    stage = normalize.run(frame, NormalizeSettings(), ctx)
    out = stage.decisions
    assert out["kept"].all() and set(out["reason"]) == {"normalized"}
    assert dict(out.select("sample_id", "evidence").iter_rows()) == {
        "t:0": "changed: prompt,response",
        "t:2": "changed: prompt,response",
    }
    clean = normalize.transform(frame, NormalizeSettings())
    assert stage.frame.equals(clean)  # what the next stage sees
    assert clean["prompt"].to_list() == ["한국어 데이터", "그대로", "줄\n\n바꿈"]
    assert clean["response"].to_list() == ["좋아요 정말 좋아요", "변화 없음", "- 하나\n- 둘"]
    assert len(clean["prompt"][0]) == 7  # composed syllables, not jamo
    # the polars expression and the per-string reference agree
    samples = [decomposed, " a\u00a0\u3000b \n\n\n c\u200d", "\ufeff탭\t탭"]
    via_polars = pl.DataFrame({"s": samples}).select(normalize_expr("s"))["s"].to_list()
    assert via_polars == [normalize_text(s) for s in samples]


def test_length_chars_and_stats(tmp_path: Path) -> None:
    frame = prepared(
        tmp_path,
        [
            {"prompt": "질문", "response": "짧"},
            {"prompt": "질문", "response": "적당한 길이의 답"},
            {"prompt": "질문" * 300, "response": "적당한 길이의 답"},
        ],
    )
    ctx = StageContext(kind="sft")
    cfg = LengthSettings(min_chars={"response": 5}, max_chars={"prompt": 500})
    out = length.run(frame, cfg, ctx).decisions
    assert reasons(out) == {"t:0": "too_short:response_chars<5", "t:2": "too_long:prompt_chars>500"}
    assert out.filter(pl.col("sample_id") == "t:0")["evidence"].item() == "1 chars"
    stats = ctx.stats["length"]["fields"]["response"]["chars"]
    assert (
        stats["max"] == 9 and stats["p50"] == 9 and stats["mean"] == pytest.approx((1 + 9 + 9) / 3, abs=0.01)
    )


def test_length_tokens_with_a_local_tokenizer(tmp_path: Path) -> None:
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.WordLevel(unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.train_from_iterator(
        ["one two three four five six"], trainers.WordLevelTrainer(special_tokens=["[UNK]"])
    )
    PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="[UNK]").save_pretrained(tmp_path / "tok")
    frame = prepared(
        tmp_path,
        [
            {"prompt": "one two", "response": "one two three four five six"},
            {"prompt": "one", "response": "two three"},
        ],
    )
    ctx = StageContext(kind="sft")
    cfg = LengthSettings(
        tokenizer=str(tmp_path / "tok"), max_tokens={"response": 4}, min_tokens={"prompt": 2}
    )
    out = length.run(frame, cfg, ctx).decisions
    assert reasons(out) == {"t:0": "too_long:response_tokens>4", "t:1": "too_short:prompt_tokens<2"}
    assert ctx.stats["length"]["fields"]["response"]["tokens"]["max"] == 6
    with pytest.raises(UserError, match="curate.length.tokenizer"):
        length.run(frame, LengthSettings(tokenizer=str(tmp_path / "missing")), ctx)


def test_exact_keeps_first_or_longest(tmp_path: Path) -> None:
    rows = [
        {"prompt": "안녕", "response": "반가워요"},
        {"prompt": "안녕 ", "response": "반가워요"},  # equal after normalisation
        {"prompt": "다른", "response": "질문"},
        {"prompt": "안녕", "response": "반가워요"},
    ]
    frame = prepared(tmp_path, rows)
    out = exact.run(frame, ExactSettings(), StageContext()).decisions
    assert reasons(out) == {"t:1": "exact_dup", "t:3": "exact_dup"}
    assert set(out["ref_sample_id"]) == {"t:0"} and out["score"].to_list() == [1.0, 1.0]


def test_minhash_short_texts_and_exact_verification(tmp_path: Path) -> None:
    base = "오늘은 날씨가 맑고 바람이 시원해서 산책하기 좋은 날입니다"
    rows = [
        {"prompt": "안녕", "response": "네"},
        {"prompt": "안녕", "response": "네"},
        {"prompt": "p", "response": base},
        {"prompt": "p", "response": base + "!"},
        {"prompt": "p", "response": "완전히 다른 이야기를 하는 문장이라서 겹치는 부분이 거의 없습니다"},
    ]
    frame = prepared(tmp_path, rows)
    # the dedup key switched off: the verified score is the raw text's exact Jaccard (tests/test_dedup_key.py
    # covers the default key, under which base and base + "!" are the same key)
    raw_key = {"unicode": "none", "lowercase": False, "punctuation": False, "whitespace": False}
    out = minhash.run(frame, MinhashSettings(threshold=0.7, key=raw_key), StageContext()).decisions
    got = reasons(out)
    assert got == {"t:1": "near_dup_minhash", "t:3": "near_dup_minhash"}
    row = out.filter(pl.col("sample_id") == "t:3").row(0, named=True)
    expected = exact_jaccard(char_shingles("p\n" + base, 5), char_shingles("p\n" + base + "!", 5))
    assert row["ref_sample_id"] == "t:2" and row["score"] == pytest.approx(expected)


def test_minhash_has_no_chains() -> None:
    # B is close to A and C is close to B, but C is not close to A: C must survive (no A~B~C chain)
    words = [f"w{i:03d}" for i in range(60)]
    a = " ".join(words)
    b = " ".join(words[:54] + [f"x{i:03d}" for i in range(6)])
    c = " ".join(words[:48] + [f"x{i:03d}" for i in range(12)])
    j = {
        k: exact_jaccard(char_shingles(x, 5), char_shingles(y, 5))
        for k, (x, y) in {"ab": (a, b), "bc": (b, c), "ac": (a, c)}.items()
    }
    assert j["ab"] >= 0.75 and j["bc"] >= 0.75 and j["ac"] < 0.75
    frame = pl.DataFrame({"sample_id": ["A", "B", "C"], "content": [a, b, c]})
    out = minhash.run(frame, MinhashSettings(threshold=0.75), StageContext()).decisions
    assert reasons(out) == {"B": "near_dup_minhash"}
    assert out["ref_sample_id"].to_list() == ["A"]


def test_minhash_keep_longest() -> None:
    short = "한국어 문장 하나를 여기에 적어 봅니다 테스트"
    frame = pl.DataFrame({"sample_id": ["s", "l"], "content": [short, short + " 끝"]})
    out = minhash.run(frame, MinhashSettings(threshold=0.7, keep="longest"), StageContext()).decisions
    assert reasons(out) == {"s": "near_dup_minhash"} and out["ref_sample_id"].to_list() == ["l"]


def edited_pairs(n: int, seed: int = 0) -> list[tuple[str, str]]:
    rng = np.random.default_rng(seed)
    vocab = [chr(0xAC00 + int(i)) * 2 for i in rng.choice(11172, 300, replace=False)] + [
        f"en{i}" for i in range(300)
    ]
    pairs = []
    for _ in range(n):
        words = list(rng.choice(vocab, int(rng.integers(5, 80))))
        rate = rng.uniform(0, 0.6)  # per pair, so the pairs span Jaccard ~0.1 .. 1
        other = [w if rng.random() > rate else str(rng.choice(vocab)) for w in words]
        pairs.append((" ".join(words), " ".join(other)))
    return pairs


@pytest.mark.parametrize("seed", [0, 1])
def test_vectorised_minhash_agrees_with_datasketch(seed: int) -> None:
    from datasketch import MinHash

    pairs = edited_pairs(1000, seed)
    texts = [t for pair in pairs for t in pair]
    sig = minhash.signatures(texts, ngram=5, num_perm=128, seed=seed + 1)
    ours, theirs, truth = [], [], []
    for k, (x, y) in enumerate(pairs):
        sx, sy = char_shingles(x, 5), char_shingles(y, 5)
        mx, my = MinHash(num_perm=128, seed=seed + 1), MinHash(num_perm=128, seed=seed + 1)
        mx.update_batch([s.encode() for s in sx])
        my.update_batch([s.encode() for s in sy])
        ours.append(minhash.estimated_jaccard(sig[2 * k], sig[2 * k + 1]))
        theirs.append(mx.jaccard(my))
        truth.append(exact_jaccard(sx, sy))
    ours, theirs, truth = map(np.array, (ours, theirs, truth))
    assert truth.std() > 0.15  # the pairs span the Jaccard range, not just ~0
    assert np.abs(ours - theirs).mean() < 0.05
    assert np.abs(ours - truth).mean() < 0.05
    assert np.abs(ours - truth).mean() <= np.abs(theirs - truth).mean() + 0.01


def test_signatures_of_short_and_long_batches_estimate_jaccard() -> None:
    # a batch of long texts uses one-permutation hashing; identical sets must give identical rows
    long_pairs = edited_pairs(200, 3)
    texts = [(x + " ") * 6 for x, _ in long_pairs] + [(x + " ") * 6 for x, _ in long_pairs[:5]]
    sig = minhash.signatures(texts, 5, 128, 1)
    assert (sig[:5] == sig[-5:]).all()
    assert minhash.estimated_jaccard(sig[0], sig[1]) < 0.2


def test_balance_cap_ratios_and_oversampling(tmp_path: Path) -> None:
    rows = [
        {"prompt": f"q{i}", "response": f"a{i}", "label": "teto" if i < 30 else "egen"} for i in range(40)
    ]
    rows.append({"prompt": "q", "response": "no label"})
    frame = prepared(tmp_path, rows)
    ctx = StageContext()
    out = balance.run(frame, BalanceSettings(max_per_label=12, seed=3), ctx).decisions
    assert out.filter(~pl.col("kept"))["reason"].unique().to_list() == ["over_cap:label=teto"]
    assert out.height == 18 and ctx.stats["balance"]["after"] == {"teto": 12, "egen": 10}
    again = balance.run(frame, BalanceSettings(max_per_label=12, seed=3), StageContext()).decisions
    assert again.equals(out)  # seeded
    ratios = balance.run(frame, BalanceSettings(ratios={"teto": 0.5, "egen": 0.5}), StageContext()).decisions
    assert ratios.height == 20  # 30 teto down to 10
    over_output = balance.run(frame, BalanceSettings(max_per_label=12, oversample=True), ctx)
    over = over_output.decisions
    dups = over.filter(pl.col("reason") == "oversampled")
    assert dups.height == 2 and dups["kept"].all()
    assert all(
        sid.startswith(ref + "#dup") for sid, ref in dups.select("sample_id", "ref_sample_id").iter_rows()
    )
    expanded = over_output.frame  # the kept rows plus a copy per oversampled id
    capped = over.filter(~pl.col("kept"))["sample_id"]
    assert expanded.height == frame.height - capped.len() + 2
    assert not set(capped) & set(expanded["sample_id"])
    assert (
        expanded.filter(pl.col("sample_id") == dups["sample_id"][0])["prompt"].item()
        == frame.filter(pl.col("sample_id") == dups["ref_sample_id"][0])["prompt"].item()
    )


def test_split_is_stratified_seeded_and_keeps_clusters_together(tmp_path: Path) -> None:
    rows = [{"prompt": f"q{i}", "response": f"a{i}", "label": "a" if i % 4 else "b"} for i in range(200)]
    frame = prepared(tmp_path, rows)
    groups = {f"t:{i}": "cluster-1" for i in range(1, 80, 4)}  # 20 rows of one near-dup cluster, label a
    ctx = StageContext(clusters=groups)
    out = split.run(frame, SplitSettings(val_ratio=0.2, seed=1), ctx).decisions
    assert set(out["stage"]) == {"final"} and out["kept"].all() and out.height == 200
    side = dict(out.select("sample_id", pl.col("evidence").str.strip_prefix("split=")).iter_rows())
    assert len({side[s] for s in groups}) == 1
    val = [s for s, v in side.items() if v == "val"]
    labels = dict(frame.select("sample_id", "label").iter_rows())
    val_b = sum(labels[s] == "b" for s in val)
    assert val_b == 10  # b: 50 singleton rows -> exactly 10 in val
    assert 30 <= len(val) - val_b <= 31  # a: 150 rows -> 30 in val, whole groups only
    again = split.run(frame, SplitSettings(val_ratio=0.2, seed=1), StageContext(clusters=groups))
    assert again.decisions.equals(out)
    assert again.frame["split"].to_list() == [side[s] for s in frame["sample_id"]]


@settings(max_examples=60, deadline=None)
@given(
    texts=st.lists(
        st.text(
            alphabet=st.sampled_from(list("가나 \t\n\r\u00a0\u3000\u200b\x07a\u1100\u1161")), max_size=12
        ),
        min_size=1,
        max_size=8,
    )
)
def test_normalize_frame_matches_reference_on_random_text(texts: list[str]) -> None:
    frame = pl.DataFrame(
        {"sample_id": [str(i) for i in range(len(texts))], "prompt": texts, "response": texts}
    )
    clean = normalize.transform(frame, NormalizeSettings())
    expected = [normalize_text(t) for t in texts]
    assert clean["prompt"].to_list() == expected and clean["response"].to_list() == expected


def test_decontaminate_matches_train_rows_to_eval_rows() -> None:
    evals = [
        "서울의 인구는 약 천만 명이고 수도권에는 그보다 훨씬 많은 사람이 삽니다",
        "전혀 관계없는 평가 문장 하나",
    ]
    train = [
        "오늘 점심은 비빔밥을 먹었습니다 아주 맛있었어요",
        "서울의 인구는 약 천만 명이고 수도권에는 그보다 훨씬 많은 사람이 살아요",
        "서울의 인구는 약 천만 명이고 수도권에는 그보다 훨씬 많은 사람이 삽니다",
    ] * 2
    frame = pl.DataFrame({"sample_id": [f"t:{i}" for i in range(len(train))], "content": train})
    ctx = StageContext(eval_texts=evals, eval_ids=["eval:0", "eval:1"])
    out = decontaminate.run(frame, DecontaminateSettings(threshold=0.6), ctx).decisions
    assert reasons(out) == {f"t:{i}": "contaminated:eval" for i in (1, 2, 4, 5)}
    assert set(out["ref_sample_id"]) == {"eval:0"}
    assert out.filter(pl.col("sample_id") == "t:2")["score"].item() == 1.0
    assert decontaminate.run(frame, DecontaminateSettings(), StageContext()).decisions.height == 0
