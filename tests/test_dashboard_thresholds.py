"""The Thresholds page over a real curation with planted near-duplicates at known similarities: the bands hold
the right pairs, marks are stored, each band's precision (with its Wilson interval and n) follows the marks,
and `tunelab calibrate --marks` turns the marks into the expected threshold.

Similarities are checked against the reference implementation (the one-string dedup key and Python sets of
5-grams), not the vectorised code the page and the stage use.
"""

from __future__ import annotations

import html
import json
import math
import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from scipy.stats import binomtest
from streamlit.testing.v1 import AppTest

from tunelab.cli import main
from tunelab.curate import calibrate as cal
from tunelab.curate.config import CurateConfig, DedupKeySettings, MinhashSettings
from tunelab.curate.dedup_key import dedup_key
from tunelab.curate.pipeline import curate_dataset
from tunelab.errors import UserError
from tunelab.records.config import DatasetConfig
from tunelab.textnorm import char_shingles, exact_jaccard
from tunelab.warehouse import store

PAGE = Path(__file__).resolve().parents[1] / "tunelab" / "dashboards" / "views" / "thresholds.py"
KEY = DedupKeySettings()
REVIEWER = "검토자-kim"
# every row ends with markup that would fetch from 127.0.0.1 if it were rendered rather than shown as text
HOSTILE = ' <img src="http://127.0.0.1:9/x.png"> ![y](http://127.0.0.1:9/y.png)'

# (name, lowest, highest similarity) of each planted copy: four in 0.7-0.8 for the 3-of-4 precision check
PLANTED = [
    ("b1", 0.9, 1.0),
    ("b2", 0.7, 0.8),
    ("b3", 0.7, 0.8),
    ("b4", 0.7, 0.8),
    ("b5", 0.7, 0.8),
    ("b6", 0.8, 0.9),
    ("b7", 0.6, 0.7),
    ("b8", 0.5, 0.6),
    ("b9", 0.42, 0.5),
]


def reference_jaccard(a: str, b: str) -> float:
    return exact_jaccard(char_shingles(dedup_key(a, KEY), 5), char_shingles(dedup_key(b, KEY), 5))


def content(row: dict[str, str]) -> str:
    return row["prompt"] + "\n" + row["response"]


def corpus() -> tuple[list[dict[str, str]], dict[str, tuple[int, int, float]]]:
    """Unrelated base rows, and after them one edited copy of each (whole words replaced until the copy's
    Jaccard with its base falls in the planted band) plus a copy of b1 that differs only in case, spacing and
    punctuation. Returns the rows and name -> (copy row, base row, reference Jaccard)."""
    rng = np.random.default_rng(3)
    syllables = [chr(0xAC00 + int(i)) for i in rng.choice(11172, 400, replace=False)]
    vocab = ["".join(rng.choice(syllables, int(rng.integers(2, 4)))) for _ in range(3000)]

    def words() -> list[str]:
        return [vocab[int(i)] for i in rng.integers(0, len(vocab), 40)]

    bases = {name: words() for name, _, _ in PLANTED} | {"lone": words()}
    rows = [{"prompt": " ".join(w[:10]), "response": " ".join(w[10:]) + HOSTILE} for w in bases.values()]
    index = {name: i for i, name in enumerate(bases)}
    planted: dict[str, tuple[int, int, float]] = {}
    for name, low, high in PLANTED:
        base = bases[name]
        for k in range(1, 20):
            copy = list(base)
            for p in range(k):
                copy[(p * 7 + 3) % 40] = vocab[int(rng.integers(0, len(vocab)))]
            row = {"prompt": " ".join(copy[:10]), "response": " ".join(copy[10:]) + HOSTILE}
            j = reference_jaccard(content(rows[index[name]]), content(row))
            if j < high:
                break
        assert low <= j < high, (name, j)  # the fixture itself is right before anything is tested
        planted[name] = (len(rows), index[name], j)
        rows.append(row)
    base = rows[index["b1"]]
    noisy = {"prompt": "  " + base["prompt"].replace(" ", "  ") + "!!", "response": base["response"].upper()}
    planted["b1-noise"] = (len(rows), index["b1"], reference_jaccard(content(base), content(noisy)))
    rows.append(noisy)
    return rows, planted


@pytest.fixture(scope="module")
def curated(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, str, dict]]:
    root = tmp_path_factory.mktemp("thresholds")
    rows, planted = corpus()
    data = root / "pairs.jsonl"
    data.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    curate = CurateConfig.model_validate({"stages": ["schema", "normalize", "exact", "minhash", "split"]})
    result = curate_dataset(
        DatasetConfig(path=data, name="planted", kind="sft"), curate, root / "ws", show_progress=False
    )
    db = root / "ws" / "tunelab.duckdb"
    saved = {k: os.environ.get(k) for k in ("TUNELAB_WAREHOUSE", "TUNELAB_REVIEWER")}
    os.environ["TUNELAB_WAREHOUSE"] = str(db)
    os.environ["TUNELAB_REVIEWER"] = REVIEWER
    ids = {name: (f"planted:{c}", f"planted:{b}", j) for name, (c, b, j) in planted.items()}
    yield db, result.curation_id, ids
    for k, v in saved.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


def band_rows(at: AppTest) -> dict[str, dict]:
    # plain st.dataframe elements carry no key in AppTest: find the table by its columns
    table = next(d.value for d in at.dataframe if {"band", "near misses"} <= set(d.value.columns))
    return {row["band"]: row for row in table.to_dict("records")}


def test_bands_hold_the_planted_pairs_and_marks_give_precision(curated: tuple[Path, str, dict]) -> None:
    db, curation_id, planted = curated
    at = AppTest.from_file(str(PAGE), default_timeout=60).run()
    assert not at.exception, [e.value for e in at.exception]
    assert at.radio(key="stage").value == "minhash"
    bands = band_rows(at)
    # 0.4 .. 1.0 in steps of 0.1: the three under the threshold 0.7 are near misses, the rest the stage's drops
    assert list(bands) == ["0.40–0.50", "0.50–0.60", "0.60–0.70", "0.70–0.80", "0.80–0.90", "0.90–1.00"]
    found = {b: (r["dropped pairs"], r["near misses"]) for b, r in bands.items()}
    assert found == {
        "0.40–0.50": (0, 1), "0.50–0.60": (0, 1), "0.60–0.70": (0, 1),
        "0.70–0.80": (4, 0), "0.80–0.90": (1, 0), "0.90–1.00": (2, 0),
    }  # fmt: skip
    assert all(r["marked (n)"] == 0 for r in bands.values())

    # a near miss: the pair, its similarity (the reference Jaccard) and the character diff, as text
    at.selectbox(key="band").select("0.60–0.70").run()
    copy, base, j = planted["b7"]
    shown = html.unescape("\n".join(m.value for m in at.markdown))
    assert f"{base}** ⇄ **{copy}** · similarity {j:.3f} (stage)" in shown
    assert "under the threshold" in shown and "<mark>" in shown and "<del>" in shown
    # dataset text is text: the markup arrives as character references, never as a tag or a Markdown image
    raw = "\n".join(m.value for m in at.markdown)
    assert HOSTILE in shown and "<img" not in raw and "](" not in raw and "&#60;img src&#61;" in raw

    # the four pairs of 0.7-0.8 are the stage's drops; mark three duplicate and the least similar one not
    at.selectbox(key="band").select("0.70–0.80").run()
    four = sorted(("b2", "b3", "b4", "b5"), key=lambda name: planted[name][2])
    shown = html.unescape("\n".join(m.value for m in at.markdown))
    for name in four:
        copy, base, j = planted[name]
        assert f"{base}** ⇄ **{copy}** · similarity {j:.3f} (stage)" in shown
    assert "dropped by the stage" in shown
    for name in four:
        copy, base, _ = planted[name]
        verdict = "notdup" if name == four[0] else "dup"
        at.button(key=f"{verdict}|{curation_id}|minhash|{base}|{copy}").click().run()
        assert not at.exception, [e.value for e in at.exception]
    assert "Marked" in at.success[0].value

    marks = store.threshold_marks(db, curation_id, "minhash")
    assert marks.height == 4 and set(marks["reviewer"]) == {REVIEWER}
    by_pair = {(r["sample_id"], r["ref_sample_id"]): r for r in marks.to_dicts()}
    for name in four:
        copy, base, j = planted[name]
        mark = by_pair[(copy, base)]
        assert mark["is_duplicate"] is (name != four[0]) and mark["similarity"] == pytest.approx(j)

    row = band_rows(at)["0.70–0.80"]
    assert (row["marked (n)"], row["duplicates"]) == (4, 3) and row["precision"] == pytest.approx(0.75)
    wilson = binomtest(3, 4).proportion_ci(method="wilson")
    assert row["95% low"] == pytest.approx(wilson.low, abs=1e-5)
    assert row["95% high"] == pytest.approx(wilson.high, abs=1e-5)
    assert row["95% low"] < 0.75 < row["95% high"]
    # the same numbers, queryable
    view = store.query(db, "SELECT * FROM v_threshold_precision WHERE curation_id = $c", {"c": curation_id})
    assert view.select("band_low", "n", "duplicates").rows() == [(0.7, 4, 3)]

    # a pair marked again counts once, with its newest mark
    copy, base, j = planted[four[0]]
    store.add_threshold_mark(db, curation_id, "minhash", copy, base, j, True, reviewer="lee")
    row = store.threshold_precision(db, curation_id, "minhash").row(0, named=True)
    assert (row["n"], row["duplicates"], row["precision"]) == (4, 4, 1.0)
    store.add_threshold_mark(db, curation_id, "minhash", copy, base, j, False, reviewer="lee")


def test_calibrate_from_marks_finds_the_threshold(
    curated: tuple[Path, str, dict], capsys: pytest.CaptureFixture[str]
) -> None:
    """Marks over the whole range: everything from the b-pair just above the not-duplicate pair is a
    duplicate, so the chosen threshold is the 0.01 step just above that pair's Jaccard."""
    db, curation_id, planted = curated
    verdicts = {"b9": False, "b8": False, "b7": False, "b6": True, "b1": True, "b1-noise": True}
    for name, dup in verdicts.items():
        copy, base, j = planted[name]
        store.add_threshold_mark(db, curation_id, "minhash", copy, base, j, dup, reviewer="park")
    marked = store.threshold_marks(db, curation_id, "minhash")
    worst_dup_free = max(planted[n][2] for n, d in verdicts.items() if not d)
    not_dups = [r["similarity"] for r in marked.to_dicts() if not r["is_duplicate"]]
    highest_not = max([worst_dup_free, *not_dups])
    expected = math.floor(highest_not * 100 + 1) / 100  # the first 0.01 step above the highest non-duplicate

    with pytest.raises(SystemExit) as done:
        main(
            [
                "calibrate",
                "--marks",
                curation_id,
                "--stage",
                "minhash",
                "-w",
                str(db.parent),
                "--format",
                "json",
            ]
        )
    out = capsys.readouterr()
    assert done.value.code in (0, None), out.err
    result = json.loads(out.out)
    assert result["pairs"] == marked.height == 10 and result["positives"] == int(marked["is_duplicate"].sum())
    assert result["threshold"] == pytest.approx(expected) and result["precision"] == 1.0
    assert result["source"] == f"marks of {curation_id}"

    # the similarity recomputed from the samples' text is the one stored with each mark
    pairs = cal.pairs_from_marks(db, curation_id, "minhash")
    again = cal.jaccard_pairs(pairs.pairs.text_a, pairs.pairs.text_b, pairs.settings)
    assert again == pytest.approx(pairs.similarity)


def test_bad_marks_and_calibrate_inputs_are_one_line_errors(
    curated: tuple[Path, str, dict], capsys: pytest.CaptureFixture[str]
) -> None:
    db, curation_id, planted = curated
    copy, base, j = planted["b6"]
    for args, message in [
        (("semantic-ish", copy, base, j, True), "stage must be one of"),
        (("minhash", copy, "planted:999", j, True), "not both samples"),
        (("minhash", copy, copy, j, True), "two different sample ids"),
        (("minhash", copy, base, 1.5, True), "outside the minhash range"),
        (("minhash", copy, base, j, "yes"), "true or false"),
    ]:
        with pytest.raises(UserError, match=message):
            store.add_threshold_mark(db, curation_id, *args)
    for argv, message in [
        (["--marks", "nope", "--stage", "minhash"], "no such curation"),
        (["--marks", curation_id, "--stage", "semantic"], "no semantic pairs marked yet"),
        (["--stage", "minhash"], "a PAIRS file or --marks"),
    ]:
        with pytest.raises(SystemExit) as done:
            main(["calibrate", *argv, "-w", str(db.parent)])
        err = capsys.readouterr().err
        assert done.value.code == 2 and message in err and len(err.strip().splitlines()) == 1, err


def test_semantic_near_pairs_and_settings_from_the_recipe() -> None:
    # unit vectors at known cosines: row 1 is 0.8 from row 0, row 2 is 0.95 from row 0, row 3 is alone
    def unit(angle: float) -> np.ndarray:
        return np.array([math.cos(angle), math.sin(angle), 0.0], dtype=np.float32)

    vectors = np.stack([unit(0.0), unit(math.acos(0.8)), unit(-math.acos(0.95)), np.array([0, 0, 1.0])])
    pairs = cal.semantic_near_pairs(vectors.astype(np.float32), 0.7, 0.85)
    # row 1's nearest is row 0 (0.8); rows 0 and 2 are each other's nearest at 0.95, over the threshold
    assert pairs.select("i", "j").rows() == [(1, 0)]
    assert pairs["similarity"][0] == pytest.approx(0.8, abs=1e-6)
    # under 0.9, row 2's most similar row is row 1 (cosine 0.8 x 0.95 - 0.6 x 0.312 = 0.573), not row 0
    wider = cal.semantic_near_pairs(vectors.astype(np.float32), 0.5, 0.9)
    assert wider.select("i", "j").rows() == [(1, 0), (2, 1)]
    assert wider["similarity"][1] == pytest.approx(0.8 * 0.95 - 0.6 * math.sqrt(1 - 0.95**2), abs=1e-6)
    assert cal.band_low(np.array([0.7, 0.6999, 1.0, 0.85]), "minhash").tolist() == [0.7, 0.6, 0.9, 0.8]
    # the MinHash near misses of the planted corpus: the three copies under 0.7, at their reference Jaccard
    rows, planted = corpus()
    texts = [content(r) for r in rows]
    near, proposed = cal.minhash_near_pairs(texts, MinhashSettings(), 0.4)
    expected = sorted((planted[n][0], planted[n][1]) for n in ("b7", "b8", "b9"))
    assert near.select("i", "j").rows() == expected and proposed >= 3
    assert near["similarity"].to_list() == pytest.approx([planted[n][2] for n in ("b7", "b8", "b9")])
    capped, same = cal.minhash_near_pairs(texts, MinhashSettings(), 0.4, max_candidates=1)
    assert same == proposed and capped.height <= 1
    assert cal.band_low(np.array([0.85, 0.849]), "semantic").tolist() == [0.85, 0.8]
    # a curation stored before the dedup key compared the raw text: the page recomputes it that way
    old = cal.stage_settings(json.dumps({"curate": {"minhash": {"threshold": 0.6, "ngram": 5}}}), "minhash")
    assert isinstance(old, MinhashSettings) and old.threshold == 0.6 and old.key.is_identity()
    assert cal.stage_settings(None, "semantic").threshold == 0.85
    assert cal.wilson_interval(3, 4) == pytest.approx(tuple(binomtest(3, 4).proportion_ci(method="wilson")))
    frame = pl.DataFrame({"prompt": ["질문"], "response": ["답"]})
    assert cal.contents(frame, "sft") == ["질문\n답"]


def test_semantic_near_misses_on_request(tmp_path: Path, curated: tuple[Path, str, dict]) -> None:
    """A semantic curation: its drops are banded at once; the near misses (which need the embedder) come
    when asked for, each under the threshold, with the cosine the stage computes for that pair."""
    rows, _ = corpus()
    data = tmp_path / "rows.jsonl"
    data.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    curate = CurateConfig.model_validate(
        {"stages": ["schema", "semantic", "split"], "semantic": {"threshold": 0.9}}
    )
    result = curate_dataset(
        DatasetConfig(path=data, name="sem", kind="sft"), curate, tmp_path / "ws", show_progress=False
    )
    db = tmp_path / "ws" / "tunelab.duckdb"
    drops = store.query(db, "SELECT count(*) AS n FROM decisions WHERE stage = 'semantic' AND NOT kept")["n"][
        0
    ]
    previous = os.environ["TUNELAB_WAREHOUSE"]
    os.environ["TUNELAB_WAREHOUSE"] = str(db)
    try:
        at = AppTest.from_file(str(PAGE), default_timeout=60)
        at.query_params["curation"] = result.curation_id
        at.run()
        assert at.radio(key="stage").value == "semantic" and not at.exception
        bands = band_rows(at)
        assert list(bands)[0] == "0.75–0.80" and sum(r["dropped pairs"] for r in bands.values()) == drops > 0
        assert sum(r["near misses"] for r in bands.values()) == 0
        at.button(key="semantic_near").click().run()
        assert not at.exception, [e.value for e in at.exception]
        bands = band_rows(at)
        near = {b: r["near misses"] for b, r in bands.items() if r["near misses"]}
        assert near and all(b < "0.90" for b in near)  # only under the threshold
        at.selectbox(key="band").select(max(near)).run()
        shown = html.unescape("\n".join(m.value for m in at.markdown))
        assert "under the threshold" in shown
    finally:
        os.environ["TUNELAB_WAREHOUSE"] = previous


def test_a_file_made_before_the_view_gets_it_when_next_opened(tmp_path: Path) -> None:
    import duckdb

    db = tmp_path / "tunelab.duckdb"
    samples = pl.DataFrame({"sample_id": ["s:0", "s:1"], "source_row": [0, 1], "prompt": ["가", "가"]})
    store.ingest_curation(db, {"curation_id": "c", "dataset": "s", "kind": "sft"}, samples, pl.DataFrame(
        {"sample_id": ["s:1"], "stage": ["minhash"], "kept": [False]}), pl.DataFrame())  # fmt: skip
    with duckdb.connect(str(db)) as con:
        con.execute("DROP VIEW v_threshold_precision")  # as in a version-7 file from before the view
    assert store.threshold_precision(db, "c", "minhash").height == 0  # no error, nothing marked
    views = store.query(db, "SELECT view_name FROM duckdb_views() WHERE NOT internal")["view_name"]
    assert "v_threshold_precision" in views.to_list()  # the read above put the missing view back
    store.add_threshold_mark(db, "c", "minhash", "s:1", "s:0", 0.75, True, reviewer="kim")
    assert store.threshold_precision(db, "c", "minhash").select("band_low", "n", "precision").rows() == [
        (0.7, 1, 1.0)
    ]
