"""Find and repair what interrupted runs leave behind in a workspace."""

from __future__ import annotations

import shutil
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from tunelab.curate.outputs import finish_interrupted
from tunelab.warehouse import store
from tunelab.workspace import PENDING_PREFIX, Workspace, owner_alive, release

INTERRUPTED_RUN = "interrupted: its process is gone (found by tunelab doctor)"


@dataclass
class Finding:
    problem: str  # a stable code: pending_curation, orphan_curation, missing_curation_files, stuck_run, ...
    subject: str  # the curation or run id, or the folder
    detail: str
    repaired: bool = False

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def examine(workspace: Workspace, repair: bool = False) -> list[Finding]:
    """Every problem found in `workspace`; with `repair`, those that can be repaired are, and say so."""
    findings: list[Finding] = []
    findings += _pending_curations(workspace, repair)
    if workspace.has_warehouse():
        findings += _curation_folders(workspace, repair)
        findings += _runs(workspace, repair)
    return findings


def _pending_curations(workspace: Workspace, repair: bool) -> list[Finding]:
    pending = (
        sorted(workspace.curations_dir.glob(f"{PENDING_PREFIX}*")) if workspace.curations_dir.is_dir() else []
    )
    abandoned = [p for p in pending if not owner_alive(p)]
    findings = [
        Finding("curation_in_progress", p.name.removeprefix(PENDING_PREFIX), "its process is still running")
        for p in pending
        if p not in abandoned
    ]
    if not abandoned:
        return findings
    if repair:
        notes = finish_interrupted(workspace)
        return findings + [Finding("pending_curation", cid, note, True) for cid, note in notes]
    return findings + [
        Finding("pending_curation", p.name.removeprefix(PENDING_PREFIX), "written by a process that is gone")
        for p in abandoned
    ]


def _curation_folders(workspace: Workspace, repair: bool) -> list[Finding]:
    findings: list[Finding] = []
    known = {row["curation_id"]: row["out_dir"] for row in store.curation_folders(workspace.warehouse)}
    for curation_id in known:
        if not workspace.curation_split(curation_id, "train").is_file():
            findings.append(
                Finding(
                    "missing_curation_files",
                    curation_id,
                    f"{workspace.curation_dir(curation_id)} lacks train.parquet; run `tunelab curate` again",
                )
            )
    if workspace.curations_dir.is_dir():
        for folder in sorted(workspace.curations_dir.iterdir()):
            if folder.name.startswith(".") or not folder.is_dir() or folder.name in known:
                continue
            finding = Finding("orphan_curation", folder.name, "a folder the warehouse does not know")
            if repair:
                shutil.rmtree(folder, ignore_errors=True)
                finding.repaired, finding.detail = True, finding.detail + "; removed"
            findings.append(finding)
    return findings


def _runs(workspace: Workspace, repair: bool) -> list[Finding]:
    findings: list[Finding] = []
    for run in store.runs_overview(workspace.warehouse):
        run_dir = Path(run["output_dir"]) if run.get("output_dir") else workspace.run_dir(run["run_id"])
        if run["status"] == "running":
            alive = owner_alive(run_dir)
            if alive:
                continue
            finding = Finding(
                "stuck_run",
                run["run_id"],
                "status running, but its process is gone"
                if alive is False
                else "status running, and no process claims it (started by an older tunelab?)",
            )
            if repair and alive is False:
                store.finish_run(workspace.warehouse, run["run_id"], "failed", error=INTERRUPTED_RUN)
                release(run_dir)
                finding.repaired, finding.detail = (
                    True,
                    finding.detail + "; marked failed (resume it with --resume)",
                )
            findings.append(finding)
        elif (
            run["status"] == "finished" and run.get("adapter_path") and not Path(run["adapter_path"]).is_dir()
        ):
            findings.append(Finding("missing_adapter", run["run_id"], f"{run['adapter_path']} is gone"))
    return findings
