"""The served model: loaded through `tunelab.modeling` (the aliases, local folders, run adapters that
training and evaluation use), prompts rendered by the tokenizer's own chat template, generation in one
worker thread.

One worker means one `generate` at a time: a 135M model on two cores gains nothing from overlapping
calls, and torch's global RNG (the request's seed) must not be shared. Requests waiting with the same
settings (greedy or the same sampling parameters, max_tokens and stop strings) are taken together, up to
--max-batch, into one left-padded `generate` call; a seeded sampled request always runs alone, so its
seed alone decides its tokens.
"""

from __future__ import annotations

import os
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tunelab.errors import UserError
from tunelab.modeling.chat import has_chat_template, render_for_generation
from tunelab.modeling.config import SMOLLM_MODEL, TINY_MODEL, ModelSettings
from tunelab.modeling.loading import resolve_base_model
from tunelab.modeling.resolve import adapter_base_model, is_adapter_dir, load_for_generation
from tunelab.serve.api import ApiError, ChatRequest, Completion
from tunelab.warehouse import store
from tunelab.workspace import Workspace

ALIASES = (SMOLLM_MODEL, TINY_MODEL)


def _same_model(a: str, b: str) -> bool:
    pa, pb = Path(a).expanduser(), Path(b).expanduser()
    if pa.exists() and pb.exists():
        return pa.resolve() == pb.resolve()
    return a == b


def check_local(model: str, settings: ModelSettings) -> None:
    """A hub name must already be in the local Hugging Face cache: serve never downloads, and a name that
    is not there fails now with one line instead of after the hub client's connection retries."""
    if model in ALIASES or Path(model).expanduser().exists():
        return
    from huggingface_hub import constants, try_to_load_from_cache

    try:
        found = try_to_load_from_cache(model, "config.json", revision=settings.revision)
    except ValueError:  # HFValidationError: not even a valid repo id (a mistyped folder, most often)
        found = None
    if not isinstance(found, str):
        raise UserError(
            f"serve: MODEL '{model}' is not a folder, an alias ({', '.join(ALIASES)}) or a model in the "
            f"Hugging Face cache ({constants.HF_HUB_CACHE}); tunelab serve does not download — "
            "fetch it first (`hf download NAME`) or pass its folder"
        )


def adapter_base(adapter: str, workspace: Workspace) -> tuple[str, str]:
    """(the adapter folder, the base model it was trained on) for a run id or an adapter folder."""
    path = Path(adapter).expanduser()
    if path.exists():
        if not is_adapter_dir(path):
            raise UserError(f"--adapter: {path} has no adapter_config.json (not a LoRA adapter folder)")
        return str(path), adapter_base_model(path)
    db = workspace.warehouse
    run = store.get_run(db, adapter) if db.is_file() else None
    if run is None:
        raise UserError(f"--adapter: '{adapter}' is neither an adapter folder nor a run id in {db}")
    if not run.get("adapter_path"):
        raise UserError(f"--adapter: run {adapter} has no adapter (status {run.get('status')})")
    return str(run["adapter_path"]), str(run["base_model"])


def load_served_model(
    model: str, adapter: str | None, workspace: Workspace, quantization: str = "none"
) -> tuple[Any, Any]:
    """(model in eval mode, tokenizer) for MODEL, with the LoRA adapter (run id or folder) on top."""
    settings = ModelSettings(base_model=model, quantization=quantization)  # type: ignore[arg-type]
    check_local(model, settings)
    # the hub client must not reach out (a cached model's revision check would wait on the network)
    os.environ["HF_HUB_OFFLINE"] = "1"
    if adapter is None:
        loaded, tokenizer, _ = load_for_generation("base", settings, workspace, {})
        return loaded, tokenizer
    _, trained_on = adapter_base(adapter, workspace)
    base = resolve_base_model(settings, workspace)
    if not _same_model(base, trained_on):
        raise UserError(
            f"--adapter: {adapter} was trained on {trained_on}, not on {model} ({base}); "
            f"serve it with `tunelab serve {trained_on} --adapter {adapter}`"
        )
    loaded, tokenizer, _ = load_for_generation(adapter, settings, workspace, {})
    return loaded, tokenizer


@dataclass
class _Job:
    request: ChatRequest
    ids: list[int]
    done: threading.Event = field(default_factory=threading.Event)
    result: Completion | None = None
    error: BaseException | None = None


@dataclass
class EngineStats:
    completions: int = 0  # requests answered with a completion
    batches: int = 0  # generate calls
    completion_tokens: int = 0
    generate_s: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        return {
            "completions": self.completions,
            "batches": self.batches,
            "completion_tokens": self.completion_tokens,
            "generate_s": round(self.generate_s, 3),
        }


class Engine:
    """Chat requests in, completions out; `complete` blocks its (HTTP handler) thread until answered."""

    def __init__(self, model: Any, tokenizer: Any, max_batch: int = 1) -> None:
        self.model, self.tokenizer, self.max_batch = model, tokenizer, max(1, max_batch)
        self.context_length: int | None = getattr(model.config, "max_position_embeddings", None)
        eos = getattr(model.generation_config, "eos_token_id", None)
        eos_ids = set(eos if isinstance(eos, list) else [eos] if eos is not None else [])
        if tokenizer.eos_token_id is not None:
            eos_ids.add(tokenizer.eos_token_id)
        self.eos_ids = eos_ids
        self.pad_id = (
            tokenizer.pad_token_id if tokenizer.pad_token_id is not None else min(eos_ids, default=0)
        )
        # a chat template writes BOS itself; a template-less model needs the tokenizer's special tokens
        self.add_special = not has_chat_template(tokenizer)
        self.device = next(model.parameters()).device
        self.stats = EngineStats()
        self._pending: deque[_Job] = deque()
        self._cond = threading.Condition()
        self._closed = False
        # fast tokenizers are not safe to call from several handler threads at once ("Already borrowed")
        self._tokenizer_lock = threading.Lock()
        self._worker = threading.Thread(target=self._run, name="tunelab-serve-generate", daemon=True)
        self._worker.start()

    def prompt_ids(self, request: ChatRequest) -> list[int]:
        """The rendered prompt's token ids; ApiError 400 when prompt + max_tokens exceed the context."""
        with self._tokenizer_lock:
            text = render_for_generation(request.turns(), self.tokenizer)
            ids = self.tokenizer(text, add_special_tokens=self.add_special)["input_ids"]
        if self.context_length and len(ids) + request.max_tokens > self.context_length:
            raise ApiError(
                400,
                f"This model's maximum context length is {self.context_length} tokens. However, you requested "
                f"{len(ids) + request.max_tokens} tokens ({len(ids)} in the messages, {request.max_tokens} in "
                "the completion). Please reduce the length of the messages or completion.",
                param="messages",
                code="context_length_exceeded",
            )
        return list(ids)

    def complete(self, request: ChatRequest) -> Completion:
        job = _Job(request, self.prompt_ids(request))
        with self._cond:
            self._pending.append(job)
            self._cond.notify()
        job.done.wait()
        if job.error is not None:
            raise job.error
        assert job.result is not None
        return job.result

    def close(self) -> None:
        """Stop the worker once the waiting requests are answered (the model can then be freed)."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        # joined, not left as a daemon: a daemon thread still inside torch when the interpreter exits made
        # the process abort ("terminate called without an active exception", SIGABRT) after SIGTERM
        self._worker.join(timeout=60)

    def _take(self) -> list[_Job] | None:
        with self._cond:
            while not self._pending and not self._closed:
                self._cond.wait()
            if not self._pending:
                return None
            first = self._pending.popleft()
            batch, key = [first], first.request.batch_key
            if key is not None:
                for job in list(self._pending):
                    if len(batch) >= self.max_batch:
                        break
                    if job.request.batch_key == key:
                        self._pending.remove(job)
                        batch.append(job)
            return batch

    def _run(self) -> None:
        while True:
            batch = self._take()
            if batch is None:
                return
            try:
                for job, result in zip(batch, self._generate(batch), strict=True):
                    job.result = result
            except BaseException as exc:  # handed to each waiting handler, which answers 500
                for job in batch:
                    job.error = exc
            finally:
                for job in batch:
                    job.done.set()

    def _generate(self, batch: list[_Job]) -> list[Completion]:
        import torch

        request = batch[0].request  # the batch shares its settings (batch_key)
        width = max(len(job.ids) for job in batch)
        input_ids = torch.full((len(batch), width), self.pad_id, dtype=torch.long)
        attention = torch.zeros((len(batch), width), dtype=torch.long)
        for row, job in enumerate(batch):  # left padding: every row's new tokens start at `width`
            input_ids[row, width - len(job.ids) :] = torch.tensor(job.ids, dtype=torch.long)
            attention[row, width - len(job.ids) :] = 1
        kwargs: dict[str, Any] = {
            "max_new_tokens": request.max_tokens,
            "pad_token_id": self.pad_id,
            "eos_token_id": sorted(self.eos_ids),
        }
        if request.greedy:
            # a model's generation_config may carry sampling defaults; greedy must not warn about them
            kwargs.update(do_sample=False, temperature=None, top_p=None, top_k=None)
        else:
            # OpenAI's sampling has no top-k: 0 switches transformers' default top_k=50 off
            kwargs.update(do_sample=True, temperature=request.temperature, top_p=request.top_p, top_k=0)
        if request.stop:
            kwargs.update(stop_strings=list(request.stop), tokenizer=self.tokenizer)
        if request.seed is not None:
            torch.manual_seed(request.seed)
        began = time.perf_counter()
        with torch.inference_mode():
            out = self.model.generate(
                input_ids=input_ids.to(self.device), attention_mask=attention.to(self.device), **kwargs
            )
        spent = time.perf_counter() - began
        results = []
        for row, job in enumerate(batch):
            tokens = out[row, width:].tolist()
            end = next((i for i, t in enumerate(tokens) if t in self.eos_ids), None)
            # a row stopped by a stop string is padded while the others go on
            kept = tokens[: end if end is not None else len(tokens)]
            while end is None and kept and kept[-1] == self.pad_id and request.stop:
                kept.pop()
            with self._tokenizer_lock:
                text = self.tokenizer.decode(kept, skip_special_tokens=True)
            finish = "stop" if end is not None else "length"
            cut = min((i for i in (text.find(s) for s in request.stop) if i >= 0), default=None)
            if cut is not None:  # OpenAI leaves the stop sequence out of the text
                text, finish = text[:cut], "stop"
            count = len(kept) + (1 if end is not None else 0)  # the end-of-turn token was generated too
            results.append(Completion(text.strip(), len(job.ids), count, finish))
        self.stats.batches += 1
        self.stats.completions += len(batch)
        self.stats.completion_tokens += sum(r.completion_tokens for r in results)
        self.stats.generate_s += spent
        return results
