"""Write tunelab/demo/{sft,dpo,eval}.jsonl and planted.json from the hand-written fragments.

The texts live in tools/demo_fragments/*.txt (written by us, `prompt | response` per line). This
script only arranges them: it shuffles with a fixed seed, plants the defects the curation must
find, verifies every planted similarity against the thresholds of the demo recipe, and records
the exact line numbers / sample ids in planted.json so tests can compare decisions row by row.

    .venv/bin/python tools/make_demo_data.py            # rewrite the files (deterministic)
    .venv/bin/python tools/make_demo_data.py --check    # fail if the committed files differ
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import unicodedata
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tunelab.textnorm import char_shingles, exact_jaccard, normalize_text  # noqa: E402

FRAGMENTS = ROOT / "tools" / "demo_fragments"
DEMO = ROOT / "tunelab" / "demo"
SEED = 20261122
SFT_NAME = "demo-persona"
DPO_NAME = "demo-persona-dpo"
NGRAM = 5
# the demo recipe's thresholds (tunelab/demo/recipe.yaml) that the planted rows are built around
MIN_RESPONSE_CHARS, MAX_RESPONSE_CHARS, MAX_PROMPT_CHARS = 5, 800, 500
MINHASH_THRESHOLD, DECONTAM_THRESHOLD = 0.7, 0.6
NEAR_DUP_MIN, CLEAN_MAX = 0.75, 0.5  # margins around MINHASH_THRESHOLD so MinHash noise cannot flip a row


def read_pairs(name: str) -> list[tuple[str, str]]:
    rows = []
    for line in (FRAGMENTS / name).read_text(encoding="utf-8").splitlines():
        if line.strip() and not line.startswith("#"):
            prompt, response = line.split(" | ", 1)
            rows.append((prompt.strip(), response.strip()))
    return rows


def read_sections(name: str) -> dict[str, list[str]]:
    sections: dict[str, list[str]] = {}
    current = ""
    for line in (FRAGMENTS / name).read_text(encoding="utf-8").splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        if line.startswith("[") and line.endswith("]"):
            current = line[1:-1]
            sections[current] = []
        else:
            sections[current].append(line.strip())
    return sections


def content(prompt: str, response: str) -> str:
    """What exact/MinHash dedup compare: normalised prompt + newline + response (records.content_text)."""
    return normalize_text(prompt) + "\n" + normalize_text(response)


def jaccard(a: str, b: str) -> float:
    return exact_jaccard(char_shingles(a, NGRAM), char_shingles(b, NGRAM))


def row(instruction: str, output: Any, label: str, **extra: Any) -> dict[str, Any]:
    return {"instruction": instruction, "input": "", "output": output, "label": label, **extra}


# Edits that keep a copy recognisably the same text (near-duplicate), applied two at a time.
def _edit_punct(p: str, r: str, rng: random.Random) -> tuple[str, str]:
    return p, r.replace(".", "!", 1)


def _edit_filler(p: str, r: str, rng: random.Random) -> tuple[str, str]:
    return p, rng.choice(["음, ", "그러니까 ", "자, "]) + r


def _edit_tail(p: str, r: str, rng: random.Random) -> tuple[str, str]:
    return p, r + rng.choice([" 알겠지?", " 꼭이요.", " 파이팅."])


def _edit_prompt(p: str, r: str, rng: random.Random) -> tuple[str, str]:
    return p.rstrip(".?") + rng.choice(["..", "?!", " ㅠㅠ"]), r


def _edit_word(p: str, r: str, rng: random.Random) -> tuple[str, str]:
    words = r.split(" ")
    i = rng.randrange(1, len(words))
    return p, " ".join(words[:i] + [rng.choice(["정말", "꼭", "그냥", "일단"])] + words[i:])


NEAR_DUP_EDITS = [_edit_punct, _edit_filler, _edit_tail, _edit_prompt, _edit_word]


def rambling(rng: random.Random, sentences: list[str]) -> str:
    text = ""
    while len(text) < 1000:
        text += rng.choice(sentences) + " "
    return text.strip()


def build(rng: random.Random) -> dict[str, Any]:
    teto = read_pairs("sft_teto.txt")
    egen = read_pairs("sft_egen.txt")
    eval_rows = [row(p, r, "teto") for p, r in read_pairs("eval_teto.txt")]
    eval_rows += [row(p, r, "egen") for p, r in read_pairs("eval_egen.txt")]
    for r in eval_rows:
        del r["input"]
    rng.shuffle(eval_rows)

    clean = [row(p, r, "teto") for p, r in teto] + [row(p, r, "egen") for p, r in egen]
    rng.shuffle(clean)
    by_prompt = {r["instruction"]: r for r in clean}

    paraphrase_of = {}
    for line in (FRAGMENTS / "paraphrases.txt").read_text(encoding="utf-8").splitlines():
        if line.strip():
            original, rest = line.split(" || ", 1)
            prompt, response = rest.split(" | ", 1)
            paraphrase_of[original.strip()] = (prompt.strip(), response.strip())

    reserved = set(paraphrase_of)
    pool = [r for r in clean if r["instruction"] not in reserved]
    picks = iter(rng.sample(pool, len(pool)))
    exact_sources = [next(picks) for _ in range(8)]
    # a two-character edit of a short row moves its Jaccard too far: edit only the longer rows
    near_sources = [next(r for r in picks if len(r["instruction"] + r["output"]) >= 90) for _ in range(10)]
    normalise_only = [next(picks) for _ in range(5)]

    # rows that normalisation changes but nothing may drop (they are clean, unique rows)
    tweaks = [
        ("NFD (decomposed Hangul jamo)", lambda s: unicodedata.normalize("NFD", s)),
        ("tabs and runs of spaces", lambda s: s.replace(" ", " \t ", 2).replace(". ", ".    ", 1)),
        ("zero-width space inside a word", lambda s: s[:3] + "\u200b" + s[3:]),
        ("control character (BEL) and trailing spaces", lambda s: s[:4] + "\x07" + s[4:] + "   "),
        (
            "NFD plus no-break and ideographic spaces",
            lambda s: unicodedata.normalize("NFD", s).replace(" ", "\u00a0", 1).replace(" ", "\u3000", 1),
        ),
    ]
    for r, (note, tweak) in zip(normalise_only, tweaks, strict=True):
        r["_normalise_note"] = note
        r["output"] = tweak(r["output"])
        if "NFD" in note:
            r["instruction"] = unicodedata.normalize("NFD", r["instruction"])

    defects: list[tuple[dict[str, Any], dict[str, Any] | None]] = []  # (row, original it must follow)
    for i, src in enumerate(exact_sources):
        copy = dict(src)
        copy["_kind"], copy["_reason"] = "exact_dup", "exact_dup"
        if i < 2:  # equal only after NFC + whitespace collapse: proves normalise-then-dedup
            copy["instruction"] = unicodedata.normalize("NFD", src["instruction"]) + "  "
            copy["output"] = (
                unicodedata.normalize("NFD", src["output"]).replace(" ", "\t ", 1).replace(" ", "   ", 1)
            )
            copy["_note"] = "NFD jamo + tabs/extra spaces"
        defects.append((copy, src))
    for src in near_sources:
        for _attempt in range(50):
            p, r = src["instruction"], src["output"]
            for edit in rng.sample(NEAR_DUP_EDITS, 2):
                p, r = edit(p, r, rng)
            score = jaccard(content(p, r), content(src["instruction"], src["output"]))
            if NEAR_DUP_MIN + 0.05 <= score < 0.97:
                break
        else:
            raise SystemExit(f"no near-duplicate edit of {src['instruction']!r} reaches {NEAR_DUP_MIN}")
        defects.append((row(p, r, src["label"], _kind="near_dup", _reason="near_dup_minhash"), src))
    for original, (p, r) in paraphrase_of.items():
        src = by_prompt[original]
        defects.append((row(p, r, src["label"], _kind="paraphrase", _reason="near_dup_semantic"), src))
    for i, ev in enumerate(rng.sample(eval_rows, 3)):
        out = ev["output"] if i == 0 else ev["output"].rstrip(".") + ("!" if i == 1 else " ")
        inst = ev["instruction"] if i != 2 else ev["instruction"].replace(" ", "  ", 1)
        defects.append(
            (row(inst, out, ev["label"], _kind="contamination", _reason="contaminated:eval", _eval=ev), None)
        )

    broken: list[dict[str, Any]] = [
        row("자취방 곰팡이 없애는 방법 알려주세요.", None, "teto", _kind="missing_output"),
        row("버스를 놓치면 뭘 해야 하죠?", None, "egen", _kind="missing_output"),
        row("친구 선물로 향수 어때요?", None, "teto", _kind="missing_output"),
        {"output": "계획부터 세워. 하루에 하나씩 끝내.", "label": "teto", "_kind": "missing_instruction"},
        row("오늘 저녁 메뉴 골라 주세요.", "   ", "teto", _kind="empty_output"),
        row("기분 전환하는 법 있을까요?", "\n\t ", "egen", _kind="empty_output"),
        row("몇 시에 자야 해요?", 123, "teto", _kind="wrong_type"),
        row("운동 추천해 주세요.", ["스쿼트", "플랭크"], "teto", _kind="wrong_type"),
        row("내일 비 온대요?", "네.", "teto", _kind="too_short"),
        row("저 잘하고 있는 걸까요?", "응", "egen", _kind="too_short"),
        row("주말에 영화 볼까요?", "ㄱㄱ", "teto", _kind="too_short"),
    ]
    for r in broken:
        if r["_kind"] == "missing_output":
            del r["output"]
    ramble = [s for s in (FRAGMENTS / "rambling.txt").read_text(encoding="utf-8").splitlines() if s.strip()]
    broken.append(row("인생 조언 하나만 해 주세요.", rambling(rng, ramble), "egen", _kind="too_long"))
    broken.append(row("공부 잘하는 비결이 뭐예요?", rambling(rng, ramble), "teto", _kind="too_long"))

    lines = lay_out(clean, defects, broken, rng)
    lines.insert(
        rng.randrange(20, len(lines)),
        '{"instruction": "주말 계획 추천해 줘", "output": "산책해.", "label": "teto"',
    )
    lines.insert(rng.randrange(20, len(lines)), '["주말에 뭐 하지?", "산책"]')
    return {"lines": lines, "clean": clean, "defects": defects, "broken": broken, "eval": eval_rows}


def lay_out(
    clean: list[dict[str, Any]],
    defects: list[tuple[dict[str, Any], dict[str, Any] | None]],
    broken: list[dict[str, Any]],
    rng: random.Random,
) -> list[Any]:
    """Clean rows in their order, each copy somewhere after its original, other defects anywhere."""
    lines: list[Any] = list(clean)
    for copy, src in defects:
        lo = _position(lines, src) + 1 if src is not None else 0
        lines.insert(rng.randrange(lo, len(lines) + 1), copy)
    for r in broken:
        lines.insert(rng.randrange(0, len(lines) + 1), r)
    return lines


def _position(lines: list[Any], target: Any) -> int:
    # identity, not equality: an exact duplicate compares equal to its original
    return next(i for i, item in enumerate(lines) if item is target)


def sample_id(name: str, line_no: int) -> str:
    return f"{name}:{line_no - 1}"


def public(record: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in record.items() if not k.startswith("_")}


def dump_line(item: Any) -> str:
    return item if isinstance(item, str) else json.dumps(public(item), ensure_ascii=False)


def embed(texts: list[str]) -> Any:
    from tunelab.embeddings.loader import load_embedder, normalise_rows

    return normalise_rows(load_embedder("use-v3", threads=1).encode(texts))


def build_dpo(rng: random.Random) -> tuple[list[dict[str, Any]], list[tuple[int, int]]]:
    """Balanced preference pairs on SFT prompts: chosen in persona, rejected off persona."""
    pieces = read_sections("dpo_rejected.txt")
    teto = rng.sample(read_pairs("sft_teto.txt"), 74)
    egen = rng.sample(read_pairs("sft_egen.txt"), 74)
    rows = []
    used: set[tuple[str, ...]] = set()
    for label, pairs, section in (("teto", teto, "vague"), ("egen", egen, "harsh")):
        for prompt, chosen in pairs:
            while True:  # no two rows share the same rejected text
                parts = tuple(rng.sample(pieces[section], 2))
                if parts not in used:
                    used.add(parts)
                    break
            rows.append({"prompt": prompt, "chosen": chosen, "rejected": " ".join(parts), "label": label})
    rng.shuffle(rows)
    for _ in range(2):
        src_index = rng.randrange(0, len(rows) - 20)
        rows.insert(rng.randrange(src_index + 1, len(rows) + 1), dict(rows[src_index]))
    # (first line, duplicate line), 1-based, read back from the final order
    lines = [json.dumps(r, ensure_ascii=False) for r in rows]
    pairs = [(lines.index(text) + 1, i + 1) for i, text in enumerate(lines) if lines.index(text) != i]
    return rows, pairs


def dpo_content(r: dict[str, Any]) -> str:
    return "\n".join(normalize_text(r[k]) for k in ("prompt", "chosen", "rejected"))


def max_pair(matrix: Any, skip: set[tuple[int, int]]) -> tuple[float, int, int]:
    import numpy as np

    m = matrix.copy()
    np.fill_diagonal(m, -1.0)
    for i, j in skip:
        m[i, j] = m[j, i] = -1.0
    i, j = np.unravel_index(int(np.argmax(m)), m.shape)
    return float(m[i, j]), int(min(i, j)), int(max(i, j))


def without_measurements(planted: dict[str, Any]) -> dict[str, Any]:
    """planted.json minus the embedding cosines: int8 ONNX kernels differ in the last digits across CPUs."""
    copy = json.loads(json.dumps(planted))
    del copy["semantic_threshold"], copy["sft"]["semantic"], copy["dpo"]["max_clean_cosine"]
    for d in copy["sft"]["defects"]:
        d.pop("cosine", None)
    return copy


KIND_TEXT = {
    "exact_dup": "exact duplicate of an earlier row",
    "near_dup": "near-duplicate: edited copy (punctuation, filler word, tail) of an earlier row",
    "paraphrase": "paraphrase: same meaning, different words",
    "contamination": "copies an eval.jsonl row (near-verbatim)",
    "missing_output": "no `output` key",
    "missing_instruction": "no `instruction` (and no `input`) key",
    "empty_output": "`output` is only whitespace",
    "wrong_type": "`output` is not a string",
    "too_short": "`output` under 5 characters",
    "too_long": "`output` over 800 characters (rambling)",
}


def render_readme(planted: dict[str, Any]) -> str:
    sft, dpo, sem = planted["sft"], planted["dpo"], planted["sft"]["semantic"]
    out = [
        "# Demo data: a Korean 에겐 / 테토 persona experiment",
        "",
        "Written for tunelab (nothing copied from any dataset). Everyday questions a Korean student might ask",
        "a chatbot — study, work, relationships, health, money, hobbies, food, travel — answered in one of two",
        "personas: **에겐 (egen)**: soft, empathetic 해요체, validates feelings, gentle suggestions; **테토 (teto)**:",
        "direct, assertive, short declaratives that tell you what to do.",
        "",
        "`en/` holds an English rendering of the same experiment for the real-model demo (SmolLM2-135M is",
        "English-first): see [en/README.md](en/README.md).",
        "",
        "| file | rows | format |",
        "|---|---|---|",
        f"| `sft.jsonl` | {sft['lines']} lines | alpaca: `instruction`, `input` (always empty), `output`, `label` egen/teto |",
        f"| `dpo.jsonl` | {dpo['lines']} lines | `prompt`, `chosen` (in the labelled persona), `rejected` (off persona: curt/dismissive for egen, vague/hedging for teto), `label` |",
        f"| `eval.jsonl` | {planted['eval']['lines']} lines | `instruction`, `output` (reference answer in persona), `label`; {planted['eval']['by_label']['teto']} teto / {planted['eval']['by_label']['egen']} egen; prompts unseen in sft.jsonl except the 3 planted contaminations |",
        "| `planted.json` | — | machine-readable list of every planted defect (line, sample id, expected stage and reason, reference row, similarity) |",
        "",
        "The files are generated, deterministically, by `tools/make_demo_data.py` from the hand-written fragments in",
        "`tools/demo_fragments/` (edit those, rerun the script; `--check` verifies the committed files).",
        "The script refuses to write data that breaks a property below; `tests/test_demo_data.py` re-derives every one from the files.",
        "",
        "## Planted defects in sft.jsonl",
        "",
        f"Sample ids are `demo-persona:<source_row>`, source_row = line − 1. Of {sft['read']} lines: "
        f"{len(sft['quarantined'])} quarantined, {sft['drop_count']} dropped, {sft['clean']['count']} clean "
        f"({sft['clean']['by_label']['teto']} teto : {sft['clean']['by_label']['egen']} egen, "
        f"{sft['clean']['by_label']['teto'] / sft['clean']['by_label']['egen']:.2f} : 1 — the recipe's "
        "`balance.max_per_label` caps teto).",
        "",
        "| expected stage | reason | count | lines |",
        "|---|---|---|---|",
        "| quarantine | bad JSON / not an object | "
        + f"{len(sft['quarantined'])} | "
        + ", ".join(f"{q['line']} ({q['error_kind']})" for q in sft["quarantined"])
        + " |",
    ]
    stages = ["schema", "length", "exact", "minhash", "semantic", "decontaminate"]
    for stage in stages:
        rows = [d for d in sft["defects"] if d["stage"] == stage]
        for reason in dict.fromkeys(d["reason"] for d in rows):
            these = [d for d in rows if d["reason"] == reason]
            cells = []
            for d in these:
                ref = f" → {line_of_id(d['ref_sample_id'])}" if "ref_sample_id" in d else ""
                cells.append(f"{d['line']}{ref}")
            out.append(f"| {stage} | `{reason}` | {len(these)} | {', '.join(cells)} |")
    out += [
        "",
        "`a → b`: line a duplicates line b (its representative: an earlier clean row, which the curation keeps).",
        "",
        "Details per kind:",
        "",
    ]
    for kind, text in KIND_TEXT.items():
        rows = [d for d in sft["defects"] if d["kind"] == kind]
        extra = ""
        if kind == "exact_dup":
            extra = f"; {sum('NFD' in d['note'] for d in rows)} of them equal only after NFC + whitespace collapse (decomposed jamo, tabs)"
        if kind == "near_dup":
            extra = f"; exact Jaccard of character 5-grams to the original {min(d['jaccard'] for d in rows):.2f}–{max(d['jaccard'] for d in rows):.2f}"
        if kind == "paraphrase":
            extra = (
                f"; Jaccard {min(d['jaccard'] for d in rows):.2f}–{max(d['jaccard'] for d in rows):.2f} (MinHash keeps them), "
                f"use-v3 cosine {sem['min_paraphrase_cosine']:.2f}–{max(sem['paraphrase_cosines'].values()):.2f}"
            )
        out.append(f"- {len(rows)} × {text}{extra}.")
    out += [
        f"- {len(sft['normalized_only'])} clean rows that normalisation changes and nothing drops: "
        + "; ".join(f"line {r['line']} ({r['note']})" for r in sft["normalized_only"])
        + ".",
        "",
        "## Thresholds the data is built around",
        "",
        "Content = normalised prompt + newline + response (NFC, controls stripped, whitespace collapsed).",
        "",
        "- length: response 5–800 characters, prompt ≤ 500 — every clean row is inside.",
        f"- MinHash (character 5-grams, threshold 0.7): planted near-duplicates ≥ 0.80; the most similar pair of rows that must survive scores {sft['max_clean_jaccard']['score']:.2f} (every pair < 0.5).",
        f"- decontaminate (5-grams, threshold 0.6 against eval.jsonl): planted copies ≥ 0.95; every other row ≤ {sft['max_clean_eval_jaccard']:.2f}.",
        f"- **semantic threshold: {planted['semantic_threshold']}** (use-v3, cosine of L2-normalised embeddings of the content). "
        f"Planted paraphrases score ≥ {sem['min_paraphrase_cosine']:.2f} against their original (and the original is each one's nearest earlier row); "
        f"the highest cosine between any other two rows reaching the semantic stage is {sem['max_other_cosine']:.2f}. The threshold is the midpoint.",
        f"- dpo.jsonl: {dpo['clean']['count']} clean pairs ({dpo['clean']['by_label']['teto']} teto / {dpo['clean']['by_label']['egen']} egen) on sft prompts, "
        f"plus {len(dpo['drops']['exact_dup'])} exact duplicates at lines "
        + ", ".join(f"{line_of_id(s)} (= line {line_of_id(r)})" for s, r in dpo["exact_dup_of"].items())
        + f"; clean pairs: Jaccard ≤ {dpo['max_clean_jaccard']:.2f}, cosine ≤ {dpo['max_clean_cosine']:.2f}.",
        "",
    ]
    return "\n".join(out)


def line_of_id(sample: str) -> int:
    return int(sample.rsplit(":", 1)[1]) + 1


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--check", action="store_true", help="compare with the files on disk instead of writing"
    )
    parser.add_argument("--out", type=Path, default=DEMO)
    args = parser.parse_args()
    rng = random.Random(SEED)
    built = build(rng)
    lines = built["lines"]
    line_of = {id(item): n for n, item in enumerate(lines, start=1)}
    sid = {id(item): sample_id(SFT_NAME, n) for n, item in enumerate(lines, start=1)}

    drops: dict[str, list[str]] = {}
    details: list[dict[str, Any]] = []

    def drop(item: dict[str, Any], reason: str, stage: str, **extra: Any) -> None:
        drops.setdefault(reason, []).append(sid[id(item)])
        details.append(
            {
                "sample_id": sid[id(item)],
                "line": line_of[id(item)],
                "kind": item["_kind"],
                "stage": stage,
                "reason": reason,
                **extra,
            }
        )

    for item in built["broken"]:
        kind = item["_kind"]
        if kind == "missing_output":
            drop(item, "missing_field:response", "schema", source_field="output")
        elif kind == "missing_instruction":
            drop(item, "missing_field:prompt", "schema", source_field="instruction")
        elif kind == "empty_output":
            drop(item, "empty:response", "schema", note="whitespace only; empty after normalisation")
        elif kind == "wrong_type":
            drop(item, "wrong_type:response", "schema", source_type=type(item["output"]).__name__)
        elif kind == "too_short":
            drop(item, "too_short:response", "length", chars=len(normalize_text(item["output"])))
        elif kind == "too_long":
            drop(item, "too_long:response", "length", chars=len(normalize_text(item["output"])))

    clean = built["clean"]
    minhash_survivors = list(clean)
    semantic_survivors = list(clean)
    for copy, src in built["defects"]:
        kind = copy["_kind"]
        c_copy = content(copy["instruction"], copy["output"])
        if kind == "exact_dup":
            assert c_copy == content(src["instruction"], src["output"]), copy
            drop(
                copy,
                "exact_dup",
                "exact",
                ref_sample_id=sid[id(src)],
                note=copy.get("_note", "verbatim copy"),
            )
        elif kind == "near_dup":
            score = jaccard(c_copy, content(src["instruction"], src["output"]))
            drop(copy, "near_dup_minhash", "minhash", ref_sample_id=sid[id(src)], jaccard=round(score, 4))
            minhash_survivors.append(copy)
        elif kind == "paraphrase":
            score = jaccard(c_copy, content(src["instruction"], src["output"]))
            assert score < CLEAN_MAX, (score, copy)
            drop(copy, "near_dup_semantic", "semantic", ref_sample_id=sid[id(src)], jaccard=round(score, 4))
            minhash_survivors.append(copy)
            semantic_survivors.append(copy)
        elif kind == "contamination":
            ev = copy["_eval"]
            score = jaccard(c_copy, content(ev["instruction"], ev["output"]))
            assert score >= DECONTAM_THRESHOLD + 0.2, (score, copy)
            drop(
                copy,
                "contaminated:eval",
                "decontaminate",
                eval_line=built["eval"].index(ev) + 1,
                jaccard=round(score, 4),
            )
            minhash_survivors.append(copy)
            semantic_survivors.append(copy)

    # every pair that must survive MinHash stays far below its threshold
    order = sorted(minhash_survivors, key=lambda r: line_of[id(r)])
    shingles = [char_shingles(content(r["instruction"], r["output"]), NGRAM) for r in order]
    allowed = {(id(c), id(s)) for c, s in built["defects"] if c["_kind"] == "near_dup"}
    worst_clean = (0.0, "", "")
    for i in range(len(order)):
        for j in range(i + 1, len(order)):
            if (id(order[j]), id(order[i])) in allowed:
                continue
            score = exact_jaccard(shingles[i], shingles[j])
            if score > worst_clean[0]:
                worst_clean = (score, sid[id(order[i])], sid[id(order[j])])
    assert worst_clean[0] < CLEAN_MAX, worst_clean
    eval_shingles = [char_shingles(content(e["instruction"], e["output"]), NGRAM) for e in built["eval"]]
    contaminated = {id(c) for c, _ in built["defects"] if c["_kind"] == "contamination"}
    worst_eval = max(
        exact_jaccard(s, e)
        for r, s in zip(order, shingles, strict=True)
        if id(r) not in contaminated
        for e in eval_shingles
    )
    assert worst_eval < DECONTAM_THRESHOLD - 0.2, worst_eval
    # prompt-only matching (what decontamination of a prompt-only eval set compares) must not fire either
    eval_prompts = [char_shingles(normalize_text(e["instruction"]), NGRAM) for e in built["eval"]]
    worst_prompt = max(
        exact_jaccard(char_shingles(normalize_text(r["instruction"]), NGRAM), e)
        for r in order
        if id(r) not in contaminated
        for e in eval_prompts
    )
    assert worst_prompt < CLEAN_MAX, worst_prompt

    # semantic stage: calibrate the cosine threshold with the real default model (use-v3)
    sem = sorted(semantic_survivors, key=lambda r: line_of[id(r)])
    vectors = embed([content(r["instruction"], r["output"]) for r in sem])
    cos = vectors @ vectors.T
    index = {id(r): i for i, r in enumerate(sem)}
    para_pairs = {(index[id(s)], index[id(c)]) for c, s in built["defects"] if c["_kind"] == "paraphrase"}
    para_scores = {}
    for i, j in para_pairs:
        # the original must be the paraphrase's nearest earlier row, so ref_sample_id is deterministic
        assert int(cos[j, :j].argmax()) == i, (sid[id(sem[j])], sid[id(sem[int(cos[j, :j].argmax())])])
        para_scores[sid[id(sem[j])]] = round(float(cos[i, j]), 4)
    worst_cos, a, b = max_pair(cos, para_pairs)
    low_para = min(para_scores.values())
    assert low_para - worst_cos >= 0.06, (low_para, worst_cos)
    threshold = round((low_para + worst_cos) / 2, 2)
    for d in details:
        if d["sample_id"] in para_scores:
            d["cosine"] = para_scores[d["sample_id"]]

    dpo_rows, dpo_dups = build_dpo(random.Random(SEED + 1))
    dpo_clean = [r for n, r in enumerate(dpo_rows, start=1) if n not in {b for _, b in dpo_dups}]
    dpo_vectors = embed([dpo_content(r) for r in dpo_clean])
    dpo_worst_cos = max_pair(dpo_vectors @ dpo_vectors.T, set())[0]
    dpo_shingles = [char_shingles(dpo_content(r), NGRAM) for r in dpo_clean]
    dpo_worst_j = max(
        exact_jaccard(dpo_shingles[i], dpo_shingles[j])
        for i in range(len(dpo_clean))
        for j in range(i + 1, len(dpo_clean))
    )
    assert dpo_worst_j < CLEAN_MAX and dpo_worst_cos < threshold, (dpo_worst_j, dpo_worst_cos)

    quarantined = [
        {"line": n, "source_row": n - 1, "error_kind": "bad_json" if item.startswith("{") else "not_object"}
        for n, item in enumerate(lines, start=1)
        if isinstance(item, str)
    ]
    for item in clean:
        p, r = normalize_text(item["instruction"]), normalize_text(item["output"])
        assert len(p) <= MAX_PROMPT_CHARS and MIN_RESPONSE_CHARS <= len(r) <= MAX_RESPONSE_CHARS, item
    by_label = {lab: sum(r["label"] == lab for r in clean) for lab in ("teto", "egen")}
    planted = {
        "dataset": SFT_NAME,
        "generator": "tools/make_demo_data.py",
        "seed": SEED,
        "note": "drops keys are reason codes; a curation reason may carry a suffix after them (too_short:response_chars<5)",
        "thresholds": {
            "length.min_chars.response": MIN_RESPONSE_CHARS,
            "length.max_chars.response": MAX_RESPONSE_CHARS,
            "length.max_chars.prompt": MAX_PROMPT_CHARS,
            "minhash.ngram": NGRAM,
            "minhash.threshold": MINHASH_THRESHOLD,
            "decontaminate.threshold": DECONTAM_THRESHOLD,
        },
        "semantic_threshold": threshold,
        "sft": {
            "file": "sft.jsonl",
            "lines": len(lines),
            "read": len(lines),
            "quarantined": quarantined,
            "drops": drops,
            "drop_count": sum(len(v) for v in drops.values()),
            "defects": sorted(details, key=lambda d: d["line"]),
            "normalized_only": [
                {"sample_id": sid[id(r)], "line": line_of[id(r)], "note": r["_normalise_note"]}
                for r in sorted(clean, key=lambda r: line_of[id(r)])
                if "_normalise_note" in r
            ],
            "clean": {"count": len(clean), "by_label": by_label},
            "clean_sample_ids": sorted((sid[id(r)] for r in clean), key=lambda s: int(s.split(":")[1])),
            "max_clean_jaccard": {"score": round(worst_clean[0], 4), "pair": list(worst_clean[1:])},
            "max_clean_eval_jaccard": round(worst_eval, 4),
            "max_clean_eval_prompt_jaccard": round(worst_prompt, 4),
            "semantic": {
                "model": "use-v3",
                "paraphrase_cosines": para_scores,
                "min_paraphrase_cosine": low_para,
                "max_other_cosine": round(worst_cos, 4),
                "max_other_pair": [sid[id(sem[a])], sid[id(sem[b])]],
                "threshold": threshold,
            },
        },
        "dpo": {
            "file": "dpo.jsonl",
            "dataset": DPO_NAME,
            "lines": len(dpo_rows),
            "drops": {"exact_dup": [sample_id(DPO_NAME, b) for _, b in dpo_dups]},
            "exact_dup_of": {sample_id(DPO_NAME, b): sample_id(DPO_NAME, a) for a, b in dpo_dups},
            "clean": {
                "count": len(dpo_clean),
                "by_label": {lab: sum(r["label"] == lab for r in dpo_clean) for lab in ("teto", "egen")},
            },
            "max_clean_jaccard": round(dpo_worst_j, 4),
            "max_clean_cosine": round(dpo_worst_cos, 4),
        },
        "eval": {
            "file": "eval.jsonl",
            "lines": len(built["eval"]),
            "by_label": {lab: sum(r["label"] == lab for r in built["eval"]) for lab in ("teto", "egen")},
        },
    }
    outputs = {
        "sft.jsonl": "".join(dump_line(item) + "\n" for item in lines),
        "dpo.jsonl": "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in dpo_rows),
        "eval.jsonl": "".join(json.dumps(public(r), ensure_ascii=False) + "\n" for r in built["eval"]),
        "planted.json": json.dumps(planted, ensure_ascii=False, indent=1) + "\n",
        "README.md": render_readme(planted),
    }
    if args.check:
        stale = [
            n
            for n, text in outputs.items()
            if n not in ("planted.json", "README.md") and (args.out / n).read_text(encoding="utf-8") != text
        ]
        on_disk = json.loads((args.out / "planted.json").read_text(encoding="utf-8"))
        if without_measurements(on_disk) != without_measurements(planted):
            stale.append("planted.json")
        if stale:
            raise SystemExit(f"stale demo files (rerun tools/make_demo_data.py): {', '.join(stale)}")
        print("demo files are up to date")
        return
    args.out.mkdir(parents=True, exist_ok=True)
    for name, text in outputs.items():
        (args.out / name).write_text(text, encoding="utf-8")
    print(
        json.dumps(
            {k: planted["sft"][k] for k in ("lines", "drop_count", "clean", "max_clean_jaccard")},
            ensure_ascii=False,
        )
    )
    print(json.dumps(planted["sft"]["semantic"], ensure_ascii=False))
    print(
        json.dumps(
            {k: planted["dpo"][k] for k in ("lines", "clean", "max_clean_jaccard", "max_clean_cosine")}
        )
    )


if __name__ == "__main__":
    main()
