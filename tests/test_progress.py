"""Progress lines off a terminal: what a log file of a long run shows."""

from __future__ import annotations

import io

from tunelab.progress import LineProgress, line_for


def test_eta_of_a_resumed_task_counts_only_this_sessions_rate() -> None:
    bar = LineProgress(io.StringIO(), every_s=3600)
    task_id = bar.add_task("train sft-1 step", total=100, completed=50)  # resumed at step 50
    task = bar.tasks[task_id]
    bar.update(task_id, completed=60)
    # 10 steps in 20 s: 40 steps left take 80 s (counting the 50 done before would say 13 s)
    assert "60/100 (60%)  20 s, ETA 80 s" in line_for(task, task.started + 20)


def test_a_fresh_task_line_and_the_final_line() -> None:
    out = io.StringIO()
    bar = LineProgress(out, every_s=3600)
    task_id = bar.add_task("embedding rows", total=4, status="use-v3")
    task = bar.tasks[task_id]
    bar.advance(task_id, 1)
    assert line_for(task, task.started + 2) == "embedding rows  1/4 (25%)  2 s, ETA 6 s  use-v3"
    assert out.getvalue() == ""  # nothing before the interval
    bar.advance(task_id, 3)
    assert out.getvalue().startswith("embedding rows  4/4 (100%)")  # the finished task says so once
