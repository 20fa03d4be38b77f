"""Settings of each curation stage, as they appear under `curate:` in a recipe."""

from __future__ import annotations

from typing import Literal, get_args

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

StageName = Literal[
    "schema",
    "normalize",
    "pairs",
    "language",
    "pii",
    "quality",
    "length",
    "exact",
    "minhash",
    "semantic",
    "decontaminate",
    "balance",
    "split",
]
# the default order of curate.stages
STAGE_NAMES: tuple[str, ...] = get_args(StageName)
# stages that drop rows by content (balance must come after them)
DROPPING_STAGES = (
    "pairs", "language", "pii", "quality", "length", "exact", "minhash", "semantic", "decontaminate",
)  # fmt: skip


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class SchemaSettings(Strict):
    # extra canonical fields that must be present besides the kind's required ones (e.g. ["label"])
    require: list[str] = Field(default_factory=list)


class NormalizeSettings(Strict):
    unicode: Literal["NFC", "NFKC", "none"] = "NFC"
    collapse_whitespace: bool = True
    strip_control: bool = True


# >>> language / pii settings (curate/language.py, curate/pii.py; docs/curate.md "Language" and "Personal information")
class LanguageSettings(Strict):
    # ISO 639-1 codes a text field may be in; a field detected as another language is dropped as lang:<code>
    allow: list[str] = Field(default_factory=lambda: ["ko", "en"], min_length=1)
    # the languages the detector tells apart (allow is added): ko/en/ja/zh differ by script, so even one word
    # is told apart at ~35k texts/s; adding Latin-script languages (fr, de, ...) made 2.4 % of KULLM's English
    # rows "French"/"German" in low-accuracy mode and cost 100x in high-accuracy mode (docs/curate.md)
    detect: list[str] = Field(default_factory=lambda: ["ko", "en", "ja", "zh"])
    # a field with Hangul in it must have at least this share of its letters in Hangul (Korean text that is
    # mostly foreign letters); 0 = off (the default). Reason lang:hangul_ratio<X. Off by default because
    # ordinary Korean developer questions sit under any useful floor ("React에서 useState hook 어떻게 써요?"
    # 0.29, "Spring Boot application.yml 설정 예시" 0.14) and so does English quoting a Korean word, which
    # allow: [.., en] admits; 0.3 is a good floor for chat data (nothing in ChatbotData or HRC is under it)
    min_hangul_ratio: float = Field(0.0, ge=0.0, le=1.0)
    # an answer (response, chosen, rejected, answer, cot, assistant turn) in another language than its
    # question (prompt, question, user turn) is a finding, even when both languages are allowed
    match_prompt: bool = True
    # fields with fewer letters than this are not judged (numbers, code symbols, "OK")
    min_letters: int = Field(5, ge=1)

    @field_validator("allow", "detect")
    @classmethod
    def _codes(cls, codes: list[str]) -> list[str]:
        return [code.strip().lower() for code in codes]


PII_KINDS = ("kr_rrn", "card", "account", "phone", "email", "ip")
PiiKind = Literal["kr_rrn", "card", "account", "phone", "email", "ip"]


class PiiSettings(Strict):
    # mask: the value becomes <PII:kind> in the curated text and the row stays; drop: the row goes
    action: Literal["drop", "mask"] = "mask"
    kinds: list[PiiKind] = Field(default_factory=lambda: list(PII_KINDS))
    # true: a resident registration number must pass the check digit (dates, phone-like and random 13-digit
    # numbers do not); false: also YYMMDD-GNNNNNN with a valid date and gender digit and no check digit (the
    # numbers issued since October 2020 have none), at the cost of precision on undashed numbers
    rrn_checksum: bool = True


# <<< language / pii settings


# >>> quality / pairs settings (curate/quality.py, curate/pairs.py; docs/curate.md "Quality" and "Preference pairs")
QUALITY_CHECKS = ("special_tokens", "repetition", "refusal", "truncated", "symbol_ratio")
QualityCheck = Literal["special_tokens", "repetition", "refusal", "truncated", "symbol_ratio"]
# tokenizer control tokens that should never be part of a text (any `<|name|>` counts too: bar_tokens)
SPECIAL_TOKENS = [
    "<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|eot_id|>", "<|begin_of_text|>", "<|end_of_text|>",
    "<|start_header_id|>", "<|end_header_id|>", "</s>", "<s>", "[INST]", "[/INST]", "<<SYS>>", "<</SYS>>",
    "<unk>", "<pad>", "[PAD]", "[UNK]", "<start_of_turn>", "<end_of_turn>", "[|endofturn|]", "[|system|]",
    "[|user|]", "[|assistant|]",
]  # fmt: skip
# AI boilerplate and canned refusals in answers; "…" = up to 40 characters inside one sentence, case ignored.
# Chosen on the shared datasets (docs/curate.md): generic apologies ("I'm sorry, I can't help with that")
# are left out on purpose, since they are the preferred answer of harmlessness data (hh-rlhf harmless-base)
REFUSAL_PHRASES = [
    "AI 언어 모델로서", "AI 언어 모델이기 때문에", "AI 언어 모델이므로", "저는 AI 언어 모델", "인공지능 언어 모델로서",
    "저는 인공지능 언어 모델", "저는 언어 모델", "저는 인공지능이기 때문에", "저는 AI이기 때문에", "저는 AI라서",
    "AI 어시스턴트로서", "인공지능 어시스턴트로서", "AI로서 저는", "죄송하지만 … 수 없습니다", "죄송합니다만 … 수 없습니다",
    "죄송하지만 … 수 없어요", "답변드릴 수 없습니다", "답변을 드릴 수 없습니다", "도와드릴 수 없습니다",
    "as an AI language model", "as a language model", "as an AI model", "as an AI assistant",
    "I am an AI language model", "I'm an AI language model", "as a large language model", "I'm just an AI",
    "I am just an AI", "I don't have personal opinions", "I do not have personal opinions",
    "I cannot fulfill … request", "my knowledge cutoff",
]  # fmt: skip


class QualitySettings(Strict):
    checks: list[QualityCheck] = Field(default_factory=lambda: list(QUALITY_CHECKS))
    # checks whose findings are kept=true annotations (same reason) instead of drops
    flag_only: list[QualityCheck] = Field(default_factory=list)
    special_tokens: list[str] = Field(default_factory=lambda: list(SPECIAL_TOKENS))
    bar_tokens: bool = True  # any <|name|> is a special token too
    # tokens only at the end of a text field ("...입니다.<|endoftext|>": a generation saved with its end-of-text
    # marker) are removed and the row stays (a kept=true quality:special_tokens decision says so); a token
    # anywhere else, or a text that is nothing but tokens, drops the row. Conversations are never rewritten
    strip_trailing_tokens: bool = True
    # repetition: character n-grams; above these shares of repeated n-grams / of characters in repeated
    # lines a text loops (0.5: the shared datasets' legal answers reach 0.4 with legitimately repeated phrases)
    ngram: int = Field(10, ge=2, le=64)
    max_dup_ngram_ratio: float = Field(0.5, ge=0.0, le=1.0)
    max_dup_line_ratio: float = Field(0.5, ge=0.0, le=1.0)
    # a unit of 1-4 letters repeated this many times in a row (아아아아아아아아); bare jamo (ㅋㅋ, ㅠㅠ) need more
    max_repeats: int = Field(8, ge=2)
    max_repeats_jamo: int = Field(20, ge=2)
    refusal_phrases: list[str] = Field(default_factory=lambda: list(REFUSAL_PHRASES))
    extra_refusal_phrases: list[str] = Field(default_factory=list)  # added to the defaults
    # an answer at least this long that ends on a word that is no sentence end is truncated (shorter ones are
    # chat: "킁킁", "멍 때리기")
    truncation_min_chars: int = Field(200, ge=1)
    # ratios are judged on texts of at least ratio_min_chars characters ("^^", "1번" are not noise)
    ratio_min_chars: int = Field(20, ge=1)
    max_symbol_ratio: float = Field(0.5, ge=0.0, le=1.0)
    max_digit_ratio: float = Field(0.5, ge=0.0, le=1.0)
    max_url_ratio: float = Field(0.6, ge=0.0, le=1.0)


class PairsSettings(Strict):
    # after removing these tokens and whitespace, an answer with nothing left is empty (pair:empty_*)
    special_tokens: list[str] = Field(default_factory=lambda: list(SPECIAL_TOKENS))
    identical: bool = True  # chosen == rejected apart from whitespace: pair:identical
    # length bias: rejected at least `length_ratio` times as long as chosen while chosen has at most
    # `short_chars` characters (the pair teaches "shorter wins", not the preference). Off (0) by default: in
    # hh-rlhf harmless-base 77 of 2,312 pairs match 8x / 30 chars, and nearly all are the point of the data
    # (a curt evasive "How?" preferred to a long harmful answer); turn it on for helpfulness data
    length_ratio: float = Field(0.0, ge=0.0)
    short_chars: int = Field(30, ge=0)
    # the same prompt preferring A over B in one row and B over A in another: both rows go (drop_both), or
    # the first one stays (keep_first), or nothing is done (off)
    contradictory: Literal["drop_both", "keep_first", "off"] = "drop_both"


# <<< quality / pairs settings


# a limit for every text field of the kind (`max_chars: 2048`) or per canonical field (`{prompt: 2000}`)
Limit = int | dict[str, int]


class LengthSettings(Strict):
    # Hugging Face tokenizer name or local path, or "tunelab-tiny" (the workspace's tiny model);
    # None = character limits only
    tokenizer: str | None = None
    min_chars: Limit = Field(default_factory=dict)
    max_chars: Limit = Field(default_factory=dict)
    min_tokens: Limit = Field(default_factory=dict)
    max_tokens: Limit = Field(default_factory=dict)

    @model_validator(mode="after")
    def _non_negative(self) -> LengthSettings:
        for block in LIMIT_KEYS:
            value = getattr(self, block)
            for field, limit in value.items() if isinstance(value, dict) else [("", value)]:
                if limit < 0:
                    raise ValueError(f"{block}{'.' + field if field else ''} must be >= 0")
        return self

    def limits(self, block: str, fields: tuple[str, ...]) -> dict[str, int]:
        """The per-field limits of `block` for a kind with `fields`: a scalar applies to each of them."""
        value = getattr(self, block)
        return dict(value) if isinstance(value, dict) else dict.fromkeys(fields, value)

    def uses_tokens(self) -> bool:
        return any(getattr(self, block) not in ({}, None) for block in ("min_tokens", "max_tokens"))


LIMIT_KEYS = ("min_chars", "max_chars", "min_tokens", "max_tokens")


class DedupKeySettings(Strict):
    """What near-dup stages compare instead of the raw content (tunelab/curate/dedup_key.py)."""

    unicode: Literal["NFKC", "NFC", "none"] = "NFKC"
    lowercase: bool = True
    punctuation: bool = True  # remove Unicode punctuation and symbols
    whitespace: bool = True  # collapse runs of whitespace to one space, strip the ends

    def is_identity(self) -> bool:
        return self.unicode == "none" and not (self.lowercase or self.punctuation or self.whitespace)


class ExactSettings(Strict):
    keep: Literal["first", "longest"] = "first"
    # None: the normalised content's hash; a key block: rows with the same dedup key are duplicates
    key: DedupKeySettings | None = None


class MinhashSettings(Strict):
    ngram: int = Field(5, ge=1, le=64)
    num_perm: int = Field(128, ge=16, le=1024)
    # 0.7 on the dedup key: copies with edits, spacing, punctuation and case noise (F1 0.98 against the
    # key's exact Jaccard, benchmarks/minhash_bench.py). The paraphrase-calibrated 0.46
    # (benchmarks/calibrate_defaults.py) lost precision on every held-back split (KorSTS test 0.66 vs 0.85)
    # and quadrupled drops on ChatbotData, so it is a documented option, not the default (docs/curate.md)
    threshold: float = Field(0.7, ge=0.0, le=1.0)
    keep: Literal["first", "longest"] = "first"
    seed: int = 1
    key: DedupKeySettings = Field(default_factory=DedupKeySettings)


# >>> dedup defaults
# Default cosine threshold per built-in embedding model: the lowest with precision >= 0.9 on KorSTS train +
# Question_pair train (benchmarks/calibrate_defaults.py; held-out figures in docs/curate.md). Any other model
# falls back to UNCALIBRATED_SEMANTIC_THRESHOLD: run `tunelab calibrate` for it.
SEMANTIC_THRESHOLDS = {"use-v3": 0.85, "e5-small": 0.97}
UNCALIBRATED_SEMANTIC_THRESHOLD = 0.9
# <<< dedup defaults


class SemanticSettings(Strict):
    model: str = "use-v3"
    # None: the model's calibrated default (SEMANTIC_THRESHOLDS), filled in when the settings are read
    threshold: float | None = Field(None, ge=-1.0, le=1.0)
    keep: Literal["first", "longest"] = "first"
    block_size: int = Field(4096, ge=64)
    batch_size: int = Field(64, ge=1)
    # embedding budget per row, in tokens (~2.7 characters each, curate/semantic.py); None = whole rows.
    # Chosen by its measured recall cost (docs/curate.md, benchmarks/semantic_throughput_bench.py)
    max_tokens: int | None = Field(48, ge=8)
    # neighbour search: exact (brute force), ann (IVF candidates + exact cosine), auto = exact below exact_below rows
    search: Literal["auto", "exact", "ann"] = "auto"
    exact_below: int = Field(5_000, ge=0)

    @model_validator(mode="after")
    def _model_threshold(self) -> SemanticSettings:
        if self.threshold is None:
            self.threshold = SEMANTIC_THRESHOLDS.get(self.model, UNCALIBRATED_SEMANTIC_THRESHOLD)
        return self


class DecontaminateSettings(Strict):
    # evaluation file(s) whose near-copies must not be trained on; default: the recipe's evaluate.eval_set
    eval_path: str | None = None
    fields: dict[str, str] = Field(default_factory=dict)
    ngram: int = Field(5, ge=1, le=64)
    threshold: float = Field(0.6, ge=0.0, le=1.0)


class BalanceSettings(Strict):
    label: str = "label"
    max_per_label: int | None = Field(None, ge=1)
    # label -> share; a label not named is left as it is, a label at 0 is dropped entirely
    ratios: dict[str, float] | None = None
    oversample: bool = False
    seed: int = 0

    @field_validator("ratios", mode="before")
    @classmethod
    def _label_keys(cls, ratios: object) -> object:
        # YAML reads `{1: 0.5, 0: 0.5}` or `{true: ...}` with int/bool keys; labels are text
        if isinstance(ratios, dict):
            return {label_text(key): value for key, value in ratios.items()}
        return ratios

    @field_validator("ratios")
    @classmethod
    def _some_share(cls, ratios: dict[str, float] | None) -> dict[str, float] | None:
        if ratios is None:
            return None
        negative = [label for label, share in ratios.items() if share < 0]
        if negative:
            raise ValueError(f"{negative[0]}: a ratio must be >= 0")
        if ratios and not any(share > 0 for share in ratios.values()):
            raise ValueError("every ratio is 0; give at least one label a ratio above 0")
        return ratios


def label_text(value: object) -> str:
    """A label key as the loader writes labels: `true`, `1`, `1.0` read from YAML become text."""
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


class SplitSettings(Strict):
    val_ratio: float = Field(0.1, ge=0.0, lt=1.0)
    stratify: str | None = "label"
    seed: int = 0
    # document: rows sharing a golden document (curate/documents.py) stay on one side; none: rows alone
    # (near-dup clusters are kept together either way). Unset: document for kind raft, else none
    group_by: Literal["document", "none"] | None = None


class CurateConfig(Strict):
    stages: list[StageName] = Field(default_factory=lambda: list(STAGE_NAMES))
    schema_: SchemaSettings = Field(default_factory=SchemaSettings, alias="schema")
    normalize: NormalizeSettings = Field(default_factory=NormalizeSettings)
    language: LanguageSettings = Field(default_factory=LanguageSettings)
    pii: PiiSettings = Field(default_factory=PiiSettings)
    pairs: PairsSettings = Field(default_factory=PairsSettings)
    quality: QualitySettings = Field(default_factory=QualitySettings)
    length: LengthSettings = Field(default_factory=LengthSettings)
    exact: ExactSettings = Field(default_factory=ExactSettings)
    minhash: MinhashSettings = Field(default_factory=MinhashSettings)
    semantic: SemanticSettings = Field(default_factory=SemanticSettings)
    decontaminate: DecontaminateSettings = Field(default_factory=DecontaminateSettings)
    balance: BalanceSettings = Field(default_factory=BalanceSettings)
    split: SplitSettings = Field(default_factory=SplitSettings)
    # above this share of records read going to quarantine, curate/audit still write but exit 3 (curate/guard.py)
    max_quarantine_ratio: float = Field(0.05, ge=0.0, le=1.0)
    # where the stages run: this process, or a Ray cluster (curate/executors/ray.py; same decisions either
    # way). Neither key is part of the data version: the same data curated on either executor is one version.
    executor: Literal["local", "ray", "stream"] = "local"
    # executor stream (curate/executors/streaming.py): rows read, curated and written per batch of this many;
    # like the executor keys, not part of the data version (the same data in any batch size is one version)
    stream_batch_rows: int = Field(100_000, ge=1)
    # ray.init's address: auto (the cluster this machine belongs to), HOST:PORT or ray://HOST:PORT
    ray_address: str = "auto"

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    @field_validator("stages")
    @classmethod
    def _schema_first_split_last(cls, stages: list[str]) -> list[str]:
        # nulls and wrongly typed fields must never reach the text stages: schema runs first, listed or not
        stages = ["schema", *(name for name in stages if name != "schema")]
        twice = sorted({name for name in stages if stages.count(name) > 1})
        if twice:
            # the report counts rows per stage name: a stage listed twice would hide its first pass
            raise ValueError(f"{', '.join(twice)} is listed more than once; list each stage once")
        if "split" in stages and stages[-1] != "split":
            raise ValueError("split must be the last stage (its decisions are the terminal ones)")
        if "balance" in stages:
            # balance sets per-label counts (and makes oversampled copies): a stage dropping rows after it
            # would undo the ratios it was asked for, or drop its copies as duplicates
            later = [name for name in stages[stages.index("balance") + 1 :] if name in DROPPING_STAGES]
            if later:
                raise ValueError(
                    f"balance must come after {', '.join(later)} (stages that drop rows would undo its "
                    "label counts); required order: schema, ..., balance, split"
                )
        return stages

    def settings_for(self, name: str) -> BaseModel:
        """The settings block of stage `name` (the block under `curate:` with that key)."""
        for field_name, info in type(self).model_fields.items():
            if (info.alias or field_name) == name and field_name != "stages":
                value = getattr(self, field_name)
                assert isinstance(value, BaseModel)
                return value
        raise KeyError(f"curate: no settings block for stage {name!r}")

    def with_stages(self, stages: list[str]) -> CurateConfig:
        """The same settings with another stage list, checked like a recipe's (schema first, split last)."""
        return self.model_copy(update={"stages": self._schema_first_split_last(list(stages))})
