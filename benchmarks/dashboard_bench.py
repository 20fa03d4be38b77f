"""Render time of each dashboard page on a big synthetic warehouse (goal: < 3 s per page).

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/dashboard_bench.py [--samples 1000000] [--predictions 100000]

The warehouse is generated in DuckDB SQL (range()), not Python loops: 1M samples with Korean texts,
1M decisions (one per sample: 80% kept, the rest dropped for exact/near duplicates, length, balance),
10k quarantined lines, 10 runs with 2,000 logged steps each, and 100k predictions (3 models) with
3 per-sample scores each. Each page is rendered through Streamlit's AppTest, cold (query cache
cleared) and warm (a rerun, as after a widget click); the baseline is the same pages on a 1,000-sample
warehouse generated the same way in the same run.
"""

from __future__ import annotations

import argparse
import os
import re
import tempfile
import time
from pathlib import Path
from typing import Any

import duckdb

from tunelab.warehouse.connection import write_connection

VIEWS = Path(__file__).resolve().parents[1] / "tunelab" / "dashboards" / "views"
# (label, view script, query parameters): every audit tab and the regressions view count as pages
PAGES = (
    ("audit", "audit", {}),
    ("audit:lengths", "audit", {"tab": "Lengths"}),
    ("audit:dups", "audit", {"tab": "Duplicates"}),
    ("audit:labels", "audit", {"tab": "Labels"}),
    ("audit:quarantine", "audit", {"tab": "Quarantine"}),
    ("runs", "runs", {}),
    ("predictions", "predictions", {}),
    ("predictions:regr", "predictions", {"regressions": "true"}),
    ("sql", "sql", {}),
)
GOAL_S = 3.0
LABELS_SQL = repr(
    ["friendly", "teto", "formal", "casual", "expert", "child", "poet", "news"]
)  # a DuckDB list literal


def _used(sql: str, params: dict[str, int]) -> dict[str, int]:
    """DuckDB refuses named parameters a statement does not use."""
    return {k: v for k, v in params.items() if re.search(rf"\${k}\b", sql)}


def generate(db: Path, samples: int, predictions: int, runs: int = 10, steps: int = 2000) -> None:
    """Fill a fresh warehouse with SQL only; sizes are exact (samples rows, samples decisions, ...)."""
    with write_connection(db) as con:  # creates the schema exactly as the product does

        def run(sql: str) -> None:
            con.execute(sql, _used(sql, params))

        params = {
            "n": samples,
            "q": max(samples // 100, 1),
            "p": -(-predictions // 3),
            "runs": runs,
            "steps": steps,
        }
        run(
            """INSERT INTO curations VALUES ('bench-1', 'bench', 'bench.jsonl', 'sft', 'dv-bench',
               '{"curate": {"stages": ["schema", "length", "exact", "minhash", "balance"]}}',
               TIMESTAMP '2026-11-22 04:00:00', $n + $q,
               $n - ($n // 10) * 2, ($n // 10) * 2, $q, '{}', 'curations/bench-1')""",
        )
        run(
            f"""INSERT INTO samples (curation_id, sample_id, dataset, source_row, source_line, label, prompt, response)
               SELECT 'bench-1', 'bench:' || i, 'bench', i, i + 1, {LABELS_SQL}[1 + i % 8],
                      repeat('서울의 인구는 몇 명인가요? ', 1 + (i * 7919) % 12) || i,
                      repeat('서울의 인구는 약 천만 명입니다. ', 1 + (i * 104729) % 20)
               FROM range($n) t(i)""",
        )
        # i % 10: 0 exact_dup, 1 near_dup_minhash (of a sample 1..1000 ahead), else kept; 4 drops of 100 are
        # split off as too_short / overflow so every stage of the funnel has rows
        run(
            """INSERT INTO decisions
               SELECT 'bench-1', 'bench:' || i,
                      CASE WHEN i % 10 = 0 THEN 'exact' WHEN i % 10 = 1 AND i % 100 < 50 THEN 'minhash'
                           WHEN i % 10 = 1 AND i % 100 < 80 THEN 'length' WHEN i % 10 = 1 THEN 'balance'
                           ELSE 'final' END,
                      i % 10 > 1,
                      CASE WHEN i % 10 = 0 THEN 'exact_dup' WHEN i % 10 = 1 AND i % 100 < 50 THEN 'near_dup_minhash'
                           WHEN i % 10 = 1 AND i % 100 < 80 THEN 'too_short:response_chars<5'
                           WHEN i % 10 = 1 THEN 'overflow:label=teto' END,
                      CASE WHEN i % 10 = 0 OR (i % 10 = 1 AND i % 100 < 50)
                           THEN 'bench:' || ((i // 1000) * 1000 + 2) END,
                      CASE WHEN i % 10 = 0 THEN 1.0 WHEN i % 10 = 1 THEN 0.8 + (i % 20) / 100 END,
                      NULL
               FROM range($n) t(i)""",
        )
        run(
            """INSERT INTO quarantine SELECT 'bench-1', 'bench', 'bench.jsonl', $n + i + 1, $n + i,
                      'invalid JSON: Expecting value', '{"prompt": "깨진 줄 ' || i || '"'
               FROM range($q) t(i)""",
        )
        run(
            """INSERT INTO runs (run_id, kind, status, curation_id, parent_run_id, base_model, started_at, finished_at)
               SELECT 'run-' || r, CASE WHEN r % 2 = 0 THEN 'sft' ELSE 'dpo' END, 'finished', 'bench-1',
                      CASE WHEN r % 2 = 1 THEN 'run-' || (r - 1) END, 'tiny-llama',
                      TIMESTAMP '2026-11-22 04:00:00' + to_minutes(r::BIGINT),
                      TIMESTAMP '2026-11-22 04:00:30' + to_minutes(r::BIGINT)
               FROM range($runs) t(r)""",
        )
        run(
            """INSERT INTO train_log (run_id, step, epoch, loss, eval_loss, learning_rate, rewards_chosen,
                                      rewards_rejected, rewards_margins, rewards_accuracies)
               SELECT 'run-' || r, s, s / $steps, 2.5 / sqrt(s), CASE WHEN s % 100 = 0 THEN 2.6 / sqrt(s) END,
                      2e-4, CASE WHEN r % 2 = 1 THEN s / 1000 END, CASE WHEN r % 2 = 1 THEN -s / 2000 END,
                      CASE WHEN r % 2 = 1 THEN 1.5 * s / 1000 END, CASE WHEN r % 2 = 1 THEN 0.5 + s / (4.0 * $steps) END
               FROM range($runs) a(r), range(1, $steps + 1) b(s)""",
        )
        run("INSERT INTO evals VALUES ('bench-eval', 'bench-eval-set', 'bench-1', now(), '{}')")
        run(
            f"""INSERT INTO predictions
               SELECT 'bench-eval', m, CASE WHEN m <> 'base' THEN 'run-0' END, 'bench-eval:' || i,
                      '김치찌개 끓이는 법을 알려주세요 ' || i, '돼지고기와 김치를 볶은 뒤 물을 붓고 끓입니다.',
                      '[' || m || '] 김치를 볶고 물을 부어 끓여요 ' || i, {LABELS_SQL}[1 + i % 8], 0.1, NULL
               FROM range($p) t(i), (VALUES ('base'), ('sft'), ('dpo')) v(m)""",
        )
        run(
            """INSERT INTO scores
               SELECT 'bench-eval', m, 'bench-eval:' || i, metric,
                      ((i * 7919 + hash(m || metric) % 1000) % 1000) / 1000.0 * CASE WHEN metric = 'chrf' THEN 100 ELSE 1 END,
                      metric || '|bench'
               FROM range($p) t(i), (VALUES ('base'), ('sft'), ('dpo')) v(m),
                    (VALUES ('rougeL'), ('bleu'), ('chrf')) w(metric)""",
        )
        run(
            """INSERT INTO eval_metrics SELECT eval_id, model, metric, avg(value), any_value(signature)
               FROM scores GROUP BY ALL"""
        )
    # the dashboard opens read-only: fold the WAL into the file first, as a finished ingest leaves it
    with duckdb.connect(str(db)) as con:
        con.execute("CHECKPOINT")


def render_times(db: Path) -> dict[str, Any]:
    """(cold, warm) seconds per page: cold clears Streamlit's query cache first; warm is a rerun."""
    import streamlit as st
    from streamlit.logger import set_log_level
    from streamlit.testing.v1 import AppTest

    set_log_level("error")  # AppTest outside a server warns on every cached call

    os.environ["TUNELAB_WAREHOUSE"] = str(db)
    times = {}
    for label, view, query_params in PAGES:
        st.cache_data.clear()
        # the query cache is keyed on the file's mtime: a new mtime guarantees a cold run even where
        # clear() reaches a different cache than the AppTest runtime's
        os.utime(db, ns=(time.time_ns(), time.time_ns()))
        at = AppTest.from_file(str(VIEWS / f"{view}.py"), default_timeout=120)
        for key, value in query_params.items():
            at.query_params[key] = value
        start = time.perf_counter()
        at.run()
        cold = time.perf_counter() - start
        if at.exception:
            raise RuntimeError(f"{label}: {at.exception[0].value}")
        start = time.perf_counter()
        at.run()
        warm = time.perf_counter() - start
        times[label] = (cold, warm)
        if label == "audit":  # the page really read this warehouse
            read = next(m.value for m in at.metric if m.label == "Read")
            times["_read"] = read
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=1_000_000)
    parser.add_argument("--predictions", type=int, default=100_000)
    parser.add_argument(
        "--dir", type=Path, default=None, help="keep the warehouses here (default: a temp dir)"
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = args.dir or Path(tmp)
        root.mkdir(parents=True, exist_ok=True)
        small, big = root / "small.duckdb", root / "big.duckdb"
        for path in (small, big):
            for leftover in (path, path.with_name(path.name + ".wal")):
                leftover.unlink(missing_ok=True)
        generate(small, 1_000, 3_000)
        start = time.perf_counter()
        generate(big, args.samples, args.predictions)
        build_s = time.perf_counter() - start
        size_mb = big.stat().st_size / 2**20
        print(
            f"warehouse: {args.samples:,} samples, {args.samples:,} decisions, 10 runs, "
            f"{-(-args.predictions // 3) * 3:,} predictions; built in {build_s:.1f} s, {size_mb:.0f} MiB"
        )
        render_times(small)  # imports and Streamlit's first-run setup, so neither column pays them
        baseline = render_times(small)
        measured = render_times(big)
    print(
        f"the audit page read its numbers from the warehouse: Read = {measured.pop('_read')} (1k: {baseline.pop('_read')})"
    )
    print(
        f"{'page':<18} {'1k cold s':>10} {'big cold s':>11} {'big warm s':>11} {'cold ratio':>11}  goal < {GOAL_S:g} s"
    )
    for page, _, _ in PAGES:
        base_cold = baseline[page][0]
        cold, warm = measured[page]
        verdict = "ok" if cold < GOAL_S else "SLOW"
        print(
            f"{page:<18} {base_cold:>10.2f} {cold:>11.2f} {warm:>11.2f} {cold / base_cold:>10.1f}x  {verdict}"
        )


if __name__ == "__main__":
    main()
