"""RAFT rows from context-QA data: the golden document plus distractor documents, a question and its answer.

Input: SQuAD / KorQuAD JSON (data -> paragraphs -> context + qas[question, answers[text, answer_start]]),
or a flat table (jsonl, json, csv, tsv, parquet; format by content as the loader tells it) with a question,
a context (a string or a list of passages, joined) and an answer (a string, a list, SQuAD's answers list or
the datasets library's {text: [...]}). Every distinct context (whitespace collapsed) is one document.

Output, per answerable question (RAFT, Zhang et al. 2024):
- `context`: a seeded share `p_golden` of the rows (exactly round(p * n), drawn with the seed) holds the
  golden document plus `k` distractors; the rest hold `k + 1` distractors and no golden document, which
  teaches the model to answer from what it learned when retrieval misses. Documents are shuffled.
- distractors `hard` (default): drawn with the seed from the 2(k + 1) nearest other documents by BM25
  (bm25s over words, Hangul words as character bigrams so "서울이" and "서울은" share "서울"), topped up
  at random when fewer than that share a term; `random`: drawn from all other documents. Never the
  golden document, nor a document with its text.
- `cot` (with cot=True): `##begin_quote## <the golden sentence holding the answer> ##end_quote##` then
  `<ANSWER>: answer` (the sentence at answer_start when the file gives it); a row whose answer is in no
  sentence of its document (PubMedQA's yes/no) uses its long answer as the reason, else gets no cot.
- `oracle_context`: the golden document (read back as the row's `golden` field: split groups by it).
BM25 rather than an embedding model: it needs no model (nothing to load or embed first), and its term
overlap is what makes a distractor hard for a reader (the same names, dates and places as the golden
document). Measured on 1,000 PubMedQA abstracts on the shared 2-core machine under load: tokenizing 0.8 s,
indexing 1.7 s, 200 queries 0.28 s.
"""

from __future__ import annotations

import re
import sys
import unicodedata
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from tunelab.curate.documents import document_key
from tunelab.errors import UserError
from tunelab.progress import progress
from tunelab.records.formats import read_file

ANSWER_MARKER = "<ANSWER>:"
BEGIN_QUOTE, END_QUOTE = "##begin_quote##", "##end_quote##"
INSTRUCTION_KO = "다음 문서들을 참고해 질문에 답하세요. 질문과 관계없는 문서도 섞여 있습니다."
INSTRUCTION_EN = (
    "Answer the question using the documents below. Some of the documents are unrelated to the question."
)
_HANGUL = re.compile(r"[\uac00-\ud7a3]")
_WORD = re.compile(r"\w+")
# a sentence ends at . ! ? 。 (Korean "…다." included) followed by whitespace, or at a line break
_SENTENCE_END = re.compile(r"(?<=[.!?。])\s+|\n+")

_QUESTION_KEYS = ("question", "QUESTION", "query", "Q")
_CONTEXT_KEYS = ("context", "CONTEXTS", "contexts", "document", "passage", "paragraph")
_ANSWER_KEYS = ("answer", "answers", "final_decision", "A")
_LONG_ANSWER_KEYS = ("long_answer", "LONG_ANSWER")
_ID_KEYS = ("id", "qid", "question_id")


@dataclass
class QA:
    """One answerable question about one golden document."""

    id: str
    question: str
    answer: str
    document: str
    answer_start: int | None = None
    long_answer: str | None = None


@dataclass
class BuildSettings:
    k: int = 4
    p_golden: float = 0.8
    distractors: Literal["hard", "random"] = "hard"
    cot: bool = False
    seed: int = 0
    instruction: str | None = None  # None: Korean when the data has Hangul, else English

    def check(self) -> None:
        if self.k < 1:
            raise UserError(f"--k: {self.k} must be at least 1")
        if not 0.0 <= self.p_golden <= 1.0:
            raise UserError(f"--p-golden: {self.p_golden} must be between 0 and 1")
        if self.distractors not in ("hard", "random"):
            raise UserError(f"--distractors: {self.distractors!r} must be hard or random")


@dataclass
class ReadResult:
    qas: list[QA]
    records: int = 0  # records the file held (articles, paragraphs or rows, as read)
    skipped: dict[str, int] = field(default_factory=dict)  # reason -> questions not turned into rows
    first_skipped: dict[str, str] = field(default_factory=dict)  # reason -> where the first one was


# ---------------------------------------------------------------- reading


def nfc(text: str) -> str:
    return unicodedata.normalize("NFC", text)


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) and value.strip() else None


def _first(record: dict[str, Any], keys: tuple[str, ...]) -> Any:
    return next((record[k] for k in keys if k in record), None)


def _answer_of(value: Any) -> tuple[str | None, int | None]:
    """(text, answer_start) from the shapes answers come in: a string, SQuAD's [{text, answer_start}],
    the datasets library's {text: [...], answer_start: [...]}, or a list of strings (the first one)."""
    if isinstance(value, str):
        return _text(value), None
    if isinstance(value, dict):
        texts, starts = value.get("text"), value.get("answer_start")
        if isinstance(texts, list) and texts:
            start = starts[0] if isinstance(starts, list) and starts and isinstance(starts[0], int) else None
            return _text(texts[0]), start
        start = value.get("answer_start")
        return _text(texts), start if isinstance(start, int) else None
    if isinstance(value, list) and value:
        return _answer_of(value[0])
    return None, None


def _context_of(value: Any) -> str | None:
    if isinstance(value, list) and value and all(isinstance(v, str) for v in value):
        return _text("\n".join(value))  # PubMedQA: the abstract's sections are one document
    return _text(value)


def _walk(record: dict[str, Any], where: str) -> Iterator[tuple[str, dict[str, Any], str, str]]:
    """(kind, object, context, where) for every question-bearing object: SQuAD qas with their paragraph's
    context, or a flat row (context empty: read from the row)."""
    data = record.get("data")
    if isinstance(data, list) and "question" not in record:
        for i, item in enumerate(data):
            if isinstance(item, dict):
                yield from _walk(item, f"{where}.data[{i}]")
        return
    paragraphs = record.get("paragraphs")
    if isinstance(paragraphs, list):
        for i, paragraph in enumerate(paragraphs):
            if isinstance(paragraph, dict):
                yield from _walk(paragraph, f"{where}.paragraphs[{i}]")
        return
    qas = record.get("qas")
    if isinstance(qas, list):
        context = _context_of(record.get("context")) or ""
        for i, qa in enumerate(qas):
            if isinstance(qa, dict):
                yield "squad", qa, context, f"{where}.qas[{i}]"
        return
    yield "flat", record, "", where


def read_qa(path: Path, input_format: str = "auto") -> ReadResult:
    """Every answerable question of a QA file, with what was skipped and why (counts)."""
    path = Path(path)
    _, records = read_file(path, input_format, None, None, set())
    result = ReadResult([])

    def skip(reason: str, where: str) -> None:
        result.skipped[reason] = result.skipped.get(reason, 0) + 1
        result.first_skipped.setdefault(reason, where)

    for record in records:
        result.records += 1
        where = f"{path.name}:{record.line}"
        if record.error is not None or not isinstance(record.value, dict):
            skip(f"unreadable record ({record.error or 'not an object'})", where)
            continue
        for shape, obj, context, at in _walk(record.value, where):
            question = _text(_first(obj, _QUESTION_KEYS))
            if shape == "flat":
                context = _context_of(_first(obj, _CONTEXT_KEYS)) or ""
            answer, start = _answer_of(_first(obj, _ANSWER_KEYS))
            if question is None:
                skip("no question", at)
            elif not context:
                skip("no context", at)
            elif answer is None or obj.get("is_impossible") is True:
                skip("unanswerable (no answer)", at)
            else:
                qid = _first(obj, _ID_KEYS)
                result.qas.append(
                    QA(
                        id=str(qid) if qid is not None else f"{path.stem}-{len(result.qas)}",
                        question=nfc(question),
                        answer=nfc(answer),
                        document=nfc(context),
                        answer_start=start,
                        long_answer=_text(_first(obj, _LONG_ANSWER_KEYS)),
                    )
                )
    if not result.qas:
        reasons = ", ".join(
            f"{n} {why} (first at {result.first_skipped[why]})" for why, n in result.skipped.items()
        )
        raise UserError(
            f"{path}: no answerable question found in {result.records} records"
            + (f": {reasons}" if reasons else "")
            + "; expected SQuAD/KorQuAD JSON (data -> paragraphs -> context, qas) or rows with "
            "question, context and answer columns"
        )
    return result


# ---------------------------------------------------------------- distractors


def bm25_tokens(text: str) -> list[str]:
    """Lowercased words; a Hangul word as its character bigrams (particles change the word, not its stem)."""
    tokens: list[str] = []
    for word in _WORD.findall(text.lower()):
        if _HANGUL.search(word) and len(word) > 1:
            tokens.extend(word[i : i + 2] for i in range(len(word) - 1))
        else:
            tokens.append(word)
    return tokens or ["\u0000"]  # bm25s wants a token per document


def nearest_documents(documents: list[str], pool: int, show_progress: bool = False) -> list[list[int]]:
    """For every document, up to `pool` other documents sharing a term with it, nearest first (BM25)."""
    import bm25s

    n = len(documents)
    if n < 2 or pool < 1:
        return [[] for _ in documents]
    tokens = [bm25_tokens(doc) for doc in documents]
    index = bm25s.BM25()
    index.index(tokens, show_progress=False)
    want = min(n, pool + 1)  # the document itself comes back too
    out: list[list[int]] = []
    step = 512
    with progress(None if show_progress else False) as bar:
        task = bar.add_task("raft: nearest documents (BM25)", total=n, status="")
        for start in range(0, n, step):
            ids, scores = index.retrieve(
                tokens[start : start + step], k=want, show_progress=False, n_threads=1
            )
            for offset, (row_ids, row_scores) in enumerate(zip(ids, scores, strict=True)):
                me = start + offset
                out.append(
                    [int(d) for d, s in zip(row_ids, row_scores, strict=True) if d != me and s > 0][:pool]
                )
            bar.advance(task, min(step, n - start))
    return out


def _draw(
    rng: np.random.Generator, candidates: list[int], n_docs: int, exclude: int, count: int
) -> tuple[list[int], int]:
    """`count` distinct documents other than `exclude`: from `candidates` first (seeded), topped up at
    random from all the others; (drawn, how many came from the candidates)."""
    chosen: list[int] = []
    if candidates:
        order = rng.permutation(len(candidates))[:count]
        chosen = [candidates[i] for i in order]
    from_candidates = len(chosen)
    if len(chosen) < count:
        taken = {exclude, *chosen}
        others = np.array([d for d in range(n_docs) if d not in taken], dtype=np.int64)
        extra = rng.permutation(others)[: count - len(chosen)] if others.size else []
        chosen += [int(d) for d in extra]
    return chosen, from_candidates


# ---------------------------------------------------------------- cot


def sentences(document: str) -> list[tuple[int, str]]:
    """(start offset, sentence) of a document."""
    out, start = [], 0
    for match in _SENTENCE_END.finditer(document):
        if document[start : match.start()].strip():
            out.append((start, document[start : match.start()]))
        start = match.end()
    if document[start:].strip():
        out.append((start, document[start:]))
    return out


def golden_sentence(qa: QA) -> str | None:
    """The sentence of the golden document holding the answer (at answer_start when given)."""
    parts = sentences(qa.document)
    if qa.answer_start is not None:
        for begin, sentence in parts:
            if begin <= qa.answer_start < begin + len(sentence) and qa.answer in sentence:
                return sentence.strip()
    return next((s.strip() for _, s in parts if qa.answer in s), None)


def cot_text(qa: QA) -> str | None:
    sentence = golden_sentence(qa)
    if sentence is not None:
        return f"{BEGIN_QUOTE}{sentence}{END_QUOTE}\n{ANSWER_MARKER} {qa.answer}"
    if qa.long_answer:
        return f"##Reason: {qa.long_answer}\n{ANSWER_MARKER} {qa.answer}"
    return None


# ---------------------------------------------------------------- rows


@dataclass
class BuildResult:
    rows: list[dict[str, Any]]
    stats: dict[str, Any]


def build_rows(qas: list[QA], settings: BuildSettings, show_progress: bool = False) -> BuildResult:
    """RAFT rows for `qas` (module docstring); the same qas, settings and seed give the same rows."""
    settings.check()
    keys: dict[str, int] = {}
    documents: list[str] = []
    doc_of: list[int] = []
    for qa in qas:
        key = document_key(qa.document)
        if key not in keys:
            keys[key] = len(documents)
            documents.append(qa.document)
        doc_of.append(keys[key])
    n_docs = len(documents)
    if n_docs < 2:
        raise UserError(f"raft build: {n_docs} distinct document; distractors need at least 2 documents")
    rng = np.random.default_rng(settings.seed)
    want = settings.k + 1  # rows without the golden document hold k + 1 distractors
    if settings.distractors == "hard":
        near = nearest_documents(documents, 2 * want, show_progress)
    else:
        near = [[] for _ in documents]
    n = len(qas)
    with_golden = np.zeros(n, dtype=bool)
    with_golden[rng.permutation(n)[: int(round(settings.p_golden * n))]] = True
    instruction = settings.instruction
    if instruction is None:
        korean = any(_HANGUL.search(qa.question + qa.document[:200]) for qa in qas[:50])
        instruction = INSTRUCTION_KO if korean else INSTRUCTION_EN
    rows: list[dict[str, Any]] = []
    drawn = hard = no_cot = 0
    for i, qa in enumerate(qas):
        golden = doc_of[i]
        count = settings.k if with_golden[i] else want
        chosen, from_near = _draw(rng, near[golden], n_docs, golden, min(count, n_docs - 1))
        drawn, hard = drawn + len(chosen), hard + from_near
        docs = ([golden] if with_golden[i] else []) + chosen
        docs = [docs[j] for j in rng.permutation(len(docs))]
        row: dict[str, Any] = {
            "id": qa.id,
            "instruction": instruction,
            "context": [documents[d] for d in docs],
            "question": qa.question,
            "answer": qa.answer,
            "oracle_context": qa.document,
            "golden_in_context": bool(with_golden[i]),
        }
        if settings.cot:
            cot = cot_text(qa)
            no_cot += cot is None
            if cot is not None:
                row["cot"] = cot
        rows.append(row)
    stats: dict[str, Any] = {
        "questions": n,
        "documents": n_docs,
        "k": settings.k,
        "p_golden": settings.p_golden,
        "rows_with_golden": int(with_golden.sum()),
        "distractors": settings.distractors,
        "distractors_drawn": drawn,
        "seed": settings.seed,
    }
    if settings.distractors == "hard":
        stats["distractors_from_bm25_neighbours"] = hard
    if n_docs - 1 < want:
        stats["note"] = f"only {n_docs - 1} other documents: rows hold fewer than k + 1 distractors"
    if settings.cot:
        stats["rows_without_cot"] = no_cot
    return BuildResult(rows, stats)


# ---------------------------------------------------------------- sizes


def rendered_sizes(rows: list[dict[str, Any]], tokenizer: Any | None) -> dict[str, Any]:
    """Size of each row as training renders it (instruction, documents, question and target): characters
    always, tokens with a tokenizer; p50 / p95 / max, and how many rows a max_length of p95 would cut."""
    from tunelab.modeling import lengths
    from tunelab.modeling.chat import conversation, sft_example

    as_rows = [{**row, "sample_id": f"raft:{row['id']}", "cot": row.get("cot")} for row in rows]
    chars = np.array(
        [sum(len(t["content"]) for t in conversation(row, "raft")) for row in as_rows], dtype=np.int64
    )
    out: dict[str, Any] = {"characters": lengths.token_stats(chars)}
    if tokenizer is not None:
        measured = lengths.measure((sft_example(row, "raft", tokenizer) for row in as_rows), tokenizer)
        out["tokens"] = lengths.token_stats(measured.lengths)
        for limit in (512, 1024, 2048, 4096):
            out.setdefault("rows_longer_than", {})[str(limit)] = int((measured.lengths > limit).sum())
    return out


def write_rows(rows: list[dict[str, Any]], out: Path) -> None:
    import orjson

    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp")
    with tmp.open("wb") as handle:
        for row in rows:
            handle.write(orjson.dumps(row) + b"\n")
    tmp.replace(out)


def note(message: str) -> None:
    print(f"note: {message}", file=sys.stderr)
