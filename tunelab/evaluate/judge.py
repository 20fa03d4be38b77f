"""An LLM judge over any OpenAI-compatible `/v1/chat/completions` server (vLLM, llama.cpp, Ollama, TGI,
`transformers serve`, a hosted API).

Two modes:
- `rubric`: each answer alone gets a 1-10 score and the judge's reason (LogicKor-style Korean prompt).
- `pairwise`: each model against its baseline (the base, and each stage against its parent, the same
  comparisons as the table) on every prompt both answered, asked in both presentation orders. A verdict
  counts only when both orders agree; otherwise it is a tie marked inconsistent. The win rate (ties half)
  comes with a bootstrap interval and a sign-flip p-value against 0.5, and the order-consistency rate is
  reported beside it.

Judge output is untrusted text: a reply with no verdict or score is recorded as `unparsed` (never a crash,
never a guess). Every answered call is cached on disk under the workspace, keyed by (judge model, template
hash, rendered prompt, temperature, max_tokens), so a re-run asks only what is missing. Calls are retried
with backoff (tenacity) on connection errors, timeouts, 408/409/425/429 and 5xx (not 501/505: a server that
does not implement the request stops the run, like 401/403/404; another 4xx fails its call at once), run in
a bounded thread pool, and the judge signature (model, endpoint host, template hash, temperature) is
stored with every score.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
import threading
import warnings
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import polars as pl

from tunelab.errors import UserError
from tunelab.evaluate import stats
from tunelab.evaluate.compare import DELTA_COLUMNS, comparisons
from tunelab.evaluate.config import JudgeSettings
from tunelab.evaluate.metrics import METRIC_SCHEMA, SCORE_SCHEMA, degenerate_reason
from tunelab.progress import progress
from tunelab.workspace import Workspace

TEMPLATE_DIR = Path(__file__).with_name("judge_templates")
JUDGE_METRIC = "judge"  # rubric score 1-10 per answer (scores, eval_metrics, deltas like any metric)
WIN_RATE_METRIC = "judge_win_rate"  # pairwise, in eval_deltas: model's win rate over baseline (0.5 = even)
UNPARSED = "unparsed"
# placeholders each mode's template must hold ({{reference}} is optional in both)
REQUIRED_FIELDS = {"rubric": ("question", "answer"), "pairwise": ("question", "answer_a", "answer_b")}
OPTIONAL_FIELDS = ("reference",)
MAX_REASON_CHARS = 4000
NO_REFERENCE = "(없음)"
# statuses worth asking again: the server is busy or failing for now, not refusing the request
RETRY_STATUSES = frozenset({408, 409, 425, 429, 500, 502, 503, 504})
# statuses that no retry or other prompt fixes: stop the whole run with one line. 501/505 are 5xx but say
# the server does not do what is asked at all, so unlike other 5xx they are not worth a retry
FATAL_STATUSES = {
    401: "the API key was refused",
    403: "access denied",
    404: "no such endpoint or model",
    501: "the server does not implement this request",
    505: "the server does not support this HTTP version",
}


# ------------------------------------------------------------------------------------------- templates


@dataclass(frozen=True)
class Template:
    name: str
    text: str

    @property
    def sha(self) -> str:
        return hashlib.sha256(self.text.encode("utf-8")).hexdigest()[:12]

    def render(self, values: dict[str, str]) -> str:
        # one pass over the template: a prediction that itself contains "{{answer_b}}" is inserted as
        # text and never substituted again
        return _PLACEHOLDER.sub(lambda m: values.get(m.group(1), m.group(0)), self.text)


_PLACEHOLDER = re.compile(r"\{\{\s*([a-z_]+)\s*\}\}")


def load_template(settings: JudgeSettings) -> Template:
    """The template of `settings.rubric` (a shipped name or a file), else the shipped one for the mode and
    language; checked for the placeholders the mode fills."""
    wanted = settings.rubric or f"{settings.mode}.{settings.language}"
    shipped = TEMPLATE_DIR / f"{wanted}.txt"
    path = shipped if "/" not in wanted and shipped.is_file() else Path(wanted).expanduser()
    where = f"evaluate.judge.rubric: {wanted}"
    if not path.is_file():
        names = sorted(p.stem for p in TEMPLATE_DIR.glob("*.txt"))
        raise UserError(f"{where}: no such file or shipped template (shipped: {', '.join(names)})")
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise UserError(f"{where}: cannot read the template ({exc})") from None
    found = set(_PLACEHOLDER.findall(text))
    required = REQUIRED_FIELDS[settings.mode]
    missing = [f"{{{{{name}}}}}" for name in required if name not in found]
    if missing:
        raise UserError(f"{where}: a {settings.mode} template needs {', '.join(missing)}")
    unknown = sorted(found - set(required) - set(OPTIONAL_FIELDS))
    if unknown:
        allowed = ", ".join(f"{{{{{n}}}}}" for n in (*required, *OPTIONAL_FIELDS))
        raise UserError(
            f"{where}: unknown placeholder {{{{{unknown[0]}}}}} (a {settings.mode} template has {allowed})"
        )
    return Template(path.stem if path.parent == TEMPLATE_DIR else str(path), text)


# ------------------------------------------------------------------------------------------- endpoints


def chat_url(endpoint: str) -> str:
    """`http://host:8000`, `.../v1` or `.../v1/chat/completions` -> the chat-completions URL."""
    url = endpoint.rstrip("/")
    if url.endswith("/chat/completions"):
        return url
    return f"{url}/chat/completions" if url.endswith("/v1") else f"{url}/v1/chat/completions"


def endpoint_host(endpoint: str) -> str:
    parts = urlsplit(endpoint)
    return parts.hostname + (f":{parts.port}" if parts.port else "") if parts.hostname else endpoint


def judge_signature(settings: JudgeSettings, template: Template) -> str:
    """What a judge score depends on, stored with every score: a different judge is a different metric."""
    return (
        f"judge:{settings.model}|endpoint:{endpoint_host(settings.endpoint)}|mode:{settings.mode}|"
        f"template:{Path(template.name).name}#{template.sha}|temperature:{settings.temperature:g}|"
        f"max_tokens:{settings.max_tokens}"
    )


# ------------------------------------------------------------------------------------------- parsing

_THINK = re.compile(r"<think>.*?(?:</think>|\Z)", re.S | re.I)
_VERDICT = re.compile(r"\[\[\s*(A|B|C|TIE|무승부|동점)\s*\]\]", re.I)
_VERDICT_LINE = re.compile(
    r"(?:판정|결론|최종\s*판정|verdict|winner|final\s+verdict)\s*[:：]\s*\**\s*"
    r"(?:어시스턴트\s*|assistant\s*)?\[?\s*(A|B|C|tie|무승부|동점)\s*\]?(?![A-Za-z가-힣])",
    re.I,
)
_SCORE = re.compile(
    r"(?:점수|평점|score|rating)\s*(?:는|은)?\s*[:：]?\s*\**\s*\[{0,2}\s*(\d{1,2}(?:\.\d+)?)\s*\]{0,2}\s*(?:/\s*10|점)?",
    re.I,
)
_BRACKET_SCORE = re.compile(r"\[\[\s*(\d{1,2}(?:\.\d+)?)\s*\]\]")
_REASON_LABEL = re.compile(r"^\s*(?:평가|설명|evaluation|explanation)\s*[:：]\s*", re.I)


def _visible(text: str) -> str:
    """The reply without a reasoning model's <think> block (an unclosed one runs to the end)."""
    return _THINK.sub("", text)


def parse_pairwise(text: str | None) -> str | None:
    """'A', 'B' or 'tie' from a pairwise reply, or None when it holds no verdict. The last verdict counts:
    the templates ask for reasoning first and the verdict on the last line."""
    if not text:
        return None
    visible = _visible(text)
    found: list[str] = []
    for line in visible.splitlines():
        tokens = [m.group(1).upper() for m in _VERDICT.finditer(line)]
        # a line naming two different verdicts is the template's option list echoed back (small judges
        # parrot "A가 더 낫다면 [[A]], B가 더 낫다면 [[B]] ..."), not a verdict
        if len({"tie" if t not in ("A", "B") else t for t in tokens}) == 1:
            found.extend(tokens)
    found = found or [m.group(1) for m in _VERDICT_LINE.finditer(visible)]
    if not found:
        return None
    last = found[-1].upper()
    return last if last in ("A", "B") else "tie"


def parse_rubric(text: str | None) -> tuple[float | None, str]:
    """(score 1-10 or None, reason) from a rubric reply; a score outside 1-10 is no score."""
    if not text:
        return None, ""
    visible = _visible(text)
    matches = sorted([*_SCORE.finditer(visible), *_BRACKET_SCORE.finditer(visible)], key=lambda m: m.start())
    if not matches:
        return None, visible.strip()
    last = matches[-1]
    value = float(last.group(1))
    reason = _REASON_LABEL.sub("", visible[: last.start()].strip()).strip() or visible.strip()
    if not 1.0 <= value <= 10.0:
        return None, visible.strip()
    return value, reason


# ------------------------------------------------------------------------------------------- the cache


class JudgeCache:
    """One JSON file per answered call, named by the hash of what the answer depends on. Written beside
    and renamed, so a crash never leaves half a file that reads as an answer."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    @staticmethod
    def key(settings: JudgeSettings, template: Template, prompt: str) -> str:
        material = json.dumps(
            [settings.model, template.sha, prompt, settings.temperature, settings.max_tokens],
            ensure_ascii=False,
        )
        return hashlib.sha256(material.encode("utf-8")).hexdigest()

    def _path(self, key: str) -> Path:
        return self.root / key[:2] / f"{key}.json"

    def get(self, key: str) -> str | None:
        try:
            record = json.loads(self._path(key).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        content = record.get("content") if isinstance(record, dict) else None
        return content if isinstance(content, str) else None

    def put(self, key: str, content: str, judge: str) -> None:
        path = self._path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        staging = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
        record = {"content": content, "judge": judge, "created_at": datetime.now(UTC).isoformat()}
        staging.write_text(json.dumps(record, ensure_ascii=False), encoding="utf-8")
        os.replace(staging, path)


# ------------------------------------------------------------------------------------------- the client


class RetryableError(Exception):
    """A failure worth retrying: no connection, a timeout, 429 or 5xx."""

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class CallFailed(Exception):
    """A call that failed for good: retries spent, or (refused=True) a 4xx the request itself caused."""

    def __init__(self, message: str, refused: bool = False) -> None:
        super().__init__(message)
        self.refused = refused


class JudgeCallsFailed(UserError):
    """Some calls failed after their retries; the answered ones are cached."""


def _one_line(text: str, limit: int = 200) -> str:
    flat = " ".join(str(text).split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def _retry_after(value: str | None) -> float | None:
    try:
        return max(0.0, float(value)) if value is not None else None
    except ValueError:
        return None  # an HTTP date: fall back to the exponential wait


class JudgeClient:
    """POSTs one chat-completions request per prompt, retried with backoff on transient failures.

    httpx2 (the HTTP client huggingface_hub and the openai SDK already use here) rather than the openai SDK:
    one POST is all we send, errors must be told apart exactly (connection vs 429/5xx vs 4xx), and the SDK's
    own retries would stack on top of ours.
    """

    def __init__(self, settings: JudgeSettings, backoff_s: float = 0.5, max_wait_s: float = 30.0) -> None:
        import httpx2

        self.settings = settings
        self.url = chat_url(settings.endpoint)
        self.backoff_s, self.max_wait_s = backoff_s, max_wait_s
        headers = {"Content-Type": "application/json"}
        if settings.api_key_env:
            key = os.environ.get(settings.api_key_env, "").strip()
            if not key:
                raise UserError(
                    f"evaluate.judge.api_key_env: the environment variable {settings.api_key_env} is not set"
                )
            headers["Authorization"] = f"Bearer {key}"
        self._httpx = httpx2
        self._client = httpx2.Client(
            headers=headers,
            timeout=httpx2.Timeout(settings.timeout_s, connect=min(10.0, settings.timeout_s)),
            limits=httpx2.Limits(max_connections=settings.max_concurrency),
        )

    def close(self) -> None:
        self._client.close()

    def preflight(self) -> None:
        """Fail at once, with one line, when nothing answers at the endpoint (no retries: nothing to wait for)."""
        models_url = self.url.removesuffix("/chat/completions") + "/models"
        unreachable = (
            self._httpx.ConnectError,
            self._httpx.ConnectTimeout,
            self._httpx.UnsupportedProtocol,
            self._httpx.ProxyError,
        )
        try:
            response = self._client.get(models_url, timeout=min(10.0, self.settings.timeout_s))
        except unreachable as exc:
            raise UserError(
                f"evaluate.judge.endpoint: cannot reach {self.url} ({_one_line(exc) or type(exc).__name__}); "
                "start the judge server or fix the endpoint"
            ) from None
        except self._httpx.TransportError:
            return  # it answers, slowly or oddly: the calls themselves will wait and retry
        if response.status_code in (401, 403):
            raise UserError(
                f"evaluate.judge: {self.url} answered HTTP {response.status_code} ({FATAL_STATUSES[response.status_code]}); "
                "set the key's variable in evaluate.judge.api_key_env"
            )

    def _post_once(self, body: dict[str, Any]) -> str | None:
        try:
            response = self._client.post(self.url, json=body)
        except self._httpx.TransportError as exc:
            raise RetryableError(f"{type(exc).__name__}: {_one_line(exc)}") from None
        status = response.status_code
        if status in RETRY_STATUSES or (status >= 500 and status not in FATAL_STATUSES):
            raise RetryableError(
                f"HTTP {status}: {_one_line(response.text, 120)}",
                _retry_after(response.headers.get("retry-after")),
            )
        if status in FATAL_STATUSES:
            raise UserError(
                f"evaluate.judge: {self.url} answered HTTP {status} ({FATAL_STATUSES[status]}) for model "
                f"'{self.settings.model}': {_one_line(response.text, 160)}"
            )
        if status >= 400:
            raise CallFailed(f"HTTP {status}: {_one_line(response.text, 160)}", refused=True)
        try:
            payload = response.json()
            content = payload["choices"][0]["message"]["content"]
        except (ValueError, KeyError, IndexError, TypeError):
            return None  # a reply with no message text: recorded as unparsed, not cached
        return content if isinstance(content, str) else None

    def _wait(self, state: Any) -> float:
        """Exponential backoff with jitter; a server's Retry-After (capped) when it asks for longer."""
        import tenacity

        backoff = tenacity.wait_exponential(multiplier=self.backoff_s, max=self.max_wait_s)
        base = (backoff + tenacity.wait_random(0, self.backoff_s))(state)
        exc = state.outcome.exception() if state.outcome is not None else None
        asked = getattr(exc, "retry_after", None)
        return max(base, min(asked, self.max_wait_s)) if asked else base

    def complete(self, prompt: str) -> str | None:
        """The judge's reply text (None: a response without message text). Raises CallFailed after the
        retries or at once on another 4xx (the request itself is refused: asking again changes nothing),
        UserError when the server refuses the whole run (401/403/404/501/505)."""
        import tenacity

        body = {
            "model": self.settings.model,
            "messages": [{"role": "user", "content": prompt}],
            "temperature": self.settings.temperature,
            "max_tokens": self.settings.max_tokens,
            "stream": False,
        }
        retrying = tenacity.Retrying(
            retry=tenacity.retry_if_exception_type(RetryableError),
            wait=self._wait,
            stop=tenacity.stop_after_attempt(self.settings.max_retries + 1),
            reraise=True,
        )
        try:
            return retrying(self._post_once, body)
        except RetryableError as exc:
            raise CallFailed(f"{exc} (after {self.settings.max_retries + 1} attempts)") from None


# ------------------------------------------------------------------------------------------- asking


@dataclass
class CallStats:
    total: int = 0  # distinct prompts this run needed
    cached: int = 0  # answered from the cache
    asked: int = 0  # answered by the server now
    failed: int = 0
    no_content: int = 0  # responses without message text (counted as unparsed)

    def as_dict(self) -> dict[str, int]:
        return {k: getattr(self, k) for k in ("total", "cached", "asked", "failed", "no_content")}


def ask_all(
    prompts: dict[str, str],
    settings: JudgeSettings,
    cache: JudgeCache,
    show_progress: bool = False,
    client_factory: Callable[[JudgeSettings], JudgeClient] = JudgeClient,
) -> tuple[dict[str, str | None], CallStats]:
    """Answers for every {cache key: prompt}: the cache first, then the server (bounded threads).

    Raises JudgeCallsFailed (one line: how many failed, why, that the rest is cached) after every call
    has had its turn, and UserError at once for an unreachable endpoint or a refused run.
    """
    answers: dict[str, str | None] = {}
    calls = CallStats(total=len(prompts))
    missing = []
    for key, prompt in prompts.items():
        hit = cache.get(key)
        if hit is None:
            missing.append((key, prompt))
        else:
            answers[key] = hit
    calls.cached = len(answers)
    if not missing:
        return answers, calls
    client = client_factory(settings)
    errors: list[str] = []
    try:
        client.preflight()
        with progress(None if show_progress else False) as bar:
            task = bar.add_task("judge calls", total=len(missing), status=f"{calls.cached} cached")
            pool = ThreadPoolExecutor(max_workers=settings.max_concurrency)
            finished = False
            failed_in_a_row = 0
            try:
                futures: dict[Future, str] = {pool.submit(client.complete, p): k for k, p in missing}
                pending = set(futures)
                while pending:
                    done, pending = wait(pending, return_when=FIRST_COMPLETED)
                    for future in done:
                        exc = future.exception()
                        if isinstance(exc, CallFailed):
                            calls.failed += 1
                            # a refused request (4xx) says nothing about the server being gone
                            failed_in_a_row += 0 if exc.refused else 1
                            errors.append(str(exc))
                        elif exc is not None:  # a refused run (UserError) or a bug: stop asking
                            raise exc
                        else:
                            content = future.result()
                            answers[futures[future]] = content
                            calls.asked += 1
                            failed_in_a_row = 0
                            if content is None:
                                calls.no_content += 1
                            else:
                                cache.put(futures[future], content, settings.model)
                        bar.advance(task)
                    if pending and failed_in_a_row >= settings.max_concurrency:
                        # every call in flight failed after all its retries: the server is gone, and each
                        # remaining call would wait out its own backoff (a judge server stopped mid-run held
                        # `tunelab score --judge` 10 minutes for 276 calls); the rest count as failed
                        calls.failed += len(pending)
                        break
                else:
                    finished = True
            finally:
                # a refused run or Ctrl-C: calls not started are dropped instead of waited for
                pool.shutdown(wait=finished, cancel_futures=not finished)
    finally:
        client.close()
    if calls.failed:
        answered = calls.cached + calls.asked
        raise JudgeCallsFailed(
            f"judge: {calls.failed} of {calls.total} calls to {chat_url(settings.endpoint)} failed "
            f"({errors[-1]}); the {answered} answered are cached in {cache.root} — run again to ask only "
            "the failed ones"
        )
    return answers, calls


# ------------------------------------------------------------------------------------------- judging


@dataclass
class JudgeOutcome:
    """What a judge run adds to an evaluation."""

    judgments: pl.DataFrame  # rows of the warehouse's `judgments` table (eval_id added when stored)
    scores: pl.DataFrame  # SCORE_SCHEMA: rubric score per answer (metric "judge")
    metrics: pl.DataFrame  # METRIC_SCHEMA: rubric mean per model
    deltas: pl.DataFrame  # DELTA_COLUMNS: pairwise win rate of each model over its baseline
    summary: dict[str, Any] = field(default_factory=dict)  # `judge` in --format json, the printed table


JUDGMENT_SCHEMA = {
    "sample_id": pl.Utf8, "model": pl.Utf8, "opponent": pl.Utf8, "mode": pl.Utf8, "score": pl.Float64,
    "verdict": pl.Utf8, "consistent": pl.Boolean, "reason": pl.Utf8, "judge": pl.Utf8, "signature": pl.Utf8,
    "created_at": pl.Datetime("us"),
}  # fmt: skip


def _text(value: Any) -> str:
    return value if isinstance(value, str) else ""


def _clip(text: str) -> str:
    return text if len(text) <= MAX_REASON_CHARS else text[: MAX_REASON_CHARS - 1] + "…"


def run_judge(
    predictions: pl.DataFrame,
    settings: JudgeSettings,
    workspace: Workspace,
    show_progress: bool = False,
    seed: int = stats.SEED,
    n_resamples: int = stats.N_RESAMPLES,
    client_factory: Callable[[JudgeSettings], JudgeClient] = JudgeClient,
) -> JudgeOutcome:
    """Judge a predictions frame (model, sample_id, prompt, reference, prediction) in the settings' mode.

    `client_factory` builds the HTTP client (tests shorten its backoff)."""
    template = load_template(settings)
    signature = judge_signature(settings, template)
    cache = JudgeCache(workspace.judge_cache)
    by_model: dict[str, dict[str, dict[str, Any]]] = {}
    for row in predictions.iter_rows(named=True):
        by_model.setdefault(row["model"], {})[row["sample_id"]] = row
    models = list(by_model)
    now = datetime.now(UTC).replace(tzinfo=None)

    def prompt_for(values: dict[str, str]) -> tuple[str, str]:
        text = template.render(values)
        return JudgeCache.key(settings, template, text), text

    def common(row: dict[str, Any]) -> dict[str, str]:
        return {
            "question": _text(row.get("prompt")),
            "reference": _text(row.get("reference")).strip() or NO_REFERENCE,
        }

    base = {"mode": settings.mode, "judge": settings.model, "signature": signature, "created_at": now}
    rows: list[dict[str, Any]] = []
    if settings.mode == "rubric":
        plan = []
        for model, samples in by_model.items():
            for sid, row in samples.items():
                if degenerate_reason(row.get("prediction")) is not None:
                    plan.append((model, sid, None))
                    continue
                plan.append((model, sid, prompt_for({**common(row), "answer": _text(row["prediction"])})))
        answers, calls = ask_all(
            {p[0]: p[1] for _, _, p in plan if p}, settings, cache, show_progress, client_factory
        )
        for model, sid, prompt in plan:
            if prompt is None:  # an empty answer is not worth a call: it scores 0, like every metric
                rows.append({**base, "sample_id": sid, "model": model, "score": 0.0, "verdict": "degenerate",
                             "reason": "(empty or degenerate answer: not sent to the judge)"})  # fmt: skip
                continue
            reply = answers.get(prompt[0])
            score, reason = parse_rubric(reply)
            rows.append({**base, "sample_id": sid, "model": model, "score": score,
                         "verdict": None if score is not None else UNPARSED,
                         "reason": _clip(reason if reply is not None else "(no message text in the response)")})  # fmt: skip
        judgments = pl.DataFrame(rows, schema=JUDGMENT_SCHEMA)
        _warn_unparsed(judgments, settings)
        return _rubric_outcome(judgments, models, signature, calls, settings, template, seed, n_resamples)

    pairs = comparisons(models)
    plan2 = []
    for model, baseline in pairs:
        mine, theirs = by_model[model], by_model[baseline]
        for sid in [s for s in theirs if s in mine]:
            a_row, b_row = mine[sid], theirs[sid]
            a_empty = degenerate_reason(a_row.get("prediction")) is not None
            b_empty = degenerate_reason(b_row.get("prediction")) is not None
            a_text, b_text = _text(a_row["prediction"]), _text(b_row["prediction"])
            if a_empty or b_empty or a_text.strip() == b_text.strip():
                plan2.append((model, baseline, sid, None, None, (a_empty, b_empty)))
                continue
            values = common(a_row)
            first = prompt_for({**values, "answer_a": a_text, "answer_b": b_text})  # model shown as A
            second = prompt_for({**values, "answer_a": b_text, "answer_b": a_text})  # model shown as B
            plan2.append((model, baseline, sid, first, second, None))
    wanted = {p[0]: p[1] for entry in plan2 for p in entry[3:5] if p}
    answers, calls = ask_all(wanted, settings, cache, show_progress, client_factory)
    for model, baseline, sid, first, second, empty in plan2:
        row = {**base, "sample_id": sid, "model": model, "opponent": baseline}
        if empty is not None:  # decided without a call: an empty answer loses, the same answer ties
            a_empty, b_empty = empty
            verdict = "tie" if a_empty == b_empty else "loss" if a_empty else "win"
            why = "the same answer" if not (a_empty or b_empty) else "an empty or degenerate answer"
            rows.append({**row, "verdict": verdict, "score": {"win": 1.0, "tie": 0.5, "loss": 0.0}[verdict],
                         "reason": f"({why}: not sent to the judge)"})  # fmt: skip
            continue
        reply_1, reply_2 = answers.get(first[0]), answers.get(second[0])
        # from the model's side: shown as A in the first order, as B in the second
        one = {"A": "win", "B": "loss", "tie": "tie"}.get(parse_pairwise(reply_1) or "")
        two = {"B": "win", "A": "loss", "tie": "tie"}.get(parse_pairwise(reply_2) or "")
        reason = _clip(
            f"[A={model}, B={baseline}] {_text(reply_1).strip()}\n\n[A={baseline}, B={model}] {_text(reply_2).strip()}"
        )
        if one is None or two is None:
            rows.append({**row, "verdict": UNPARSED, "reason": reason})
            continue
        verdict = one if one == two else "tie"
        rows.append({**row, "verdict": verdict, "consistent": one == two, "reason": reason,
                     "score": {"win": 1.0, "tie": 0.5, "loss": 0.0}[verdict]})  # fmt: skip
    judgments = pl.DataFrame(rows, schema=JUDGMENT_SCHEMA)
    _warn_unparsed(judgments, settings)
    return _pairwise_outcome(judgments, pairs, signature, calls, settings, template, seed, n_resamples)


def _warn_unparsed(judgments: pl.DataFrame, settings: JudgeSettings) -> None:
    # replies without a verdict leave n; when most are, the table's "n 0 · unparsed 4" is easy to miss
    unparsed = int((judgments["verdict"] == UNPARSED).sum())
    if unparsed:
        warnings.warn(
            f"judge {settings.model}: {unparsed} of {judgments.height} judgments had no verdict in the reply "
            "(stored as unparsed with the reply as reason, left out of n): "
            "a stronger judge or a template whose reply format it follows",
            stacklevel=3,
        )


def _summary_head(
    settings: JudgeSettings, template: Template, signature: str, calls: CallStats
) -> dict[str, Any]:
    return {
        "mode": settings.mode,
        "judge": settings.model,
        "endpoint": endpoint_host(settings.endpoint),
        "template": Path(template.name).name,
        "template_sha": template.sha,
        "temperature": settings.temperature,
        "signature": signature,
        "calls": calls.as_dict(),
    }


def _number(value: float) -> float | None:
    return value if math.isfinite(value) else None


def _rubric_outcome(
    judgments: pl.DataFrame,
    models: list[str],
    signature: str,
    calls: CallStats,
    settings: JudgeSettings,
    template: Template,
    seed: int,
    n_resamples: int,
) -> JudgeOutcome:
    scored = judgments.filter(pl.col("score").is_not_null())
    scores = scored.select(
        "model", "sample_id", pl.lit(JUDGE_METRIC).alias("metric"), pl.col("score").alias("value"),
        pl.lit(signature).alias("signature"),
    )  # fmt: skip
    metrics = scored.group_by("model", maintain_order=True).agg(
        pl.lit(JUDGE_METRIC).alias("metric"),
        pl.col("score").mean().alias("value"),
        pl.lit(signature).alias("signature"),
    )
    per_model = []
    for model in models:
        mine = judgments.filter(pl.col("model") == model)
        est = stats.mean_interval(mine["score"].drop_nulls().to_list(), n_resamples, seed)
        per_model.append({
            "model": model, "mean": _number(est.value), "ci_low": _number(est.ci_low),
            "ci_high": _number(est.ci_high), "n": est.n,
            "unparsed": mine.filter(pl.col("verdict") == UNPARSED).height,
            "degenerate": mine.filter(pl.col("verdict") == "degenerate").height,
        })  # fmt: skip
    summary = {**_summary_head(settings, template, signature, calls), "models": per_model}
    return JudgeOutcome(
        judgments,
        scores.select(SCORE_SCHEMA.keys()).cast(SCORE_SCHEMA),  # type: ignore[arg-type]
        metrics.select(METRIC_SCHEMA.keys()).cast(METRIC_SCHEMA),  # type: ignore[arg-type]
        pl.DataFrame(schema=DELTA_COLUMNS),
        summary,
    )


def _pairwise_outcome(
    judgments: pl.DataFrame,
    pairs: list[tuple[str, str]],
    signature: str,
    calls: CallStats,
    settings: JudgeSettings,
    template: Template,
    seed: int,
    n_resamples: int,
) -> JudgeOutcome:
    deltas, per_pair = [], []
    method = (
        f"pairwise judge, both orders; win rate (ties 1/2): bootstrap {n_resamples} + sign flips around 1/2, "
        f"seed {seed}"
    )
    for model, baseline in pairs:
        mine = judgments.filter((pl.col("model") == model) & (pl.col("opponent") == baseline))
        decided = mine.filter(pl.col("score").is_not_null())
        outcomes = decided["score"].to_list()
        # the win rate against 1/2 is a paired difference against a model that always ties
        est = stats.paired_difference(outcomes, [0.5] * len(outcomes), n_resamples, seed)
        rate, low, high = est.value + 0.5, est.ci_low + 0.5, est.ci_high + 0.5
        judged = mine.filter(pl.col("consistent").is_not_null())
        agree = stats.mean_interval([float(c) for c in judged["consistent"].to_list()], n_resamples, seed)
        verdicts = decided["verdict"].to_list()
        deltas.append({
            "model": model, "baseline": baseline, "metric": WIN_RATE_METRIC, "delta": rate, "ci_low": low,
            "ci_high": high, "p_value": est.p_value, "n": est.n, "delta_pct": None,
            "significant": est.significant, "method": method, "seed": seed,
        })  # fmt: skip
        per_pair.append({
            "model": model, "baseline": baseline, "win_rate": _number(rate), "ci_low": _number(low),
            "ci_high": _number(high), "p_value": est.p_value, "significant": est.significant, "n": est.n,
            "wins": verdicts.count("win"), "ties": verdicts.count("tie"), "losses": verdicts.count("loss"),
            "unparsed": mine.filter(pl.col("verdict") == UNPARSED).height,
            "consistency": _number(agree.value), "consistency_ci_low": _number(agree.ci_low),
            "consistency_ci_high": _number(agree.ci_high), "consistency_n": agree.n,
        })  # fmt: skip
    summary = {**_summary_head(settings, template, signature, calls), "pairs": per_pair}
    return JudgeOutcome(
        judgments,
        pl.DataFrame(schema=SCORE_SCHEMA),
        pl.DataFrame(schema=METRIC_SCHEMA),
        pl.DataFrame(deltas, schema=DELTA_COLUMNS),
        summary,
    )


# ------------------------------------------------------------------------------------------- the table


def print_judge(summary: dict[str, Any]) -> None:
    """The judge's own table on stdout: pairwise win rates with intervals and order consistency, or the
    rubric score per model (the rubric means are also rows of the comparison table)."""
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    def num(value: float | None) -> str:
        return "–" if value is None else f"{value:.3f}"

    title = escape(
        f"LLM judge {summary['judge']} @ {summary['endpoint']} · {summary['mode']} · "
        f"template {summary['template']}#{summary['template_sha']} · 95 % intervals · * p < 0.05"
    )
    calls = summary["calls"]
    caption = f"{calls['total']} calls: {calls['cached']} cached, {calls['asked']} asked now"
    out = Table(title=title, caption=caption, show_lines=True)
    if summary["mode"] == "pairwise":
        for column in (
            "model vs baseline",
            "win rate (ties ½)",
            "wins / ties / losses",
            "order-consistent",
            "n",
            "unparsed",
        ):
            out.add_column(column, justify="left" if column.startswith("model") else "right")
        for row in summary["pairs"]:
            p = "–" if row["p_value"] is None else f"{row['p_value']:.3f}"
            mark = " *" if row["significant"] else ""
            out.add_row(
                escape(f"{row['model']} vs {row['baseline']}"),
                f"{num(row['win_rate'])}{mark}\n[{num(row['ci_low'])}, {num(row['ci_high'])}] p={p}",
                f"{row['wins']} / {row['ties']} / {row['losses']}",
                f"{num(row['consistency'])}\n[{num(row['consistency_ci_low'])}, {num(row['consistency_ci_high'])}]"
                f" of {row['consistency_n']}",
                str(row["n"]),
                str(row["unparsed"]),
            )
    else:
        for column in ("model", "score (1–10)", "n", "unparsed", "empty (scored 0)"):
            out.add_column(column, justify="left" if column == "model" else "right")
        for row in summary["models"]:
            out.add_row(
                escape(row["model"]),
                f"{num(row['mean'])}\n[{num(row['ci_low'])}, {num(row['ci_high'])}]",
                str(row["n"]),
                str(row["unparsed"]),
                str(row["degenerate"]),
            )
    Console().print(out)
