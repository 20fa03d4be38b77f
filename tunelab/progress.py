"""Progress on stderr, always: a rich bar on a terminal, a plain line every few seconds otherwise.

stdout carries results only (ids, tables, JSON), so `RUN=$(tunelab train sft r.yaml)` still shows progress,
and a log file of a CI job or `nohup` run gets a readable line per interval instead of bar redraws.
`show=False` silences it (library calls from tests); otherwise the stream decides the form.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Protocol, TextIO, TypeVar

T = TypeVar("T")
# a non-terminal gets one line per task at most this often (and one when the task completes)
LINE_EVERY_S = 5.0


def enabled() -> bool:
    return sys.stderr.isatty()


class Bar(Protocol):
    """What callers use of a progress display (a subset of rich's Progress)."""

    def add_task(self, description: str, total: float | None = None, **fields: Any) -> int: ...

    def update(self, task_id: int, **changes: Any) -> None: ...

    def advance(self, task_id: int, advance: float = 1) -> None: ...


@dataclass
class _Task:
    description: str
    total: float | None
    completed: float = 0.0
    status: str = ""
    started: float = field(default_factory=time.monotonic)
    # what was already done when the task began (a resumed run): not part of this session's rate
    done_before: float = 0.0
    last_line: float = 0.0
    done_said: bool = False


class LineProgress:
    """rich's Progress interface as plain lines on a stream: `curate: minhash 3/9 (33%) 12 s, ETA 24 s  8,000 rows`."""

    def __init__(self, stream: TextIO, every_s: float = LINE_EVERY_S) -> None:
        self.stream, self.every_s = stream, every_s
        self.tasks: list[_Task] = []

    def add_task(self, description: str, total: float | None = None, **fields: Any) -> int:
        task = _Task(
            description, total, float(fields.get("completed", 0) or 0), str(fields.get("status", ""))
        )
        task.done_before = task.completed
        task.last_line = task.started  # the first line comes after `every_s`, not at once
        self.tasks.append(task)
        return len(self.tasks) - 1

    def update(self, task_id: int, **changes: Any) -> None:
        task = self.tasks[task_id]
        if changes.get("description") is not None:
            task.description = str(changes["description"])
        if changes.get("total") is not None:
            task.total = changes["total"]
        if changes.get("completed") is not None:
            task.completed = float(changes["completed"])
        if changes.get("advance") is not None:
            task.completed += float(changes["advance"])
        if changes.get("status") is not None:
            task.status = str(changes["status"])
        self._maybe_line(task)

    def advance(self, task_id: int, advance: float = 1) -> None:
        self.update(task_id, advance=advance)

    def _maybe_line(self, task: _Task) -> None:
        now = time.monotonic()
        finished = task.total is not None and task.completed >= task.total
        if finished and not task.done_said:
            task.done_said = True
        elif now - task.last_line < self.every_s:
            return
        task.last_line = now
        self.stream.write(line_for(task, now) + "\n")
        self.stream.flush()


def line_for(task: _Task, now: float) -> str:
    elapsed = now - task.started
    parts = [task.description]
    if task.total:
        share = task.completed / task.total
        parts.append(f"{task.completed:,.0f}/{task.total:,.0f} ({share:.0%})")
        done_here = task.completed - task.done_before
        eta = elapsed * (task.total - task.completed) / done_here if done_here > 0 and share < 1 else None
        parts.append(f"{elapsed:,.0f} s" + (f", ETA {eta:,.0f} s" if eta is not None else ""))
    else:
        parts.append(f"{task.completed:,.0f}, {elapsed:,.0f} s")
    if task.status:
        parts.append(task.status)
    return "  ".join(parts)


class _Silent:
    def add_task(self, description: str, total: float | None = None, **fields: Any) -> int:
        return 0

    def update(self, task_id: int, **changes: Any) -> None:
        pass

    def advance(self, task_id: int, advance: float = 1) -> None:
        pass


@contextmanager
def progress(show: bool | None = None, stream: TextIO | None = None) -> Iterator[Bar]:
    """A progress display on stderr: a rich bar on a terminal, lines elsewhere; nothing when show=False."""
    if show is False:
        yield _Silent()
        return
    stream = stream or sys.stderr
    if not stream.isatty():
        yield LineProgress(stream)
        return
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        SpinnerColumn,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    bar = Progress(
        SpinnerColumn(),
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        TextColumn("{task.fields[status]}"),
        console=Console(file=stream),
        transient=False,
    )
    with bar:
        yield _RichBar(bar)


class _RichBar:
    """rich's Progress with `status` always set (its column reads task.fields['status'])."""

    def __init__(self, bar: Any) -> None:
        self.bar = bar

    def add_task(self, description: str, total: float | None = None, **fields: Any) -> int:
        fields.setdefault("status", "")
        return self.bar.add_task(description, total=total, **fields)

    def update(self, task_id: int, **changes: Any) -> None:
        self.bar.update(task_id, **changes)

    def advance(self, task_id: int, advance: float = 1) -> None:
        self.bar.advance(task_id, advance)


def track(
    items: Iterable[T], description: str, total: int | None = None, show: bool | None = None
) -> Iterator[T]:
    with progress(show) as bar:
        task = bar.add_task(description, total=total, status="")
        for item in items:
            yield item
            bar.advance(task)
