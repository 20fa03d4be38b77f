"""The whole product on the bundled data: `tunelab demo`, then the warehouse it leaves behind."""

import json
from pathlib import Path

import polars as pl

from tunelab.warehouse.store import query

REPO = Path(__file__).resolve().parents[1]


def sql(workspace: Path, text: str) -> pl.DataFrame:
    return query(workspace / "tunelab.duckdb", text)


def test_demo_accounts_for_every_row(demo_workspace: Path):
    curations = sql(demo_workspace, "select * from curations order by dataset")
    assert set(curations["dataset"]) == {"demo-persona", "demo-persona-dpo"}
    for row in curations.iter_rows(named=True):
        assert row["kept"] + row["dropped"] + row["quarantined"] == row["read"], row
        terminal = sql(
            demo_workspace,
            f"""select count(distinct sample_id) as n from decisions
                where curation_id = '{row["curation_id"]}' and (kept = false or stage = 'final')""",
        )["n"][0]
        quarantined = sql(
            demo_workspace, f"select count(*) as n from quarantine where curation_id = '{row['curation_id']}'"
        )["n"][0]
        assert terminal + quarantined == row["read"]
    planted = json.loads((REPO / "tunelab/demo/planted.json").read_text(encoding="utf-8"))
    sft = curations.filter(pl.col("dataset") == "demo-persona").row(0, named=True)
    assert sft["read"] == planted["sft"]["read"]


def test_demo_trained_sft_then_dpo_linked_to_curations(demo_workspace: Path):
    runs = sql(
        demo_workspace,
        """select r.run_id, r.kind, r.status, r.parent_run_id, c.dataset, c.data_version
           from runs r join curations c using (curation_id) order by r.started_at""",
    )
    assert runs["kind"].to_list() == ["sft", "dpo"]
    assert runs["status"].to_list() == ["finished", "finished"]
    assert runs["dataset"].to_list() == ["demo-persona", "demo-persona-dpo"]
    assert runs["parent_run_id"][1] == runs["run_id"][0]
    log = sql(
        demo_workspace,
        "select run_id, count(*) as n, count(loss) as with_loss from train_log group by run_id",
    )
    assert log.height == 2 and (log["with_loss"] > 3).all()
    dpo_rewards = sql(
        demo_workspace,
        "select count(rewards_margins) as n from train_log join runs using (run_id) where kind = 'dpo'",
    )
    assert dpo_rewards["n"][0] > 0


def test_demo_evaluation_compares_base_sft_dpo(demo_workspace: Path):
    compare = sql(demo_workspace, "select model, value, delta_abs from v_run_compare where metric = 'rougeL'")
    assert compare.height == 3
    by_model = dict(zip(compare["model"], compare["value"], strict=True))
    assert by_model["base"] is not None
    # a random-init base model cannot produce the persona answers; the trained adapter must do better
    tuned = [v for m, v in by_model.items() if m != "base"]
    assert max(tuned) > by_model["base"]
    n_pred = sql(demo_workspace, "select count(*) as n from predictions")["n"][0]
    n_eval = sum(
        1
        for line in (REPO / "tunelab/demo/eval.jsonl").read_text(encoding="utf-8").splitlines()
        if line.strip()
    )
    assert n_pred == 3 * n_eval
