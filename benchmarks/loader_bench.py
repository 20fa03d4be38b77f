"""Loader speed: `load_dataset_records` (full accounting: every line a row or a quarantine row, adapters,
labels, ids) against `polars.read_ndjson` on the same JSONL file, in the same process, timings in pairs.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/loader_bench.py --rows 1000000

The file: realistic Korean SFT rows (alpaca instruction/input/output, a label, an id; a few hundred
characters each), with `--bad` malformed lines spread through it. Prints seconds and the ratio.
"""

from __future__ import annotations

import argparse
import json
import random
import tempfile
import time
from pathlib import Path

import polars as pl

from tunelab.records.config import DatasetConfig
from tunelab.records.loader import load_dataset_records

WORDS = (
    "서울 부산 날씨 오늘 내일 회의 보고서 작성 요약 번역 설명 예시 코드 함수 데이터 모델 학습 평가 결과 "
    "고객 문의 답변 정리 일정 여행 음식 추천 건강 운동 공부 방법 이유 차이 장점 단점 문제 해결"
).split()
ENDINGS = ("해 주세요.", "알려 줘.", "무엇인가요?", "설명해 줄래?", "정리해 주세요.")


def sentence(rng: random.Random, words: int) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(words)) + " " + rng.choice(ENDINGS)


def write_file(path: Path, rows: int, bad: int, seed: int = 0) -> None:
    rng = random.Random(seed)
    bad_at = set(rng.sample(range(rows), min(bad, rows)))
    with path.open("w", encoding="utf-8") as out:
        for i in range(rows):
            if i in bad_at:
                out.write('{"instruction": "잘린 줄", "output": \n')
                continue
            row = {
                "id": f"sft_{i}",
                "instruction": sentence(rng, rng.randint(5, 25)),
                "input": sentence(rng, rng.randint(0, 20)) if rng.random() < 0.4 else "",
                "output": " ".join(sentence(rng, rng.randint(5, 20)) for _ in range(rng.randint(1, 6))),
                "label": rng.choice(("egen", "teto")),
            }
            out.write(json.dumps(row, ensure_ascii=False) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--bad", type=int, default=100, help="malformed lines spread through the file")
    parser.add_argument("--repeat", type=int, default=3, help="timed pairs per file")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        clean, dirty = Path(tmp) / "sft.jsonl", Path(tmp) / "sft_bad.jsonl"
        write_file(clean, args.rows, 0)
        write_file(dirty, args.rows, args.bad)
        clean_size = clean.stat().st_size
        # polars cannot read a file with a malformed line at all: both files are compared with polars on the
        # clean one. Each tunelab timing is paired with a polars timing taken just before it, and the ratio is
        # the median of the pairs: on a shared machine the load changes between runs, not within a pair
        polars_s, clean_s, clean_ratio = _paired(clean, clean, args.repeat)
        result = load_dataset_records(DatasetConfig(path=clean, name="bench"))
        assert result.frame.height + result.quarantine.height == result.read == args.rows
        _, dirty_s, dirty_ratio = _paired(clean, dirty, args.repeat)
        dirty_result = load_dataset_records(DatasetConfig(path=dirty, name="bench"))
        assert dirty_result.frame.height + dirty_result.quarantine.height == dirty_result.read == args.rows
        assert dirty_result.quarantine.height == args.bad
    print(
        f"rows {args.rows:,}, file {clean_size / 1e6:.0f} MB; best of {args.repeat}, ratio: median of pairs"
    )
    print(f"polars.read_ndjson            {polars_s:7.2f} s")
    print(f"load_dataset_records (clean)  {clean_s:7.2f} s   ratio {clean_ratio:.2f}x")
    print(f"load_dataset_records ({args.bad} bad) {dirty_s:7.2f} s   ratio {dirty_ratio:.2f}x")


def _paired(reference: Path, path: Path, repeat: int) -> tuple[float, float, float]:
    """(best polars seconds on `reference`, best tunelab seconds on `path`, median ratio of the pairs)."""
    cfg = DatasetConfig(path=path, name="bench")
    pairs = [
        (_timed(lambda: pl.read_ndjson(reference)), _timed(lambda: load_dataset_records(cfg)))
        for _ in range(repeat)
    ]
    ratios = sorted(ours / theirs for theirs, ours in pairs)
    return min(p for p, _ in pairs), min(o for _, o in pairs), ratios[len(ratios) // 2]


def _timed(fn) -> float:
    started = time.perf_counter()
    fn()
    return time.perf_counter() - started


if __name__ == "__main__":
    main()
