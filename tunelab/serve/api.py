"""The OpenAI chat-completions contract of `tunelab serve`: the request body checked, the response and
error objects shaped as the OpenAI API shapes them (so the openai SDK, the judge and curl all read them).

Request bodies are untrusted: anything that is not a supported request becomes an `ApiError` (HTTP 400 and
an `{"error": {...}}` object naming the field), never a traceback. Fields that only change how an answer is
delivered or scored elsewhere (frequency_penalty, logprobs, user, ...) are ignored; the ones whose meaning
this server cannot honour (n > 1, stream, tools) are refused rather than silently dropped.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

DEFAULT_MAX_TOKENS = 512  # when a request names none (vLLM would allow the whole context: slow on a CPU)


class ApiError(Exception):
    """An OpenAI-style error: HTTP status, message, type, the offending field and a code."""

    def __init__(
        self,
        status: int,
        message: str,
        param: str | None = None,
        code: str | None = None,
        kind: str = "invalid_request_error",
    ) -> None:
        super().__init__(message)
        self.status, self.message, self.param, self.code, self.kind = status, message, param, code, kind

    def body(self) -> dict[str, Any]:
        return {"error": {"message": self.message, "type": self.kind, "param": self.param, "code": self.code}}


class _TextPart(BaseModel):
    model_config = ConfigDict(extra="ignore")
    type: Literal["text"]
    text: str


class _Message(BaseModel):
    model_config = ConfigDict(extra="ignore")
    # "developer" is OpenAI's newer name for a system message
    role: Literal["system", "developer", "user", "assistant"]
    content: str | list[_TextPart]


class _ChatBody(BaseModel):
    model_config = ConfigDict(extra="ignore")
    model: str | None = None
    messages: list[_Message] = Field(min_length=1)
    # null is what some clients send for "the default"
    temperature: float | None = Field(None, ge=0, le=2)
    top_p: float | None = Field(None, gt=0, le=1)
    max_tokens: int | None = Field(None, ge=1)
    max_completion_tokens: int | None = Field(None, ge=1)
    seed: int | None = None
    n: int | None = Field(None, ge=1)
    stop: str | list[str] | None = None
    stream: bool | None = None
    tools: list[Any] | None = None


@dataclass(frozen=True)
class ChatRequest:
    """A checked request: what generation needs, nothing else."""

    model: str | None
    messages: tuple[tuple[str, str], ...]  # (role, text)
    max_tokens: int
    temperature: float
    top_p: float
    seed: int | None
    stop: tuple[str, ...]

    @property
    def greedy(self) -> bool:
        return self.temperature == 0.0

    @property
    def batch_key(self) -> tuple[Any, ...] | None:
        """Requests with the same key may share one generate call; None: run alone. A seeded sampled request
        runs alone, so its seed alone decides its tokens."""
        if not self.greedy and self.seed is not None:
            return None
        return (self.greedy, self.temperature, self.top_p, self.stop)

    def turns(self) -> list[dict[str, str]]:
        return [{"role": role, "content": text} for role, text in self.messages]


def _field(loc: tuple[Any, ...]) -> str:
    # pydantic names the member of a union it tried ("content.str"); the user wrote "content"
    parts = [str(p) for p in loc if not (isinstance(p, str) and p in ("str", "list[_TextPart]"))]
    return ".".join(parts) or "body"


def parse_chat_request(raw: bytes) -> ChatRequest:
    """The request body as a ChatRequest, or ApiError 400 naming the field."""
    import json

    try:
        payload = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise ApiError(400, f"the body is not valid JSON ({exc})", code="invalid_json") from None
    if not isinstance(payload, dict):
        raise ApiError(400, "the body must be a JSON object", code="invalid_json")
    try:
        body = _ChatBody.model_validate(payload)
    except ValidationError as exc:
        first = exc.errors(include_url=False)[0]
        where = _field(tuple(first["loc"]))
        raise ApiError(400, f"{where}: {first['msg']}", param=where, code="invalid_value") from None
    if body.stream:
        raise ApiError(400, "stream: streaming is not supported by tunelab serve", "stream", "unsupported")
    if body.n not in (None, 1):
        raise ApiError(400, "n: only n=1 is supported", "n", "unsupported")
    if body.tools:
        raise ApiError(400, "tools: tool calls are not supported by tunelab serve", "tools", "unsupported")
    stop = (body.stop,) if isinstance(body.stop, str) else tuple(body.stop or ())
    if len(stop) > 4 or any(not s for s in stop):
        raise ApiError(400, "stop: at most 4 non-empty strings", "stop", "invalid_value")
    messages = tuple(
        (
            "system" if m.role == "developer" else m.role,
            m.content if isinstance(m.content, str) else "".join(p.text for p in m.content),
        )
        for m in body.messages
    )
    return ChatRequest(
        model=body.model,
        messages=messages,
        max_tokens=body.max_completion_tokens or body.max_tokens or DEFAULT_MAX_TOKENS,
        temperature=1.0 if body.temperature is None else body.temperature,
        top_p=1.0 if body.top_p is None else body.top_p,
        seed=body.seed,
        stop=stop,
    )


@dataclass(frozen=True)
class Completion:
    text: str
    prompt_tokens: int
    completion_tokens: int
    finish_reason: Literal["stop", "length"]


def completion_body(model: str, completion: Completion) -> dict[str, Any]:
    """A `chat.completion` object as the OpenAI API returns it (non-streaming, one choice)."""
    return {
        "id": f"chatcmpl-{uuid.uuid4().hex}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": completion.text},
                "logprobs": None,
                "finish_reason": completion.finish_reason,
            }
        ],
        "usage": {
            "prompt_tokens": completion.prompt_tokens,
            "completion_tokens": completion.completion_tokens,
            "total_tokens": completion.prompt_tokens + completion.completion_tokens,
        },
    }


def models_body(model: str, created: int) -> dict[str, Any]:
    return {"object": "list", "data": [model_body(model, created)]}


def model_body(model: str, created: int) -> dict[str, Any]:
    return {"id": model, "object": "model", "created": created, "owned_by": "tunelab"}
