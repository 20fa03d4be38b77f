"""The stage contract, for every registered stage, on generated data.

Each stage alone: `run(frame, settings, ctx) -> StageOutput(frame, decisions)` where `decisions` has
exactly DECISION_SCHEMA, names only input rows (or new '#dup' copies of input rows), and `frame` holds
every input row that was not dropped and none that was. The whole pipeline over random stage subsets:
each read row ends with one outcome (a drop, a terminal decision, or the quarantine), so
kept + dropped + quarantined == read.

Frames come from the real loader (a small JSONL written per example), so they carry the real columns:
rows with duplicates, near-duplicates, empty and blank strings, nulls, wrong types, labels and none.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterator
from pathlib import Path

import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tunelab.curate import registry
from tunelab.curate.common import DECISION_SCHEMA, StageContext, with_content
from tunelab.curate.config import (
    STAGE_NAMES,
    BalanceSettings,
    CurateConfig,
    DecontaminateSettings,
    ExactSettings,
    LanguageSettings,
    LengthSettings,
    MinhashSettings,
    NormalizeSettings,
    PairsSettings,
    PiiSettings,
    QualitySettings,
    SchemaSettings,
    SemanticSettings,
    SplitSettings,
)
from tunelab.curate.pipeline import curate_dataset
from tunelab.curate.result import CurationResult
from tunelab.errors import UserError
from tunelab.records.config import DatasetConfig
from tunelab.records.loader import load_dataset_records

WORDS = [
    "안녕하세요",
    "오늘",
    "날씨가",
    "정말",
    "좋네요",
    "데이터",
    "정제를",
    "합니다",
    "hello",
    "world",
    "ＡＢＣ",
    "010-1234-5678",  # language and pii act on these
    "kim@naver.com",
    "これは日本語",
    "아아아아아아아아아",  # quality acts on these
    "<|endoftext|>",
]
TEXT = st.lists(st.sampled_from(WORDS), max_size=14).map(" ".join)
VALUE = st.one_of(
    TEXT,
    TEXT,
    TEXT,
    st.just(""),
    st.just("  \t "),
    st.none(),
    st.integers(0, 9),
    st.just("한\u1100\u1161 글"),
)
ROW = st.fixed_dictionaries(
    {"prompt": VALUE, "response": VALUE},
    optional={
        "system": st.one_of(TEXT, st.none()),
        "label": st.one_of(st.sampled_from(["a", "a", "b", "c", "b "]), st.none(), st.just("")),
    },
)
BROKEN = st.sampled_from(['{"prompt": "broken', "[1, 2]", "not json", '"a string"'])


@st.composite
def jsonl_lines(draw: st.DrawFn) -> list[str]:
    """Rows, exact copies of some, near-copies of some (a word added), and a few malformed lines."""
    rows = draw(st.lists(ROW, min_size=1, max_size=24))
    copies = draw(st.lists(st.integers(0, len(rows) - 1), max_size=6))
    near = draw(st.lists(st.integers(0, len(rows) - 1), max_size=6))
    extra = [dict(rows[i]) for i in copies]
    for i in near:
        changed = dict(rows[i])
        changed["response"] = f"{changed.get('response') or ''} 끝"
        extra.append(changed)
    lines = [json.dumps(r, ensure_ascii=False) for r in rows + extra]
    for broken in draw(st.lists(BROKEN, max_size=2)):
        lines.insert(draw(st.integers(0, len(lines))), broken)
    return lines


_COUNTER = itertools.count()


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("stage-contract")


def write_lines(folder: Path, lines: list[str]) -> Path:
    path = folder / f"rows{next(_COUNTER)}.jsonl"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def load(folder: Path, lines: list[str]) -> pl.DataFrame:
    return load_dataset_records(DatasetConfig(path=write_lines(folder, lines), name="g", kind="sft")).frame


# settings that make each stage act on small generated frames (defaults would drop little)
SETTINGS = {
    "schema": st.sampled_from([SchemaSettings(), SchemaSettings(require=["label"])]),
    "normalize": st.sampled_from(
        [NormalizeSettings(), NormalizeSettings(unicode="NFKC", collapse_whitespace=False)]
    ),
    "language": st.sampled_from(
        [LanguageSettings(), LanguageSettings(allow=["ko"], min_hangul_ratio=0.6, min_letters=1)]
    ),
    "pii": st.sampled_from([PiiSettings(), PiiSettings(action="drop", kinds=["phone", "email"])]),
    "pairs": st.just(PairsSettings()),  # kind sft here: it skips itself (tests/test_signals_pairs.py for dpo)
    "quality": st.sampled_from([QualitySettings(), QualitySettings(flag_only=["repetition"], ngram=3)]),
    "length": st.just(LengthSettings(min_chars={"response": 3}, max_chars={"prompt": 40})),
    "exact": st.sampled_from([ExactSettings(), ExactSettings(keep="longest")]),
    "minhash": st.sampled_from([MinhashSettings(ngram=3, threshold=0.5), MinhashSettings(keep="longest")]),
    "semantic": st.just(SemanticSettings(threshold=0.8)),
    "decontaminate": st.just(DecontaminateSettings(ngram=3, threshold=0.5)),
    "balance": st.sampled_from(
        [
            BalanceSettings(max_per_label=2),
            BalanceSettings(max_per_label=2, oversample=True),
            BalanceSettings(ratios={"a": 0.5, "b": 0.5}, oversample=True),
            BalanceSettings(ratios={"a": 0.7, "c": 0.3}),
        ]
    ),
    "split": st.sampled_from([SplitSettings(val_ratio=0.3), SplitSettings(val_ratio=0.5, stratify=None)]),
}


def stage_context(frame: pl.DataFrame, cache_dir: Path | None = None) -> StageContext:
    # decontamination compares against the content of a few of the rows themselves and one stranger
    eval_texts = frame["content"].head(2).to_list() + ["평가 전용 문장 하나 전혀 다른 내용"]
    return StageContext(
        kind="sft",
        dataset_name="g",
        cache_dir=cache_dir,
        eval_texts=eval_texts,
        eval_ids=[f"eval:{i}" for i in range(len(eval_texts))],
    )


def check_contract(
    name: str, frame: pl.DataFrame, stage_settings: object, cache_dir: Path | None = None
) -> None:
    stage = registry.stage(name)
    frame = with_content(frame, "sft")  # what the pipeline hands a stage that compares content
    try:
        out = stage.run(frame, stage_settings, stage_context(frame, cache_dir))
    except UserError as exc:
        # settings that do not fit the data (balance ratios naming a label the rows lack) are refused in
        # one line naming the stage's recipe key: that, too, keeps the contract
        assert str(exc).startswith(f"curate.{name}.") and "\n" not in str(exc), str(exc)
        return
    decisions = out.decisions
    assert dict(decisions.schema) == DECISION_SCHEMA, name
    ids_in = set(frame["sample_id"])
    dropped = decisions.filter(~pl.col("kept"))
    assert set(dropped["sample_id"]) <= ids_in, name
    assert dropped["sample_id"].n_unique() == dropped.height, f"{name}: a row dropped twice"
    assert dropped["reason"].null_count() == 0 and (dropped["reason"].str.len_chars() > 0).all(), name
    for sample_id, reason, ref in decisions.select("sample_id", "reason", "ref_sample_id").iter_rows():
        if sample_id not in ids_in:  # only an oversampled copy of an input row may be new
            assert reason == "oversampled" and ref in ids_in and sample_id.startswith(f"{ref}#dup"), (
                name,
                sample_id,
            )
    assert set(decisions["stage"]) <= {name, "final"}, name
    ids_out = out.frame["sample_id"]
    assert ids_out.n_unique() == out.frame.height, f"{name}: a row twice in the output frame"
    assert not set(ids_out) & set(dropped["sample_id"]), f"{name}: a dropped row goes on"
    assert set(ids_out) >= ids_in - set(dropped["sample_id"]), f"{name}: a kept row went missing"
    new_ids = set(ids_out) - ids_in
    assert new_ids == set(decisions.filter(pl.col("reason") == "oversampled")["sample_id"]), name
    if "final" in set(decisions["stage"]):  # a terminal stage: one final decision per row it passes on
        finals = decisions.filter(pl.col("stage") == "final")
        assert sorted(finals["sample_id"]) == sorted(ids_out) and "split" in out.frame.columns


def test_every_stage_is_registered_with_its_settings_model() -> None:
    assert tuple(registry.STAGES) == STAGE_NAMES
    curate = CurateConfig()
    for name, stage in registry.STAGES.items():
        assert isinstance(curate.settings_for(name), stage.settings), name
    assert set(SETTINGS) == set(registry.STAGES), "give a new stage a settings strategy here"


@pytest.mark.parametrize("name", [n for n in STAGE_NAMES if n != "semantic"])
def test_stage_keeps_the_contract(name: str, folder: Path) -> None:
    @settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(lines=jsonl_lines(), stage_settings=SETTINGS[name])
    def check(lines: list[str], stage_settings: object) -> None:
        check_contract(name, load(folder, lines), stage_settings)

    check()


@settings(max_examples=4, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(lines=jsonl_lines(), stage_settings=SETTINGS["semantic"])
def test_semantic_stage_keeps_the_contract(
    folder: Path, lines: list[str], stage_settings: SemanticSettings
) -> None:
    check_contract("semantic", load(folder, lines), stage_settings, cache_dir=folder / "embeddings")


def stage_subsets() -> st.SearchStrategy[list[str]]:
    without_semantic = [n for n in STAGE_NAMES if n != "semantic"]  # the per-stage test covers it
    return st.sets(st.sampled_from(without_semantic)).map(
        lambda chosen: [n for n in STAGE_NAMES if n in chosen]
    )


def outcomes(result: CurationResult) -> Iterator[tuple[str, str]]:
    """(sample_id, 'dropped' | 'final') for every decision that ends a source row (copies left out)."""
    source = ~pl.col("sample_id").str.contains("#dup", literal=True)
    for sample_id in result.decisions.filter(~pl.col("kept") & source)["sample_id"]:
        yield sample_id, "dropped"
    for sample_id in result.decisions.filter((pl.col("stage") == "final") & source)["sample_id"]:
        yield sample_id, "final"


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    lines=jsonl_lines(),
    stages=stage_subsets(),
    balance=SETTINGS["balance"],
    split=SETTINGS["split"],
)
def test_pipeline_gives_every_read_row_one_outcome(
    folder: Path, lines: list[str], stages: list[str], balance: BalanceSettings, split: SplitSettings
) -> None:
    path = write_lines(folder, lines)
    curate = CurateConfig(
        stages=stages,
        length=LengthSettings(min_chars={"response": 3}),
        minhash=MinhashSettings(ngram=3, threshold=0.5),
        decontaminate=DecontaminateSettings(ngram=3, threshold=0.5),
        balance=balance,
        split=split,
    )
    assert curate.stages[0] == "schema"
    dataset = DatasetConfig(path=path, name="g", kind="sft")
    loaded = load_dataset_records(dataset)
    try:
        result = curate_dataset(
            dataset,
            curate,
            folder / "ws",
            eval_texts=["오늘 날씨가 정말 좋네요"],
            write=False,
            show_progress=False,
        )
    except UserError as exc:  # balance ratios naming a label these rows lack: one line, no run
        assert str(exc).startswith("curate.balance.ratios: label ") and "\n" not in str(exc), str(exc)
        return
    assert result.kept + result.dropped + result.quarantined == result.read == len(lines)
    assert dict(result.decisions.schema) == DECISION_SCHEMA
    seen = list(outcomes(result))
    ids = [sample_id for sample_id, _ in seen]
    assert len(ids) == len(set(ids)), "a row with two outcomes"
    assert set(ids) == set(loaded.frame["sample_id"]), "a loaded row without an outcome"
    finals = [sample_id for sample_id, outcome in seen if outcome == "final"]
    assert len(finals) == result.kept
    assert result.quarantine.height == len(lines) - loaded.frame.height
    kept = pl.concat([result.train, result.val])
    assert kept.height == result.kept + result.oversampled
    assert set(kept["sample_id"]) >= set(finals)
    reported = [s["stage"] for s in result.report["stages"]]
    assert reported == curate.stages
