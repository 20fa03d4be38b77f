"""Issue 12's hardening cases that are not about SQL types or the dashboard (those have their own files)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tunelab.errors import UserError
from tunelab.recipe import parse_recipe


@pytest.mark.parametrize("name", ["../../../x", "a/b", "a\\b", ".hidden", "x/../../y", "tab\there"])
def test_dataset_names_cannot_leave_the_workspace(name: str) -> None:
    with pytest.raises(UserError, match=r"dataset\.name: .*must be a plain name"):
        parse_recipe({"dataset": {"path": "x.jsonl", "name": name}})


@pytest.mark.parametrize("name", ["demo-persona", "한국어_데이터", "v1.2"])
def test_plain_names_are_accepted(name: str) -> None:
    assert parse_recipe({"dataset": {"path": "x.jsonl", "name": name}}).dataset.name == name


def _cli(*args: str):
    from typer.testing import CliRunner

    from tunelab.cli import app

    return CliRunner().invoke(app, list(args))


@pytest.fixture
def workspace(tmp_path):
    from tunelab.warehouse.connection import write_connection

    ws = tmp_path / "ws"
    with write_connection(ws / "tunelab.duckdb"):
        pass
    (ws / "curations" / "c1").mkdir(parents=True)
    return ws


@pytest.mark.parametrize(
    ("out", "message"),
    [
        ("ws/tunelab.duckdb", "that is the warehouse itself"),
        ("ws/tunelab.duckdb.wal", "that is the warehouse itself"),
        ("ws/curations/c1/train.parquet", "inside the workspace's curations/ folder"),
        ("ws/runs/x.csv", "inside the workspace's runs/ folder"),
    ],
)
def test_sql_out_never_clobbers_the_warehouse_or_managed_files(workspace, out, message) -> None:
    before = (workspace / "tunelab.duckdb").read_bytes()
    target = workspace.parent / out
    result = _cli(
        "sql", "select 1 AS x", "--format", "csv", "-w", str(workspace), "--out", str(target), "--force"
    )
    assert isinstance(result.exception, UserError) and message in str(result.exception)
    assert (workspace / "tunelab.duckdb").read_bytes() == before


def test_sql_out_refuses_an_existing_file_unless_forced(workspace) -> None:
    out = workspace.parent / "result.csv"
    out.write_text("keep me", encoding="utf-8")
    result = _cli("sql", "select 1 AS x", "--format", "csv", "-w", str(workspace), "--out", str(out))
    assert isinstance(result.exception, UserError) and "already exists; pass --force" in str(result.exception)
    assert out.read_text(encoding="utf-8") == "keep me"
    result = _cli(
        "sql", "select 1 AS x", "--format", "csv", "-w", str(workspace), "--out", str(out), "--force"
    )
    assert result.exit_code == 0 and out.read_text(encoding="utf-8") == "x\n1\n"


def test_export_refuses_managed_folders_and_existing_files(workspace) -> None:
    result = _cli("export", str(workspace / "runs"), "-w", str(workspace))
    assert isinstance(result.exception, UserError) and "runs/ folder" in str(result.exception)
    out = workspace.parent / "export"
    assert _cli("export", str(out), "-w", str(workspace)).exit_code == 0
    result = _cli("export", str(out), "-w", str(workspace))
    assert isinstance(result.exception, UserError) and "pass --force" in str(result.exception)
    assert _cli("export", str(out), "-w", str(workspace), "--force").exit_code == 0


# ---------------------------------------------------------------- curations are atomic, ids never collide

ROWS = [
    {
        "instruction": f"질문 {i}: 서울의  날씨는 어때요?",
        "output": f"답변 {i}: 맑고　따뜻해요! ＡＢＣ",
        "label": "a",
    }
    for i in range(40)
]


def _write_recipe(tmp_path, rows=ROWS, curate: str = "stages: [schema, normalize, exact, split]") -> Path:
    import json

    data = tmp_path / "data.jsonl"
    data.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(
        f"dataset: {{path: data.jsonl, name: tiny}}\ncurate:\n  {curate}\nworkspace: {{dir: ws}}\n",
        encoding="utf-8",
    )
    return recipe


def _dead_pid() -> int:
    import subprocess
    import sys

    proc = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True
    )
    return int(proc.stdout)


def test_the_same_recipe_twice_in_one_second_makes_two_curations(tmp_path) -> None:
    from tunelab.curate.pipeline import curate_recipe
    from tunelab.recipe import load_recipe
    from tunelab.warehouse import store

    recipe = load_recipe(_write_recipe(tmp_path))
    ws = recipe.workspace_at()
    first = curate_recipe(recipe, ws, show_progress=False)[0]
    second = curate_recipe(recipe, ws, show_progress=False)[0]
    assert first.curation_id != second.curation_id and first.data_version == second.data_version
    assert [row["curation_id"] for row in store.curation_folders(ws.warehouse)] == [
        first.curation_id,
        second.curation_id,
    ]
    for result in (first, second):
        assert (result.out_dir / "train.parquet").is_file() and result.out_dir.parent == ws.curations_dir
    assert not list(ws.curations_dir.glob(".*"))  # nothing pending left behind


def test_pending_folders_of_dead_writers_are_finished_or_removed(tmp_path) -> None:
    import json

    from tunelab.curate.outputs import finish_interrupted
    from tunelab.curate.pipeline import curate_recipe
    from tunelab.recipe import load_recipe
    from tunelab.workspace import OWNER_FILE, claim

    recipe = load_recipe(_write_recipe(tmp_path))
    ws = recipe.workspace_at()
    done = curate_recipe(recipe, ws, show_progress=False)[0]
    # killed between the ingest and the rename: the warehouse knows it, the folder is still pending
    ingested = ws.pending_curation_dir(done.curation_id)
    done.out_dir.rename(ingested)
    (ingested / OWNER_FILE).write_text(
        json.dumps({"pid": _dead_pid(), "host": __import__("socket").gethostname()})
    )
    # killed before the ingest: the warehouse never heard of it
    never = ws.pending_curation_dir("tiny-never-ingested")
    never.mkdir()
    (never / OWNER_FILE).write_text(
        json.dumps({"pid": _dead_pid(), "host": __import__("socket").gethostname()})
    )
    # a curation being written right now by a live process is left alone
    live = ws.pending_curation_dir("tiny-in-progress")
    claim(live)
    notes = dict(finish_interrupted(ws))
    assert set(notes) == {done.curation_id, "tiny-never-ingested"}
    assert (done.out_dir / "train.parquet").is_file() and not (done.out_dir / OWNER_FILE).exists()
    assert not never.exists() and live.exists()


def test_killed_curations_never_leave_a_half_written_folder(tmp_path) -> None:
    """SIGKILL at several moments of a real `tunelab curate`: every curations/<id> folder that exists is
    complete and in the warehouse, and the next run cleans up whatever was pending."""
    import os
    import signal
    import subprocess
    import sys
    import time

    import polars as pl

    from tunelab.warehouse import store
    from tunelab.workspace import Workspace

    rows = [
        {"instruction": f"질문 {i} " + "가나다 " * 20, "output": f"답 {i} " + "라마바 " * 30}
        for i in range(30_000)
    ]
    recipe = _write_recipe(tmp_path, rows)
    ws = Workspace(tmp_path / "ws")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "tunelab.cli", "curate", str(recipe)]
    started = time.monotonic()
    subprocess.run(command, capture_output=True, env=env, check=True, timeout=300)
    full = time.monotonic() - started
    for fraction in (0.55, 0.7, 0.8, 0.9, 0.97):
        proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
        time.sleep(full * fraction)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        known = {row["curation_id"] for row in store.curation_folders(ws.warehouse)}
        for folder in ws.curations_dir.iterdir():
            if folder.name.startswith("."):
                continue  # pending: not a curation yet
            assert folder.name in known, f"{folder.name}: a folder the warehouse does not know"
            assert pl.read_parquet(folder / "train.parquet").height > 0, f"{folder.name}: incomplete"
    subprocess.run(command, capture_output=True, env=env, check=True, timeout=300)
    assert not list(ws.curations_dir.glob(".pending-*"))
    assert {f.name for f in ws.curations_dir.iterdir()} == {
        row["curation_id"] for row in store.curation_folders(ws.warehouse)
    }


def test_an_unwritable_workspace_is_one_line_before_any_work(tmp_path) -> None:
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("x", encoding="utf-8")
    recipe = _write_recipe(tmp_path)
    result = _cli("curate", str(recipe), "-w", str(blocker / "ws"))
    assert isinstance(result.exception, UserError)
    assert "cannot write to the workspace" in str(result.exception) and "-w/--workspace" in str(
        result.exception
    )


def test_doctor_reports_and_repairs_a_run_whose_process_is_gone(tmp_path) -> None:
    import json
    import socket

    from tunelab.warehouse import store
    from tunelab.workspace import OWNER_FILE, Workspace

    ws = Workspace(tmp_path / "ws")
    run_dir = ws.run_dir("sft-gone")
    run_dir.mkdir(parents=True)
    (run_dir / OWNER_FILE).write_text(json.dumps({"pid": _dead_pid(), "host": socket.gethostname()}))
    store.start_run(ws.warehouse, {"run_id": "sft-gone", "kind": "sft", "output_dir": str(run_dir)})
    (ws.curations_dir / "tiny-orphan").mkdir(parents=True)
    result = _cli("doctor", "-w", str(ws.root), "--format", "json")
    assert result.exit_code == 1
    found = {f["problem"]: f for f in json.loads(result.output)["findings"]}
    assert set(found) == {"stuck_run", "orphan_curation"} and found["stuck_run"]["subject"] == "sft-gone"
    result = _cli("doctor", "-w", str(ws.root), "--repair")
    assert result.exit_code == 0, result.output
    run = store.get_run(ws.warehouse, "sft-gone")
    assert run["status"] == "failed" and "process is gone" in run["error"]
    assert not (ws.curations_dir / "tiny-orphan").exists()
    assert _cli("doctor", "-w", str(ws.root)).exit_code == 0


# ---------------------------------------------------------------- what the warehouse says is what was written


@pytest.mark.parametrize(
    "normalize",
    ["stages: [schema, normalize, exact, split]\n  normalize: {unicode: NFKC, collapse_whitespace: false}",
     "stages: [schema, exact, split]"],
)  # fmt: skip
def test_warehouse_samples_equal_the_curated_output(tmp_path, normalize: str) -> None:
    import polars as pl

    from tunelab.curate.pipeline import curate_recipe
    from tunelab.recipe import load_recipe
    from tunelab.warehouse import store

    recipe = load_recipe(_write_recipe(tmp_path, curate=normalize))
    ws = recipe.workspace_at()
    result = curate_recipe(recipe, ws, show_progress=False)[0]
    written = pl.concat(
        [pl.read_ndjson(result.out_dir / "train.jsonl"), pl.read_ndjson(result.out_dir / "val.jsonl")]
    ).select("sample_id", "prompt", "response", "content_hash")
    stored = store.query(
        ws.warehouse,
        "SELECT sample_id, prompt, response, content_hash FROM samples WHERE curation_id = ?",
        [result.curation_id],
    )
    joined = written.join(stored, on="sample_id", suffix="_wh")
    assert joined.height == written.height == result.kept
    for column in ("prompt", "response", "content_hash"):
        assert (joined[column] == joined[f"{column}_wh"]).all(), column
    if "NFKC" in normalize:
        assert "ＡＢＣ" not in "".join(written["response"]) and "  " in "".join(written["prompt"])
    else:
        assert "ＡＢＣ" in "".join(written["response"])


def test_data_version_changes_when_kept_content_changes_under_the_same_ids(tmp_path) -> None:
    from tunelab.curate.pipeline import curate_recipe
    from tunelab.recipe import load_recipe

    first = curate_recipe(load_recipe(_write_recipe(tmp_path)), tmp_path / "ws", show_progress=False)[0]
    edited = [{**row, "output": row["output"] + " (고침)"} for row in ROWS]
    second = curate_recipe(
        load_recipe(_write_recipe(tmp_path, edited)), tmp_path / "ws", show_progress=False
    )[0]
    assert first.kept == second.kept and first.data_version != second.data_version
    again = curate_recipe(load_recipe(_write_recipe(tmp_path, edited)), tmp_path / "ws", show_progress=False)[
        0
    ]
    assert again.data_version == second.data_version


def test_conversations_reach_the_warehouse_turn_by_turn(tmp_path) -> None:
    import json

    import polars as pl

    from tunelab.curate.pipeline import curate_recipe
    from tunelab.recipe import load_recipe
    from tunelab.warehouse import store

    conversations = [
        {"messages": [{"role": "user", "content": f"서울은 어디야? {i}"}, {"role": "assistant", "content": "한국의 수도입니다."},
                      {"role": "user", "content": "그럼 부산은?"}, {"role": "assistant", "content": f"제2의 도시입니다. {i}"}]}
        for i in range(6)
    ]  # fmt: skip
    (tmp_path / "chat.jsonl").write_text(
        "".join(json.dumps(c, ensure_ascii=False) + "\n" for c in conversations), encoding="utf-8"
    )
    (tmp_path / "recipe.yaml").write_text(
        "dataset: {path: chat.jsonl, name: chat, kind: chat}\ncurate: {stages: [schema, normalize, exact, split]}\n"
        "workspace: {dir: ws}\n",
        encoding="utf-8",
    )
    recipe = load_recipe(tmp_path / "recipe.yaml")
    result = curate_recipe(recipe, recipe.workspace_at(), show_progress=False)[0]
    written = pl.read_parquet(result.out_dir / "train.parquet").select("sample_id", "messages")
    stored = store.query(
        recipe.workspace_at().warehouse,
        "SELECT sample_id, messages FROM samples WHERE curation_id = ?",
        [result.curation_id],
    )
    joined = written.join(stored, on="sample_id", suffix="_wh")
    assert joined.height == written.height > 0
    assert joined["messages"].to_list() == joined["messages_wh"].to_list()
    assert len(joined["messages_wh"][0]) == 4  # every turn, not the last exchange


@pytest.mark.parametrize(("dpo_curate", "exit_code"), [("{max_quarantine_ratio: 0.5}", 0), ("inherit", 3)])
def test_the_dpo_dataset_is_guarded_by_its_own_curate_block(
    tmp_path, dpo_curate: str, exit_code: int
) -> None:
    import json

    sft = [{"instruction": f"질문 {i}", "output": f"충분히 긴 답변입니다 {i}"} for i in range(10)]
    (tmp_path / "sft.jsonl").write_text(
        "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in sft), "utf-8"
    )
    pairs = [json.dumps({"prompt": f"질문 {i}", "chosen": f"좋은 답 {i}", "rejected": f"나쁜 답 {i}"},
                        ensure_ascii=False) for i in range(8)]  # fmt: skip
    (tmp_path / "dpo.jsonl").write_text("\n".join(pairs + ["{not json", "{nor this"]) + "\n", "utf-8")
    (tmp_path / "r.yaml").write_text(
        "dataset: {path: sft.jsonl, name: s}\ncurate: {stages: [schema, exact, split]}\n"
        "train: {base_model: tunelab-tiny, dpo: {dataset: {path: dpo.jsonl, name: d, kind: dpo}, "
        f"curate: {dpo_curate}}}}}\nworkspace: {{dir: ws}}\n",
        encoding="utf-8",
    )
    result = _cli("curate", str(tmp_path / "r.yaml"))
    assert result.exit_code == exit_code, result.output


# ---------------------------------------------------------------- dataset text outside the dashboard

HOSTILE = "![x](http://127.0.0.1:9/leak.png) <img src=http://127.0.0.1:9/i.png> [bold]굵게[/bold] [link=http://127.0.0.1:9]l[/link]"


def test_report_md_shows_dataset_text_as_text(tmp_path) -> None:
    import html

    from tunelab.curate.pipeline import curate_recipe
    from tunelab.recipe import load_recipe

    rows = [{"instruction": f"질문 {HOSTILE}", "output": f"답변 {HOSTILE} 끝"}] * 3
    recipe = load_recipe(_write_recipe(tmp_path, rows, curate="stages: [schema, exact, split]"))
    result = curate_recipe(recipe, recipe.workspace_at(), show_progress=False)[0]
    markdown = (result.out_dir / "report.md").read_text(encoding="utf-8")
    assert "127" in markdown and "![" not in markdown and "<img" not in markdown and "](" not in markdown
    assert "![x](http://127.0.0.1:9/leak.png)" in html.unescape(markdown)  # the text itself is all there


def test_terminal_tables_show_dataset_text_as_text() -> None:
    import io
    from contextlib import redirect_stdout

    import polars as pl

    from tunelab.evaluate.compare import print_samples
    from tunelab.warehouse.usersql import print_table

    out = io.StringIO()
    print_table(pl.DataFrame({"t": [HOSTILE]}), out=out)
    assert "[bold]굵게[/bold]" in out.getvalue() and "[link=" in out.getvalue()
    captured = io.StringIO()
    with redirect_stdout(captured):
        print_samples(pl.DataFrame({"model": ["m"], "sample_id": ["s"], "prompt": ["p"], "reference": ["r"],
                                    "prediction": ["[bold]굵게[/bold]"]}))  # fmt: skip
    assert "[bold]굵게[/bold]" in captured.getvalue()
