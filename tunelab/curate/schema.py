"""Schema stage: required canonical fields present, of the right type, and not empty after stripping.

Conversations (chat `messages`, dpo `history`) are judged turn by turn: every role one of system / user /
assistant, no empty turn, a system message only first, user and assistant alternating from a user turn,
and (chat) a final assistant turn to learn from. A conversation given to kind sft that is more than one
exchange is dropped as multi_turn:use_kind_chat (never cut to its last exchange).
"""

from __future__ import annotations

import polars as pl

from tunelab.curate.common import StageContext, StageOutput, decisions, survivors
from tunelab.curate.config import SchemaSettings
from tunelab.errors import UserError
from tunelab.records.fields import CANONICAL_FIELDS, LIST_FIELDS, MESSAGE_FIELDS, REQUIRED_FIELDS, ROLES

EXPECTED_TYPE = {
    field: (
        "a list of role/content turns"
        if field in MESSAGE_FIELDS
        else "list[str]"
        if field in LIST_FIELDS
        else "str"
    )
    for fields in CANONICAL_FIELDS.values()
    for field in fields
}
MULTI_TURN = "multi_turn:use_kind_chat"


def turn_problem(turns: list[dict[str, str]], final_assistant: bool) -> tuple[str, str] | None:
    """(reason, evidence) for the first thing wrong with a conversation, or None. Reasons carry the
    0-based turn index (messages[i] in the source)."""
    previous = None
    for i, turn in enumerate(turns):
        role, content = turn["role"], turn["content"]
        if role not in ROLES:
            return f"invalid_role:{i}", f"turn {i} has role {role!r}; roles are {', '.join(ROLES)}"
        if not content.strip():
            return f"empty_turn:{i}", f"turn {i} ({role}) is empty"
        if role == "system" and i > 0:
            # most chat templates take one system message, first; a later one would be dropped or raise
            return f"misplaced_system:{i}", f"turn {i} is a second or late system message"
        if role != "system" and role == previous:
            # two user (or assistant) turns in a row: chat templates that enforce alternation raise, and
            # merging them would change the data, so the row is reported instead
            return f"consecutive_roles:{i}", f"turns {i - 1} and {i} are both {role}"
        if role == "assistant" and previous in (None, "system"):
            return f"assistant_first:{i}", f"turn {i} is an assistant turn before any user turn"
        previous = role if role != "system" else previous
    if final_assistant and previous != "assistant":
        last = turns[-1]["role"] if turns else "none"
        return "no_final_assistant", f"the last turn is {last}; training learns the assistant's turns"
    if not final_assistant and previous == "user":
        # dpo history precedes the final user prompt: a user turn last would make two in a row
        return f"consecutive_roles:{len(turns)}", "history ends with a user turn before the prompt"
    return None


def _conversation_checks(frame: pl.DataFrame, field: str) -> pl.DataFrame:
    """sample_id, reason, evidence for rows whose conversation in `field` has a problem."""
    ids, reasons, evidence = [], [], []
    prefix = "" if field == "messages" else f"{field}."  # dpo: empty_turn:history.1
    for sample_id, turns in zip(frame["sample_id"].to_list(), frame[field].to_list(), strict=True):
        if not turns:
            continue  # null (missing / wrong type) or empty: the field checks name those
        problem = turn_problem(turns, final_assistant=field == "messages")
        if problem is not None:
            reason, why = problem
            ids.append(sample_id)
            reasons.append(reason.replace(":", f":{prefix}", 1))
            evidence.append(why)
    return pl.DataFrame(
        {"sample_id": ids, "turn_reason": reasons, "turn_evidence": evidence},
        schema={"sample_id": pl.String, "turn_reason": pl.String, "turn_evidence": pl.String},
    )


def _reason_for(field: str, required: bool, frame: pl.DataFrame) -> tuple[pl.Expr, pl.Expr]:
    """(reason, evidence) expressions for one field; null when the field is fine."""
    source_type = pl.col("_types").struct.field(field)
    present = source_type.is_not_null()
    if field == "label":
        value_ok = pl.col("label").is_not_null()
        empty = pl.col("label").str.strip_chars().str.len_chars() == 0
        reason = (
            pl.when(~value_ok).then(pl.lit("missing_field:label")).when(empty).then(pl.lit("empty:label"))
        )
        return reason.otherwise(None), pl.lit(None, pl.String)
    if field in MESSAGE_FIELDS:
        empty = pl.col(field).list.len() == 0  # turn by turn emptiness is _conversation_checks'
    elif field in LIST_FIELDS:
        empty = pl.col(field).list.eval(pl.element().str.strip_chars().str.len_chars() > 0).list.any().not_()
    else:
        empty = pl.col(field).str.strip_chars().str.len_chars() == 0
    wrong = present & pl.col(field).is_null()
    multi_turn = source_type.str.starts_with("conversation[").fill_null(False)
    reason = pl.when(multi_turn).then(pl.lit(MULTI_TURN)).when(wrong).then(pl.lit(f"wrong_type:{field}"))
    evidence = (
        pl.when(multi_turn)
        .then(
            pl.format(
                "a conversation ({}) is not one user/assistant exchange, which is all kind sft holds; "
                "set dataset.kind: chat to keep every turn",
                source_type.str.strip_prefix("conversation[").str.strip_suffix("]"),
            )
        )
        .when(wrong)
        .then(pl.format(f"{field} is {{}}, expected {EXPECTED_TYPE[field]}", source_type))
    )
    if required:
        reason = reason.when(~present).then(pl.lit(f"missing_field:{field}"))
    reason = reason.when(present & empty.fill_null(False)).then(pl.lit(f"empty:{field}"))
    return reason.otherwise(None), evidence.otherwise(None)


def run(frame: pl.DataFrame, cfg: SchemaSettings, ctx: StageContext) -> StageOutput:
    """Drop rows missing a required field, with a wrongly typed field, or with an empty one (first failure wins)."""
    fields = CANONICAL_FIELDS[ctx.kind]
    required = set(REQUIRED_FIELDS[ctx.kind]) | set(cfg.require)
    every_field = {f for kind_fields in CANONICAL_FIELDS.values() for f in kind_fields}
    unknown = sorted(set(cfg.require) - every_field - {"label"})
    if unknown:
        raise UserError(f"curate.schema.require: {unknown[0]!r} is not a canonical field")
    struct = pl.Struct({field: pl.String for field in fields})
    work = frame.with_columns(_types=pl.col("field_types").str.json_decode(struct))
    checks = [_reason_for(field, field in required, work) for field in fields if field in work.columns]
    if "label" in required:
        checks.append(_reason_for("label", True, work))
    judged = work.select(
        "sample_id",
        reason=pl.coalesce([reason for reason, _ in checks]),
        evidence=pl.coalesce([evidence for _, evidence in checks]),
    )
    for field in (f for f in fields if f in MESSAGE_FIELDS and f in frame.columns):
        # field-level failures (missing, wrong type, empty) first, then the first bad turn
        turns = _conversation_checks(frame, field)
        judged = judged.join(turns, on="sample_id", how="left", maintain_order="left").select(
            "sample_id",
            reason=pl.coalesce("reason", "turn_reason"),
            evidence=pl.when(pl.col("reason").is_not_null())
            .then(pl.col("evidence"))
            .otherwise(pl.col("turn_evidence")),
        )
    judged = judged.filter(pl.col("reason").is_not_null())
    return survivors(
        frame, decisions(judged["sample_id"], "schema", False, judged["reason"], evidence=judged["evidence"])
    )
