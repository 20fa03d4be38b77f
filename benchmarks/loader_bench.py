"""Loader speed: `load_dataset_records` (full accounting: every line a row or a quarantine row, adapters,
labels, ids) against `polars.read_ndjson` on the same JSONL file, in the same process.

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
    parser.add_argument("--repeat", type=int, default=2, help="best of N timings")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "sft.jsonl"
        write_file(path, args.rows, 0)
        clean_size = path.stat().st_size
        # polars cannot read a file with a malformed line at all: time it on the clean file
        polars_s = min(_timed(lambda: pl.read_ndjson(path)) for _ in range(args.repeat))
        cfg = DatasetConfig(path=path, name="bench")
        clean_s = min(_timed(lambda: load_dataset_records(cfg)) for _ in range(args.repeat))
        result = load_dataset_records(cfg)
        assert result.frame.height + result.quarantine.height == result.read == args.rows
        write_file(path, args.rows, args.bad)
        dirty_s = min(_timed(lambda: load_dataset_records(cfg)) for _ in range(args.repeat))
        dirty = load_dataset_records(cfg)
        assert dirty.frame.height + dirty.quarantine.height == dirty.read == args.rows
        assert dirty.quarantine.height == args.bad
    print(f"rows {args.rows:,}, file {clean_size / 1e6:.0f} MB")
    print(f"polars.read_ndjson            {polars_s:7.2f} s")
    print(f"load_dataset_records (clean)  {clean_s:7.2f} s   ratio {clean_s / polars_s:.2f}x")
    print(f"load_dataset_records ({args.bad} bad) {dirty_s:7.2f} s   ratio {dirty_s / polars_s:.2f}x")


def _timed(fn) -> float:
    started = time.perf_counter()
    fn()
    return time.perf_counter() - started


if __name__ == "__main__":
    main()
