"""`tunelab raft build`: RAFT rows from a Korean SQuAD-style file, the RAFT release format read directly, a
split that keeps every golden document on one side, and decontamination that compares documents."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import polars as pl
import pytest

os.environ.setdefault("OMP_NUM_THREADS", "1")

from tunelab.curate.common import StageContext  # noqa: E402
from tunelab.curate.config import DecontaminateSettings, SplitSettings  # noqa: E402
from tunelab.curate.documents import golden_documents  # noqa: E402
from tunelab.errors import UserError  # noqa: E402
from tunelab.raft import build  # noqa: E402
from tunelab.records.config import DatasetConfig  # noqa: E402
from tunelab.records.loader import load_dataset_records  # noqa: E402

# (title, paragraph, [(question, answer)]): every answer is in its paragraph, in one sentence
PARAGRAPHS = [
    ("한글", "한글은 세종이 1443년에 창제하였다. 처음 이름은 훈민정음이었다. 한글날은 10월 9일이다.",
     [("한글을 만든 임금은?", "세종"), ("한글날은 언제인가?", "10월 9일")]),
    ("제주", "제주도는 가장 큰 섬이다. 한라산의 높이는 1,947미터이다. 제주도는 삼다도라고도 불린다.",
     [("남한에서 가장 높은 산은?", "한라산"), ("제주도의 다른 이름은?", "삼다도")]),
    ("경복궁", "경복궁은 1395년에 지어졌다. 경복궁의 정문은 광화문이다. 고종 때 흥선대원군이 다시 지었다.",
     [("경복궁의 정문은?", "광화문"), ("경복궁이 지어진 해는?", "1395년")]),
    ("부산", "부산은 대한민국 최대의 항구 도시이다. 부산국제영화제는 1996년에 처음 열렸다.",
     [("최대의 항구 도시는?", "부산"), ("부산국제영화제가 처음 열린 해는?", "1996년")]),
    ("한강", "한강은 서울을 가로질러 서해로 흐른다. 북한강과 남한강이 만나는 곳은 두물머리이다.",
     [("한강은 어느 바다로 흐르는가?", "서해"), ("두 강이 만나는 곳은?", "두물머리")]),
    ("백두산", "백두산은 한반도에서 가장 높은 산이다. 백두산 꼭대기에는 천지가 있다. 높이는 2,744미터이다.",
     [("백두산 꼭대기의 호수는?", "천지"), ("백두산의 높이는?", "2,744미터")]),
    ("거북선", "거북선은 이순신 장군이 임진왜란 때 쓴 배이다. 뱃머리에는 용머리를 달았다.",
     [("거북선으로 싸운 장군은?", "이순신"), ("거북선 뱃머리에 단 것은?", "용머리")]),
    ("석굴암", "석굴암은 경주 토함산에 있다. 김대성이 751년에 짓기 시작하였다. 불국사와 함께 세계유산이다.",
     [("석굴암이 있는 산은?", "토함산"), ("석굴암을 짓기 시작한 사람은?", "김대성")]),
]  # fmt: skip


def squad_file(path: Path, unanswerable: bool = True) -> Path:
    data = []
    n = 0
    for title, context, qas in PARAGRAPHS:
        items = []
        for question, answer in qas:
            n += 1
            start = context.index(answer)
            items.append(
                {"id": f"q{n}", "question": question, "answers": [{"text": answer, "answer_start": start}]}
            )
        data.append({"title": title, "paragraphs": [{"context": context, "qas": items}]})
    if unanswerable:  # KorQuAD 2 / SQuAD 2 style: no answer, skipped and counted
        data[0]["paragraphs"][0]["qas"].append(
            {"id": "x", "question": "없는 질문?", "answers": [], "is_impossible": True}
        )
    path.write_text(json.dumps({"version": "1", "data": data}, ensure_ascii=False), encoding="utf-8")
    return path


@pytest.fixture
def qa(tmp_path: Path) -> build.ReadResult:
    return build.read_qa(squad_file(tmp_path / "korquad.json"))


def test_reads_squad_questions_and_counts_the_unanswerable(qa: build.ReadResult) -> None:
    assert len(qa.qas) == 16 and qa.skipped == {"unanswerable (no answer)": 1}
    first = qa.qas[0]
    assert (first.question, first.answer, first.answer_start) == ("한글을 만든 임금은?", "세종", 4)
    assert first.document == PARAGRAPHS[0][1]


def test_rows_are_seeded_hold_k_distractors_and_never_the_golden_as_one(qa: build.ReadResult) -> None:
    settings = build.BuildSettings(k=3, p_golden=0.75, seed=7, cot=True)
    rows = build.build_rows(qa.qas, settings).rows
    assert rows == build.build_rows(qa.qas, build.BuildSettings(k=3, p_golden=0.75, seed=7, cot=True)).rows
    other = build.build_rows(qa.qas, build.BuildSettings(k=3, p_golden=0.75, seed=8, cot=True)).rows
    assert [r["context"] for r in other] != [r["context"] for r in rows]  # the seed decides the draw
    assert sum(r["golden_in_context"] for r in rows) == 12  # exactly round(0.75 * 16)
    orders = set()
    for row, item in zip(rows, qa.qas, strict=True):
        golden = item.document
        assert row["oracle_context"] == golden
        assert len(row["context"]) == 4  # golden + k, or k + 1 distractors
        assert len(set(row["context"])) == 4  # no document twice
        assert row["context"].count(golden) == (1 if row["golden_in_context"] else 0)
        if row["golden_in_context"]:
            orders.add(row["context"].index(golden))
        # cot: the golden sentence holding the answer, quoted, then the answer
        quote = row["cot"].split("##begin_quote##")[1].split("##end_quote##")[0]
        assert item.answer in quote and quote in golden
        assert row["cot"].endswith(f"<ANSWER>: {item.answer}")
    assert len(orders) > 1  # shuffled: the golden document is not always in one place


def test_hard_distractors_share_terms_with_the_golden_document(tmp_path: Path) -> None:
    # two documents about 세종 and two unrelated ones: the hard neighbour of a 세종 document is the other one
    docs = [
        "세종대왕은 한글을 창제하였다. 세종대왕은 집현전을 두었다.",
        "세종대왕의 업적으로 측우기와 한글 창제가 꼽힌다.",
        "고양이는 잠을 많이 잔다.",
        "비빔밥은 밥에 나물을 얹어 비벼 먹는다.",
    ]
    qas = [build.QA(f"q{i}", "질문?", doc.split()[0], doc) for i, doc in enumerate(docs)]
    near = build.nearest_documents(docs, 2)
    assert near[0][0] == 1 and near[1][0] == 0
    rows = build.build_rows(qas, build.BuildSettings(k=1, p_golden=1.0, seed=0)).rows
    assert docs[1] in rows[0]["context"] and docs[0] in rows[1]["context"]
    randomly = build.build_rows(
        qas, build.BuildSettings(k=1, p_golden=1.0, seed=0, distractors="random")
    ).rows
    assert all(len(r["context"]) == 2 for r in randomly)


def test_a_document_with_the_golden_text_is_never_a_distractor() -> None:
    same = "서울은 대한민국의 수도이다."
    qas = [
        build.QA("a", "수도는?", "서울", same),
        build.QA(
            "b", "수도는 어디?", "서울", "  서울은 대한민국의   수도이다. "
        ),  # the same text, other spacing
        build.QA("c", "고양이는?", "잠", "고양이는 잠을 잔다."),
        build.QA("d", "밥은?", "나물", "비빔밥에는 나물이 들어간다."),
    ]
    rows = build.build_rows(qas, build.BuildSettings(k=2, p_golden=1.0, seed=3)).rows
    for row in rows[:2]:
        keys = [" ".join(doc.split()) for doc in row["context"]]
        assert keys.count(" ".join(same.split())) == 1


def curated(rows: list[dict[str, Any]], tmp_path: Path, name: str = "r") -> pl.DataFrame:
    path = tmp_path / f"{name}.jsonl"
    build.write_rows(rows, path)
    return load_dataset_records(DatasetConfig(path=path, name=name, kind="raft")).frame


def test_split_keeps_every_golden_document_on_one_side(qa: build.ReadResult, tmp_path: Path) -> None:
    from tunelab.curate import split

    rows = build.build_rows(qa.qas, build.BuildSettings(k=2, p_golden=0.5, seed=0)).rows
    frame = curated(rows, tmp_path)
    assert frame["golden"].null_count() == 0  # oracle_context read back as the golden field

    def sides(settings: SplitSettings) -> dict[str, set[str]]:
        ctx = StageContext(kind="raft")
        out = split.run(frame, settings, ctx).frame
        found: dict[str, set[str]] = {}
        for doc, side in zip(golden_documents(out), out["split"], strict=True):
            found.setdefault(doc, set()).add(side)
        return found

    for seed in range(5):
        grouped = sides(SplitSettings(val_ratio=0.25, seed=seed))  # group_by unset: document for raft
        assert all(len(s) == 1 for s in grouped.values()) and any(s == {"val"} for s in grouped.values())
    # without grouping, the same split leaks documents (what group_by prevents)
    leaks = [sum(len(s) > 1 for s in sides(SplitSettings(val_ratio=0.25, seed=seed, group_by="none")).values())
             for seed in range(5)]  # fmt: skip
    assert sum(leaks) > 0
    with pytest.raises(UserError, match="group_by: document"):
        split.run(frame, SplitSettings(group_by="document"), StageContext(kind="sft"))


def test_golden_is_the_document_holding_the_answer_when_no_oracle_is_given() -> None:
    frame = pl.DataFrame(
        {"answer": ["세종", "없음"], "context": [["고양이는 잔다.", "세종이 만들었다."], ["무관한 글."]]}
    )
    assert golden_documents(frame) == ["세종이 만들었다.", None]


def test_the_raft_release_format_loads(tmp_path: Path) -> None:
    docs = ["서울은 수도이다.", "부산은 항구 도시이다.", "대구는 분지이다."]
    release = {
        "id": "seed_task_0",
        "type": "general",
        "question": "수도는 어디인가?",
        "context": {"title": [["placeholder_title"] * 3], "sentences": [docs]},
        "oracle_context": docs[0],
        "cot_answer": "##Reason: ##begin_quote##서울은 수도이다.##end_quote## <ANSWER>: 서울",
        "instruction": "<DOCUMENT>서울은 수도이다.</DOCUMENT>\n<DOCUMENT>부산은 항구 도시이다.</DOCUMENT>\n수도는 어디인가?",
    }
    hotpot = {
        "question": "어느 도시?",
        "answer": "부산",
        "context": {
            "title": ["서울", "부산"],
            "sentences": [["서울은 수도이다.", "크다."], ["부산은 항구이다."]],
        },
    }
    path = tmp_path / "release.jsonl"
    path.write_text("\n".join(json.dumps(r, ensure_ascii=False) for r in (release, hotpot)), encoding="utf-8")
    result = load_dataset_records(DatasetConfig(path=path, name="rel", kind="raft"))
    assert result.quarantine.height == 0
    first, second = result.frame.to_dicts()
    assert first["context"] == docs and first["answer"] == "서울" and first["golden"] == docs[0]
    assert first["cot"].endswith("<ANSWER>: 서울") and first["instruction"] is None  # the rendered prompt
    assert second["context"] == ["서울은 수도이다. 크다.", "부산은 항구이다."] and second["answer"] == "부산"


def test_decontamination_drops_training_rows_about_an_eval_document(
    qa: build.ReadResult, tmp_path: Path
) -> None:
    from tunelab.curate import decontaminate
    from tunelab.curate.common import with_content

    rows = build.build_rows(qa.qas, build.BuildSettings(k=2, p_golden=1.0, seed=0)).rows
    train = with_content(curated(rows[1:], tmp_path, "train"), "raft")
    # the eval row asks a new question about paragraph 0, which the first training row is about
    eval_row = {**rows[0], "question": "훈민정음은 무엇의 처음 이름인가?", "answer": "한글"}
    evals = with_content(curated([eval_row], tmp_path, "eval"), "raft")
    texts, documents, ids = decontaminate.eval_view(evals, "raft", "raft")
    assert documents == [PARAGRAPHS[0][1]]
    ctx = StageContext(kind="raft", eval_texts=texts, eval_prompts=documents, eval_ids=ids)
    out = decontaminate.run(train, DecontaminateSettings(), ctx)
    dropped = out.decisions.filter(~pl.col("kept"))
    assert dropped["sample_id"].to_list() == [train["sample_id"][0]]
    assert dropped["evidence"][0].startswith("golden document Jaccard")


def test_pubmedqa_becomes_raft_rows_with_a_reason_cot(shared_data: Path, tmp_path: Path) -> None:
    read = build.read_qa(shared_data / "pubmedqa__pubmedqa" / "ori_pqal.json")
    assert len(read.qas) == 1000 and {q.answer for q in read.qas} == {"yes", "no", "maybe"}
    result = build.build_rows(read.qas[:300], build.BuildSettings(k=2, cot=True, seed=0))
    row = result.rows[0]
    assert len(row["context"]) == 3 and row["cot"].startswith("##Reason: ")
    assert row["cot"].endswith(f"<ANSWER>: {read.qas[0].answer}")
    assert result.stats["distractors_from_bm25_neighbours"] == result.stats["distractors_drawn"]


def test_the_command_writes_rows_and_reports_sizes(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from tunelab.cli import main

    source = squad_file(tmp_path / "korquad.json")
    out = tmp_path / "raft.jsonl"
    with pytest.raises(SystemExit) as exit_info:
        main(["raft", "build", str(source), "--out", str(out), "--k", "2", "--cot", "-w", str(tmp_path / "ws"),
              "--format", "json"])  # fmt: skip
    assert exit_info.value.code == 0
    report = json.loads(capsys.readouterr().out)
    assert report["rows"] == 16 and report["skipped"] == {"unanswerable (no answer)": 1}
    sizes = report["sizes"]["characters"]
    assert 0 < sizes["p50"] <= sizes["p95"] <= sizes["max"]
    assert len(out.read_text(encoding="utf-8").splitlines()) == 16
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"title": "no questions here"}\n', encoding="utf-8")
    with pytest.raises(SystemExit) as exit_info:
        main(["raft", "build", str(bad), "--out", str(out)])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "no answerable question" in err and "\n" not in err


def test_curating_a_squad_file_as_is_says_to_build_raft_rows(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from tunelab.cli import main

    source = squad_file(tmp_path / "korquad.json")
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(
        f"dataset: {{path: {source.name}, name: kq, kind: raft}}\ncurate: {{stages: [schema, split]}}\n",
        encoding="utf-8",
    )
    with pytest.raises(SystemExit) as exit_info:
        main(["curate", str(recipe), "-w", str(tmp_path / "ws")])
    assert exit_info.value.code != 0
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith("error: kq") and "SQuAD/KorQuAD JSON" in err
    assert "tunelab raft build korquad.json --out raft.jsonl" in err
