"""Persona (label) accuracy: nearest-centroid over embeddings, on hand-made sets with known answers."""

from __future__ import annotations

import numpy as np
import pytest

from tunelab.evaluate.persona import label_centroids, label_hits, predict_labels

EGEN = [
    "괜찮아요, 천천히 해도 돼요. 마음이 많이 힘들었겠어요.",
    "오늘 하루도 정말 수고 많았어요. 따뜻한 차 한 잔 하면서 쉬어요.",
    "속상했겠다… 네 마음 충분히 이해해. 울고 싶으면 울어도 돼.",
    "너무 걱정하지 마요, 당신은 이미 충분히 잘하고 있어요.",
    "그 얘기 들으니까 나도 마음이 아프다. 옆에 있어 줄게.",
    "힘들 땐 기대도 괜찮아요. 언제든 이야기 들어줄게요.",
]
TETO = [
    "그냥 해. 고민할 시간에 움직여라.",
    "핑계 대지 마. 결과로 증명해.",
    "운동 가라. 땀 흘리면 잡생각 없어진다.",
    "징징대지 말고 계획 세워서 바로 실행해.",
    "약한 소리 하지 마. 이기려면 버텨야지.",
    "돈 모으고 싶으면 오늘부터 지출 줄여. 간단하다.",
]


def test_centroid_math_on_hand_vectors() -> None:
    vectors = np.array([[1, 0], [0.8, 0.6], [0, 1], [0.6, 0.8]], dtype=np.float32)
    names, centroids = label_centroids(vectors, ["a", "a", "b", "b"])
    assert names == ["a", "b"]
    np.testing.assert_allclose(np.linalg.norm(centroids, axis=1), 1.0, rtol=1e-6)
    np.testing.assert_allclose(centroids[0], np.array([0.9, 0.3]) / np.linalg.norm([0.9, 0.3]), rtol=1e-6)
    assert predict_labels(names, centroids, np.array([[0.95, 0.31], [0.2, 0.98]], dtype=np.float32)) == [
        "a",
        "b",
    ]
    with pytest.raises(ValueError, match="at least two labels"):
        label_centroids(vectors, ["a"] * 4)


def test_accuracy_on_hand_labelled_korean_predictions() -> None:
    predictions = [
        "많이 지쳤겠어요. 오늘은 푹 쉬어도 괜찮아요.",  # egen by hand
        "네 마음 알아. 천천히 괜찮아질 거야.",  # egen
        "변명은 필요 없다. 당장 시작해.",  # teto
        "헬스장 가서 무게 쳐라. 답 나온다.",  # teto
        "울어도 돼요, 제가 곁에 있을게요.",  # egen, but the prompt asked for teto
        "계획 짜고 밀어붙여. 끝.",  # teto, but the prompt asked for egen
        "아무 라벨 없는 행",  # no expected label: not counted
    ]
    expected = ["egen", "egen", "teto", "teto", "teto", "egen", None]
    hits, predicted = label_hits(
        EGEN + TETO, ["egen"] * 6 + ["teto"] * 6, predictions, expected, "use-v3", None
    )
    assert predicted[:6] == ["egen", "egen", "teto", "teto", "egen", "teto"]
    assert hits[:6] == [1.0, 1.0, 1.0, 1.0, 0.0, 0.0] and hits[6] is None
    counted = [h for h in hits if h is not None]
    assert sum(counted) / len(counted) == pytest.approx(4 / 6)


def test_persona_centroids_come_from_a_chat_curations_assistant_turns(tmp_path) -> None:
    import polars as pl

    from tunelab.evaluate.runner import persona_source
    from tunelab.workspace import Workspace

    ws = Workspace(tmp_path / "ws")
    split = ws.curation_split("chat-cur", "train")
    split.parent.mkdir(parents=True)
    turn = pl.Struct({"role": pl.String, "content": pl.String})
    pl.DataFrame(
        {
            "sample_id": ["c:0", "c:1"],
            "label": ["egen", "teto"],
            "messages": [
                [{"role": "user", "content": "안녕"}, {"role": "assistant", "content": "첫 답"},
                 {"role": "user", "content": "또"}, {"role": "assistant", "content": "다정한 마지막 답이에요"}],
                [{"role": "user", "content": "뭐해"}, {"role": "assistant", "content": "할 일 해."}],
            ],
        },
        schema={"sample_id": pl.String, "label": pl.String, "messages": pl.List(turn)},
    ).write_parquet(split)  # fmt: skip
    assert persona_source(ws, "chat-cur") == (["다정한 마지막 답이에요", "할 일 해."], ["egen", "teto"])
