"""Rich progress bars that stay quiet when stdout is not a terminal (CI, pipes, tests)."""

from __future__ import annotations

import sys
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import TypeVar

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

T = TypeVar("T")


def enabled() -> bool:
    return sys.stdout.isatty()


@contextmanager
def progress(show: bool | None = None) -> Iterator[Progress]:
    """A rich Progress; disabled (no output at all) unless stdout is a TTY or `show` is True."""
    show = enabled() if show is None else show
    bar = Progress(
        SpinnerColumn(),
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        TextColumn("{task.fields[status]}"),
        console=Console(stderr=False),
        disable=not show,
        transient=False,
    )
    with bar:
        yield bar


def track(
    items: Iterable[T], description: str, total: int | None = None, show: bool | None = None
) -> Iterator[T]:
    with progress(show) as bar:
        task = bar.add_task(description, total=total, status="")
        for item in items:
            yield item
            bar.advance(task)
