"""`tunelab sql`, `tunelab runs`, `tunelab export`: reading the warehouse from the command line."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from tunelab.cliopts import ResultFormat, ResultFormatOption, WarehouseOption, WorkspaceOption
from tunelab.errors import UserError
from tunelab.workspace import as_workspace, guard_output

OutOption = Annotated[
    Path | None, typer.Option("--out", help="write the result to this file instead of stdout")
]

# the metric `tunelab runs` headlines, in order of preference: the first one an evaluation of the run has
# (token F1 exists only for RAG answers, where it is the number that matters)
HEADLINE_METRICS = ("token_f1", "rougeL", "chrf_corpus", "cosine", "judge", "label_acc")

RUNS_SQL = f"""
WITH last_loss AS (
    SELECT run_id, arg_max(loss, step) AS final_loss, max(step) AS steps
    FROM train_log WHERE loss IS NOT NULL GROUP BY run_id
),
-- the latest evaluation that generated with each run's adapter, and the model name it used there
latest_eval AS (
    SELECT p.run_id, arg_max(p.eval_id, e.created_at) AS eval_id, arg_max(p.model, e.created_at) AS model
    FROM (SELECT DISTINCT eval_id, model, run_id FROM predictions WHERE run_id IS NOT NULL) p
    JOIN evals e USING (eval_id)
    GROUP BY p.run_id
),
headline AS (
    SELECT l.run_id, l.eval_id,
           arg_min(
               printf('%s %.3f [%.3f, %.3f] n=%d', m.metric, m.value, m.ci_low, m.ci_high, m.n),
               list_position({list(HEADLINE_METRICS)!r}, m.metric)
           ) AS headline
    FROM latest_eval l
    JOIN eval_metrics m ON m.eval_id = l.eval_id AND m.model = l.model
    WHERE list_contains({list(HEADLINE_METRICS)!r}, m.metric) AND m.ci_low IS NOT NULL
    GROUP BY l.run_id, l.eval_id
)
SELECT r.run_id, r.kind, r.status, r.curation_id, c.dataset, c.data_version, r.parent_run_id,
       r.base_model,
       concat_ws(' ',
           'lr=' || json_extract_string(r.recipe, '$.train.' || r.kind || '.learning_rate'),
           CASE WHEN CAST(json_extract_string(r.recipe, '$.train.' || r.kind || '.max_steps') AS BIGINT) > 0
                THEN 'steps=' || json_extract_string(r.recipe, '$.train.' || r.kind || '.max_steps')
                ELSE 'epochs=' || json_extract_string(r.recipe, '$.train.' || r.kind || '.epochs') END,
           'batch=' || json_extract_string(r.recipe, '$.train.' || r.kind || '.batch_size') || 'x'
               || json_extract_string(r.recipe, '$.train.' || r.kind || '.grad_accum'),
           'max_len=' || json_extract_string(r.recipe, '$.train.' || r.kind || '.max_length'),
           'r=' || json_extract_string(r.recipe, '$.train.lora.r'),
           CASE WHEN r.kind = 'dpo' THEN 'beta=' || json_extract_string(r.recipe, '$.train.dpo.beta') END
       ) AS hyperparameters,
       l.steps, l.final_loss, h.headline AS latest_eval, h.eval_id, r.note,
       r.started_at, r.finished_at, r.error
FROM runs r
LEFT JOIN curations c USING (curation_id)
LEFT JOIN last_loss l USING (run_id)
LEFT JOIN headline h USING (run_id)
ORDER BY r.started_at, r.run_id
"""


def resolve_warehouse(workspace: Path | None, warehouse: Path | None) -> Path:
    """--warehouse FILE, else the workspace's warehouse (default ./tunelab-workspace)."""
    if workspace is not None and warehouse is not None:
        raise UserError("--workspace and --warehouse: give one or the other")
    return warehouse if warehouse is not None else as_workspace(workspace).warehouse


def sql_command(
    query: Annotated[
        str, typer.Argument(help="a read-only SQL query (SELECT, WITH, FROM, SHOW, DESCRIBE); - reads stdin")
    ],
    workspace: WorkspaceOption = None,
    warehouse: WarehouseOption = None,
    fmt: ResultFormatOption = ResultFormat.table,
    out: OutOption = None,
    force: Annotated[bool, typer.Option("--force", help="replace an existing --out file")] = False,
) -> None:
    """Query the warehouse read-only; writes, ATTACH, COPY, INSTALL/LOAD and file reads are refused."""
    from tunelab.warehouse.usersql import run_user_sql, write_result

    if query == "-":
        query = sys.stdin.read()
    db = resolve_warehouse(workspace, warehouse)
    if out is not None:
        guard_output(out, db, force)  # before the query runs: nothing is clobbered, nothing is wasted
    frame = run_user_sql(db, query)
    write_result(frame, fmt.value, out)


def runs_command(
    workspace: WorkspaceOption = None,
    warehouse: WarehouseOption = None,
    fmt: ResultFormatOption = ResultFormat.table,
) -> None:
    """List training runs: lineage (curation, data version, parent run, base model), key hyperparameters,
    final loss, the latest evaluation's headline metric with its interval, and the run's --note."""
    from tunelab.warehouse.store import query
    from tunelab.warehouse.usersql import write_result

    write_result(query(resolve_warehouse(workspace, warehouse), RUNS_SQL), fmt.value, title="runs")


def export_command(
    out_dir: Annotated[Path, typer.Argument(help="folder that receives one <table>.parquet per table")],
    workspace: WorkspaceOption = None,
    warehouse: WarehouseOption = None,
    force: Annotated[bool, typer.Option("--force", help="replace existing <table>.parquet files")] = False,
) -> None:
    """Write every warehouse table to OUT_DIR/<table>.parquet."""
    from tunelab.warehouse.export import export_tables

    db = resolve_warehouse(workspace, warehouse)
    guard_output(out_dir, db, force=force, folder=True)  # never into the warehouse's own folders
    written = export_tables(db, out_dir, force=force)
    for table, rows in written.items():
        typer.echo(f"{out_dir / (table + '.parquet')}: {rows} rows")


def register(app: typer.Typer) -> None:
    # a query that opens with an SQL comment ("-- the newest eval ...") is the query, not an unknown option
    app.command("sql", context_settings={"ignore_unknown_options": True})(sql_command)
    app.command("runs")(runs_command)
    app.command("export")(export_command)
