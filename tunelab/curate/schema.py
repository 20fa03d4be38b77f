"""Schema stage: required canonical fields present, of the right type, and not empty after stripping."""

from __future__ import annotations

import polars as pl

from tunelab.curate.common import StageContext, StageOutput, decisions, survivors
from tunelab.curate.config import SchemaSettings
from tunelab.errors import UserError
from tunelab.records.fields import CANONICAL_FIELDS, LIST_FIELDS, REQUIRED_FIELDS

EXPECTED_TYPE = {
    field: ("list[str]" if field in LIST_FIELDS else "str")
    for fields in CANONICAL_FIELDS.values()
    for field in fields
}


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
    if field in LIST_FIELDS:
        empty = pl.col(field).list.eval(pl.element().str.strip_chars().str.len_chars() > 0).list.any().not_()
    else:
        empty = pl.col(field).str.strip_chars().str.len_chars() == 0
    wrong = present & pl.col(field).is_null()
    reason = pl.when(wrong).then(pl.lit(f"wrong_type:{field}"))
    evidence = pl.when(wrong).then(
        pl.format(f"{field} is {{}}, expected {EXPECTED_TYPE[field]}", source_type)
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
    ).filter(pl.col("reason").is_not_null())
    return survivors(
        frame, decisions(judged["sample_id"], "schema", False, judged["reason"], evidence=judged["evidence"])
    )
