"""Streams every trainer log into the warehouse's train_log and shows the training's progress on stderr.

The progress display (tunelab.progress) counts optimizer steps against the run's total and carries the last
logged loss: on a terminal a rich bar with ETA, elsewhere a line every few seconds such as
`train sft-20250101-120000-ab12 step  12/30 (40%)  8 s, ETA 12 s  loss 2.3141`.
"""

from __future__ import annotations

import math
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from transformers import TrainerCallback

from tunelab.progress import progress
from tunelab.train import distributed
from tunelab.warehouse import store

# trl/transformers log keys -> train_log columns; anything else lands in `extra`
LOG_COLUMNS = {
    "loss": "loss",
    "eval_loss": "eval_loss",
    "learning_rate": "learning_rate",
    "grad_norm": "grad_norm",
    "rewards/chosen": "rewards_chosen",
    "rewards/rejected": "rewards_rejected",
    "rewards/margins": "rewards_margins",
    "rewards/accuracies": "rewards_accuracies",
    "logps/chosen": "logps_chosen",
    "logps/rejected": "logps_rejected",
}


def _plain(value: Any) -> Any:
    """JSON-safe scalars: tensors/numpy → float, NaN/inf kept as text so `extra` stays valid JSON."""
    if hasattr(value, "item"):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    return value


def train_log_row(logs: dict[str, Any], step: int, epoch: float | None) -> dict[str, Any]:
    row: dict[str, Any] = {"step": step, "epoch": logs.get("epoch", epoch)}
    extra: dict[str, Any] = {}
    for key, value in logs.items():
        if key == "epoch":
            continue
        column = LOG_COLUMNS.get(key)
        if column is not None:
            row[column] = _plain(value)
        else:
            extra[key] = _plain(value)
    row["extra"] = extra or None
    return row


class WarehouseLogCallback(TrainerCallback):
    """Batches log rows into `store.log_train` (every `flush_every_s` seconds and at the end).

    Rows are flushed before every checkpoint (a step's log precedes its save), so a killed run never has a
    checkpoint whose earlier steps are missing from train_log; `skip_steps` are steps a resumed run already
    logged before it was interrupted, not written twice.
    """

    def __init__(
        self,
        db: Path,
        run_id: str,
        show_progress: bool | None = None,
        skip_steps: set[int] | None = None,
        flush_every_s: float = 5.0,
        description: str = "train step",
    ) -> None:
        self.db, self.run_id = Path(db), run_id
        self.show_progress = show_progress
        self.skip_steps = skip_steps or set()
        # a warehouse write costs ~50 ms of CPU (open, transaction, close): batching by time keeps the
        # training loop within a few percent of a bare trainer while the dashboard still sees fresh rows
        self.flush_every_s = flush_every_s
        self.last_flush = time.monotonic()
        self.description = description
        self.pending: list[dict[str, Any]] = []
        self.rows_written = 0
        self.last_loss: float | None = None
        self._stack: ExitStack | None = None
        self._bar: Any = None
        self._task: Any = None
        # under `accelerate launch` every process trains, but only rank 0 logs and shows progress
        self.active = distributed.is_main()

    def flush(self) -> None:
        if not self.pending:
            return
        rows, self.pending = self.pending, []
        store.log_train(self.db, self.run_id, rows)
        self.last_flush = time.monotonic()
        self.rows_written += len(rows)

    def close(self) -> None:
        try:
            self.flush()
        finally:
            if self._stack is not None:
                self._stack.close()
                self._stack = None

    def _status(self) -> str:
        return "" if self.last_loss is None else f"loss {self.last_loss:.4f}"

    def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if self._stack is None and self.active:
            self._stack = ExitStack()
            self._bar = self._stack.enter_context(progress(self.show_progress))
            self._task = self._bar.add_task(
                self.description, total=state.max_steps, completed=state.global_step, status=""
            )

    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if self._bar is not None:
            self._bar.update(self._task, completed=state.global_step, status=self._status())

    def on_log(
        self, args: Any, state: Any, control: Any, logs: dict[str, Any] | None = None, **kwargs: Any
    ) -> None:
        if not logs or state.global_step in self.skip_steps or not self.active:
            return
        row = train_log_row(logs, state.global_step, state.epoch)
        if isinstance(row.get("loss"), float):
            self.last_loss = row["loss"]
            if self._bar is not None:
                self._bar.update(self._task, status=self._status())
        self.pending.append(row)
        save_step = args.save_strategy == "steps" and state.global_step % int(args.save_steps) == 0
        if save_step or time.monotonic() - self.last_flush >= self.flush_every_s:
            self.flush()

    def on_train_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self.flush()
