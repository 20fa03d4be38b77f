"""Rows/s of every signal stage (language, pii, quality, pairs: whichever are registered) on 100k generated
Korean/English preference rows, each next to a peer measured in the same process on the same texts.

    .venv/bin/python benchmarks/signals_bench.py [--rows 100000] [--seed 0] [--json out.json]

The rows are DPO rows (prompt, chosen, rejected) so that every stage, pairs included, has work: ~75 %
Korean, ~20 % English, a Korean prompt answered in English on ~4 %, Japanese/Chinese answers on ~1 %,
dates, prices and version numbers on ~15 % (what the PII patterns must not take), and phone numbers,
e-mail and IP addresses, resident registration and card numbers on ~2 % (what they must). Each stage runs
with its default settings on a warm-up slice first (lingua loads its models, regexes compile), then once
on all rows.

Peers (same texts, same process):
- language: lingua alone, same detector and languages, on every text (no Hangul shortcut): what the
  shortcut saves. No other offline language filter installs here without a model download (datatrove's
  and Data-Juicer's use fastText / GlotLID weights).
- pii: datatrove's PIIFormatter (e-mail + public IPv4, `pip install datatrove`) over every text, against
  the pii stage with the same two kinds and with all six.
- quality: datatrove's GopherRepetitionFilter + GopherQualityFilter (whitespace word tokenizer) on every
  text.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from collections.abc import Callable
from typing import Any

import polars as pl

from tunelab.curate import registry
from tunelab.curate.common import StageContext
from tunelab.curate.config import CurateConfig, PiiSettings

SIGNAL_STAGES = ("language", "pii", "quality", "pairs")
WARMUP_ROWS = 2_000

SUBJECTS = ["오늘 날씨", "회사 일", "주말 계획", "김치찌개 레시피", "파이썬 코드", "여행 준비", "운동 습관", "책 추천",
            "이사 준비", "면접 준비", "건강 검진", "영화 감상", "부동산 계약", "전세 보증금", "대학 입시"]  # fmt: skip
QUESTIONS = ["{}에 대해 알려주세요.", "{} 어떻게 하면 좋을까요?", "{} 관련해서 조언 부탁드려요.",
             "{}이/가 궁금해요. 자세히 설명해 주세요.", "{} 때문에 고민이에요."]  # fmt: skip
ANSWERS = ["{}은/는 미리 준비하는 것이 가장 중요합니다. 먼저 목표를 정하고 일정을 세워 보세요.",
           "{}에 대해서는 전문가와 상담해 보시는 것을 추천드립니다. 상황에 따라 달라질 수 있어요.",
           "좋은 질문이에요. {}은/는 작은 습관부터 시작하면 부담이 줄어듭니다. 천천히 해 보세요.",
           "{} 관련 정보는 공식 홈페이지에서 확인하실 수 있습니다. 최신 내용을 꼭 확인하세요."]  # fmt: skip
EN_QUESTIONS = [
    "How should I prepare for {}?",
    "Can you explain {} in detail?",
    "What do you think about {}?",
]
EN_ANSWERS = ["Start early and make a plan for {}; small steps add up over time.",
              "It depends on your situation, but for {} a clear schedule helps a lot.",
              "Here is a short overview of {}: set a goal, track progress and adjust."]  # fmt: skip
EN_SUBJECTS = ["a job interview", "moving house", "a marathon", "learning Korean", "a budget"]
OTHER = ["今日はいい天気ですね。散歩に行きましょう。", "这个问题很有意思，我们一起讨论一下。"]
NUMBERS = ["2023-01-15에 계약했어요", "가격은 12,500원입니다", "파이썬 3.11.4 버전", "회의는 14:30에 시작",
           "2024년 3월 2일", "주문번호 20240302-1234"]  # fmt: skip
EN_NUMBERS = [
    "I signed on 2023-01-15",
    "it costs $12.50",
    "with Python 3.11.4",
    "the meeting starts at 14:30",
]
EN_PII = ["call me at 010-1234-5678", "mail minsu.kim@naver.com", "server IP 8.8.8.8"]
PII = ["연락처는 010-1234-5678 입니다", "메일 minsu.kim@naver.com 로 주세요", "서버 IP 8.8.8.8",
       "주민번호 900101-1234568", "카드 4111 1111 1111 1111", "국민은행 계좌 123456-01-234567",
       "사무실 02-123-4567"]  # fmt: skip


def generate(rows: int, seed: int) -> pl.DataFrame:
    """`rows` DPO rows with the mix in the module docstring (the same seed gives the same rows)."""
    rng = random.Random(seed)
    prompts, chosen, rejected = [], [], []
    for _ in range(rows):
        english = rng.random() < 0.2
        if english:
            subject = rng.choice(EN_SUBJECTS)
            prompt = rng.choice(EN_QUESTIONS).format(subject)
            good, bad = (rng.choice(EN_ANSWERS).format(subject) for _ in range(2))
        else:
            subject = rng.choice(SUBJECTS)
            prompt = rng.choice(QUESTIONS).format(subject)
            good = " ".join(rng.choice(ANSWERS).format(subject) for _ in range(rng.randint(1, 3)))
            bad = rng.choice(ANSWERS).format(rng.choice(SUBJECTS))
            draw = rng.random()
            if draw < 0.04:
                bad = rng.choice(EN_ANSWERS).format(rng.choice(EN_SUBJECTS))
            elif draw < 0.05:
                bad = rng.choice(OTHER)
        draw = rng.random()
        if draw < 0.15:
            prompt = f"{prompt} {rng.choice(EN_NUMBERS if english else NUMBERS)}"
        elif draw < 0.17:
            prompt = f"{prompt} {rng.choice(EN_PII if english else PII)}"
        prompts.append(prompt)
        chosen.append(good)
        rejected.append(bad)
    return pl.DataFrame(
        {
            "sample_id": [f"bench:{i}" for i in range(rows)],
            "prompt": prompts,
            "chosen": chosen,
            "rejected": rejected,
        }
    )


def timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    started = time.perf_counter()
    out = fn()
    return time.perf_counter() - started, out


def run_stage(name: str, frame: pl.DataFrame, settings: Any = None) -> tuple[float, Any]:
    stage = registry.stage(name)
    settings = settings if settings is not None else CurateConfig().settings_for(name)
    return timed(lambda: stage.run(frame, settings, StageContext(kind="dpo")))


def texts_of(frame: pl.DataFrame) -> list[str]:
    return [t for column in ("prompt", "chosen", "rejected") for t in frame[column].to_list()]


def language_peer(frame: pl.DataFrame) -> dict[str, Any]:
    """lingua on every text with the stage's own detector (no Hangul shortcut)."""
    from tunelab.curate import language

    cfg = CurateConfig().language
    texts = texts_of(frame)
    seconds, _ = timed(lambda: language.detect(texts, [*cfg.detect, *cfg.allow]))
    return {"peer": "lingua on every text (no Hangul shortcut)", "seconds": seconds}


def pii_peer(frame: pl.DataFrame) -> dict[str, Any]:
    """datatrove's PIIFormatter (e-mail and public IPv4) over every text."""
    try:
        from datatrove.pipeline.formatters import PIIFormatter
    except ImportError:
        return {
            "peer": "datatrove PIIFormatter",
            "skipped": "datatrove is not installed (pip install datatrove)",
        }
    formatter = PIIFormatter()
    texts = texts_of(frame)
    seconds, _ = timed(lambda: [formatter.format(t) for t in texts])
    same_kinds, _ = run_stage("pii", frame, PiiSettings(kinds=["email", "ip"]))
    return {
        "peer": "datatrove PIIFormatter (email + ip)",
        "seconds": seconds,
        "tunelab_same_kinds_seconds": same_kinds,
    }


# >>> quality peer
def quality_peer(frame: pl.DataFrame) -> dict[str, Any]:
    """datatrove's GopherRepetitionFilter + GopherQualityFilter over every text (the checks closest to the
    quality stage), with the whitespace tokenizer benchmarks/quality_bench.py gives them (its peer, reused)."""
    try:
        import datatrove  # noqa: F401
    except ImportError:
        return {
            "peer": "datatrove Gopher filters",
            "skipped": "datatrove is not installed (pip install datatrove)",
        }
    from quality_bench import datatrove_peer  # benchmarks/ is on sys.path when this script runs

    seconds, repetition_drops, quality_drops = datatrove_peer(texts_of(frame))
    return {
        "peer": "datatrove GopherRepetitionFilter + GopherQualityFilter",
        "seconds": seconds,
        "dropped_texts": {"repetition": repetition_drops, "quality": quality_drops},
    }


# <<< quality peer

PEERS: dict[str, Callable[[pl.DataFrame], dict[str, Any]]] = {
    "language": language_peer,
    "pii": pii_peer,
    "quality": quality_peer,
}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", help="also write the results to this file")
    args = parser.parse_args(argv)

    print(f"generating {args.rows:,} rows ...", file=sys.stderr)
    frame = generate(args.rows, args.seed)
    results: dict[str, Any] = {"rows": args.rows, "texts": 3 * args.rows, "stages": {}}
    for name in SIGNAL_STAGES:
        if name not in registry.STAGES:
            results["stages"][name] = {"skipped": "not registered"}
            continue
        print(f"{name}: warm-up on {WARMUP_ROWS:,} rows, then {args.rows:,} rows ...", file=sys.stderr)
        run_stage(name, frame.head(WARMUP_ROWS))
        seconds, out = run_stage(name, frame)
        row: dict[str, Any] = {
            "seconds": round(seconds, 3),
            "rows_per_s": round(args.rows / seconds),
            "decisions": out.decisions.height,
            "dropped": int((~out.decisions["kept"]).sum()),
            "signals": 0 if out.signals is None else out.signals.height,
        }
        if name in PEERS:
            print(f"{name}: peer ...", file=sys.stderr)
            peer = PEERS[name](frame)
            for key in ("seconds", "tunelab_same_kinds_seconds"):
                if key in peer:
                    peer[key.replace("seconds", "rows_per_s")] = round(args.rows / peer[key])
                    peer[key] = round(peer[key], 3)
            row["peer"] = peer
        results["stages"][name] = row

    print(f"{'stage':10} {'rows/s':>10} {'seconds':>8} {'dropped':>8}  peer", file=sys.stdout)
    for name, row in results["stages"].items():
        if "skipped" in row:
            print(f"{name:10} skipped: {row['skipped']}")
            continue
        peer = row.get("peer", {})
        described = (
            f"{peer['peer']}: {peer['rows_per_s']:,} rows/s"
            + (f" (tunelab, same kinds: {peer['tunelab_same_kinds_rows_per_s']:,} rows/s)"
               if "tunelab_same_kinds_rows_per_s" in peer else "")
            if "rows_per_s" in peer
            else peer.get("skipped", "")
        )  # fmt: skip
        print(f"{name:10} {row['rows_per_s']:>10,} {row['seconds']:>8} {row['dropped']:>8}  {described}")
    if args.json:
        with open(args.json, "w", encoding="utf-8") as handle:
            json.dump(results, handle, indent=2)
    return results


if __name__ == "__main__":
    main()
