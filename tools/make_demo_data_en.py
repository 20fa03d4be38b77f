"""Write tunelab/demo/en/: the English rendering of the persona demo, for the real-model demo (SmolLM2-135M).

Why English: SmolLM2-135M-Instruct is English-first. Tuned on the Korean demo data (189 rows, one epoch)
its answers came out as Korean-shaped non-words (docs/demo-data.md has that table), so a newcomer could
not read what tuning did. The same persona experiment rendered in English — the translations in
tools/demo_fragments/en/, line for line with the Korean fragments, written by hand — lets a 135M model
show the style shift in sentences anyone can read. The Korean files stay the tiny-model demo's data and
what the curation tests are built on; this set plants fewer defects (one or two of each kind the
curation finds), each recorded in en/planted.json.

    .venv/bin/python tools/make_demo_data_en.py            # rewrite the files (deterministic)
    .venv/bin/python tools/make_demo_data_en.py --check    # fail if the committed files differ
"""

from __future__ import annotations

import argparse
import json
import random
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from make_demo_data import (  # noqa: E402
    CLEAN_MAX,
    DECONTAM_THRESHOLD,
    MINHASH_THRESHOLD,
    NEAR_DUP_MIN,
    ROOT,
    _position,
    content,
    dump_line,
    embed,
    jaccard,
    lay_out,
    read_pairs,
    row,
)

OUT = ROOT / "tunelab" / "demo" / "en"
SEED = 20261202
SFT_NAME = "demo-persona-en"
SEMANTIC_THRESHOLD = 0.76  # recipe-smollm2.yaml's semantic.threshold (use-v3), calibrated on the Korean set
DPO_PER_LABEL = 74


def en_pairs(name: str) -> list[tuple[str, str]]:
    return read_pairs(f"en/{name}")


def en_pieces(name: str) -> list[str]:
    text = (ROOT / "tools" / "demo_fragments" / "en" / name).read_text(encoding="utf-8")
    return [line.strip() for line in text.splitlines() if line.strip()]


def _near_dup(src: dict[str, Any], rng: random.Random) -> dict[str, Any]:
    """An edited copy: a filler word in front, a tail, or the prompt's punctuation changed, two at a time."""
    edits = [
        lambda p, r: (p, rng.choice(["Well, ", "Okay, ", "Look, "]) + r),
        lambda p, r: (p, r + rng.choice([" Got it?", " Really.", " You've got this."])),
        lambda p, r: (p.rstrip(".?") + rng.choice(["??", "...", "?!"]), r),
        lambda p, r: (p, r.replace(".", "!", 1)),
    ]
    for _attempt in range(50):
        p, r = src["instruction"], src["output"]
        for edit in rng.sample(edits, 2):
            p, r = edit(p, r)
        if NEAR_DUP_MIN + 0.05 <= jaccard(content(p, r), content(src["instruction"], src["output"])) < 0.97:
            return row(p, r, src["label"], _kind="near_dup", _reason="near_dup_minhash")
    raise SystemExit(f"no near-duplicate edit of {src['instruction']!r} reaches {NEAR_DUP_MIN}")


def build(rng: random.Random) -> dict[str, Any]:
    teto = en_pairs("sft_teto_a.txt") + en_pairs("sft_teto_b.txt")
    egen = en_pairs("sft_egen.txt")
    eval_teto = [row(p, r, "teto") for p, r in en_pairs("eval_teto.txt")]
    eval_egen = [row(p, r, "egen") for p, r in en_pairs("eval_egen.txt")]
    eval_rows = eval_teto + eval_egen
    for r in eval_rows:
        del r["input"]
    rng.shuffle(eval_rows)

    clean = [row(p, r, "teto") for p, r in teto] + [row(p, r, "egen") for p, r in egen]
    rng.shuffle(clean)
    picks = iter(rng.sample(clean, len(clean)))
    defects: list[tuple[dict[str, Any], dict[str, Any] | None]] = []
    for i in range(3):
        src = next(picks)
        copy = dict(src, _kind="exact_dup", _reason="exact_dup")
        if i == 0:  # equal only after whitespace collapse
            copy["output"] = src["output"].replace(" ", "  ", 2) + " "
        defects.append((copy, src))
    for _ in range(3):
        src = next(r for r in picks if len(r["instruction"] + r["output"]) >= 90)
        defects.append((_near_dup(src, rng), src))
    for ev in rng.sample(eval_rows, 2):
        defects.append((row(ev["instruction"], ev["output"], ev["label"], _kind="contamination",
                            _reason="contaminated:eval"), None))  # fmt: skip
    broken: list[dict[str, Any]] = [
        row("How do I get rid of mold in my room?", None, "teto", _kind="missing_output"),
        row("What should I cook tonight?", "   ", "teto", _kind="empty_output"),
        row("Am I doing okay?", "Yes", "egen", _kind="too_short"),
    ]
    del broken[0]["output"]
    lines = lay_out(clean, defects, broken, rng)
    lines.insert(
        rng.randrange(20, len(lines)), '{"instruction": "Plans for the weekend?", "output": "Go for a walk."'
    )

    dpo = build_dpo(rng, teto, egen)
    return {"lines": lines, "clean": clean, "defects": defects, "broken": broken, "eval": eval_rows,
            "dpo": dpo}  # fmt: skip


def build_dpo(
    rng: random.Random, teto: list[tuple[str, str]], egen: list[tuple[str, str]]
) -> list[dict[str, Any]]:
    """Balanced pairs on SFT prompts: chosen in persona, rejected off persona (two pieces, never reused)."""
    pieces = {"teto": en_pieces("dpo_rejected_vague.txt"), "egen": en_pieces("dpo_rejected_harsh.txt")}
    rows = []
    used: set[tuple[str, ...]] = set()
    for label, pairs in (
        ("teto", rng.sample(teto, DPO_PER_LABEL)),
        ("egen", rng.sample(egen, DPO_PER_LABEL)),
    ):
        for prompt, chosen in pairs:
            while True:
                parts = tuple(rng.sample(pieces[label], 2))
                if parts not in used:
                    used.add(parts)
                    break
            rows.append({"prompt": prompt, "chosen": chosen, "rejected": " ".join(parts), "label": label})
    rng.shuffle(rows)
    return rows


def check(data: dict[str, Any]) -> dict[str, Any]:
    """Refuse data the recipe would curate differently from planted.json; return the measured margins."""
    clean_contents = [content(r["instruction"], r["output"]) for r in data["clean"]]
    if len(set(r["instruction"] for r in data["clean"])) != len(data["clean"]):
        raise SystemExit("two clean rows share a prompt")
    worst = 0.0
    for i, a in enumerate(clean_contents):
        for b in clean_contents[i + 1 :]:
            worst = max(worst, jaccard(a, b))
    if worst >= CLEAN_MAX:
        raise SystemExit(f"two clean rows are {worst:.2f} similar (>= {CLEAN_MAX}): MinHash could drop one")
    eval_contents = [content(r["instruction"], r["output"]) for r in data["eval"]]
    leak = max(jaccard(a, b) for a in clean_contents for b in eval_contents)
    if leak >= DECONTAM_THRESHOLD - 0.2:
        raise SystemExit(f"a clean row is {leak:.2f} similar to an eval row: decontamination could drop it")
    near = [
        jaccard(content(c["instruction"], c["output"]), content(s["instruction"], s["output"]))
        for c, s in data["defects"]
        if c["_kind"] == "near_dup"
    ]
    assert min(near) >= NEAR_DUP_MIN and MINHASH_THRESHOLD < NEAR_DUP_MIN
    import numpy as np

    vectors = embed(clean_contents)
    cosines = vectors @ vectors.T
    np.fill_diagonal(cosines, -1.0)
    # not written to planted.json: int8 ONNX kernels differ in the last digits across CPUs
    print(
        f"highest cosine between two clean rows: {cosines.max():.3f} (semantic threshold {SEMANTIC_THRESHOLD})"
    )
    if cosines.max() >= SEMANTIC_THRESHOLD - 0.02:
        raise SystemExit(f"two clean rows have cosine {cosines.max():.3f}: the semantic stage could drop one")
    return {"clean_max_jaccard": round(worst, 3), "clean_eval_max_jaccard": round(leak, 3),
            "near_dup_min_jaccard": round(min(near), 3)}  # fmt: skip


def planted(data: dict[str, Any], margins: dict[str, Any]) -> dict[str, Any]:
    lines = data["lines"]
    drops: dict[str, list[str]] = {}
    for copy, _src in data["defects"]:
        drops.setdefault(copy["_reason"], []).append(f"{SFT_NAME}:{_position(lines, copy)}")
    schema = {"missing_output": "missing_field:response", "empty_output": "empty:response"}
    for r in data["broken"]:
        reason = schema.get(r["_kind"], "too_short:response_chars<5")
        drops.setdefault(reason, []).append(f"{SFT_NAME}:{_position(lines, r)}")
    quarantined = [n + 1 for n, item in enumerate(lines) if isinstance(item, str)]
    clean = len(data["clean"])
    return {
        "sft": {"lines": len(lines), "clean": clean, "quarantined_lines": quarantined,
                "drops": {k: sorted(v, key=lambda s: int(s.rsplit(":", 1)[1])) for k, v in sorted(drops.items())},
                "labels": {label: sum(r["label"] == label for r in data["clean"]) for label in ("teto", "egen")}},
        "dpo": {"lines": len(data["dpo"])},
        "eval": {"lines": len(data["eval"])},
        "margins": margins,
    }  # fmt: skip


def files(data: dict[str, Any], margins: dict[str, Any]) -> dict[str, str]:
    def jsonl(items: list[Any]) -> str:
        return "".join(dump_line(item) + "\n" for item in items)

    return {
        "sft.jsonl": jsonl(data["lines"]),
        "dpo.jsonl": jsonl(data["dpo"]),
        "eval.jsonl": jsonl(data["eval"]),
        "planted.json": json.dumps(planted(data, margins), ensure_ascii=False, indent=1) + "\n",
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="fail if the committed files differ")
    args = parser.parse_args()
    data = build(random.Random(SEED))
    margins = check(data)
    wanted = files(data, margins)
    if args.check:
        stale = [
            n for n, text in wanted.items() if not (OUT / n).is_file() or (OUT / n).read_text("utf-8") != text
        ]
        if stale:
            raise SystemExit(
                f"tunelab/demo/en: {', '.join(stale)} differ from tools/make_demo_data_en.py's output"
            )
        print("tunelab/demo/en is up to date")
        return
    OUT.mkdir(parents=True, exist_ok=True)
    for name, text in wanted.items():
        (OUT / name).write_text(text, encoding="utf-8")
    print(f"wrote {', '.join(wanted)} to {OUT} ({margins})")


if __name__ == "__main__":
    main()
