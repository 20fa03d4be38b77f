"""The real thing: `streamlit run` on a free port, each page loaded in headless Debian Chromium.

Asserts known (Korean) warehouse text in the rendered DOM and saves one screenshot per page to
tests/artifacts/dashboard/ (git-ignored) so a person can check that Hangul renders as glyphs, not boxes.
"""

from __future__ import annotations

import difflib
import html
import json
import os
import re
import shutil
import socket
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from test_dashboard_queries import KOREAN_PROMPT, build_warehouse

from tunelab.dashboards import console
from tunelab.dashboards.commands import WAREHOUSE_ENV, streamlit_command

pytestmark = pytest.mark.slow

CHROMIUM = os.environ.get("TUNELAB_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
ARTIFACTS = Path(os.environ.get("TUNELAB_TEST_ARTIFACTS", Path(__file__).parent / "artifacts")) / "dashboard"
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--hide-scrollbars",
    "--virtual-time-budget=15000",
]
# url path -> texts that only a fully rendered page shows
PAGES = {
    "": ("Row funnel", KOREAN_PROMPT, "exact_dup"),
    "?tab=Duplicates&cluster=demo-persona:3": ("좋네요<mark>!</mark>", "산책하러 <mark>가실래</mark>요?"),
    "?tab=Quarantine": ("missing field: response", "빈 응답"),
    "runs": ("dpo-0001", "sft-0001", "Comparison"),
    "predictions": (KOREAN_PROMPT, "서울의 인구는 약 천만 명입니다.", "[dpo]"),
    "sql": ("Example queries", console.example_queries()[0][0]),
}
ATTEMPTS = 8

if not Path(CHROMIUM).is_file():
    pytest.skip(
        f"chromium not installed at {CHROMIUM} (apt-get install chromium fonts-nanum); browser test skipped",
        allow_module_level=True,
    )


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as response:
            return response.read().strip() == b"ok"
    except OSError:
        return False


@contextmanager
def serve(db: Path, log_path: Path) -> Iterator[str]:
    """`streamlit run` exactly as `tunelab dashboard` starts it, on a free port; yields the base URL."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = {**os.environ, WAREHOUSE_ENV: str(db), "OMP_NUM_THREADS": "1"}
    with log_path.open("wb") as log:
        process = subprocess.Popen(streamlit_command(db, port), stdout=log, stderr=subprocess.STDOUT, env=env)
        try:
            deadline = time.monotonic() + 90
            while not healthy(url):
                if process.poll() is not None or time.monotonic() > deadline:
                    log.flush()
                    pytest.fail(f"streamlit did not come up on {url}:\n{log_path.read_text()[-3000:]}")
                time.sleep(0.5)
            yield url
        finally:
            process.terminate()
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    tmp = tmp_path_factory.mktemp("dashboard")
    with serve(build_warehouse(tmp / "tunelab.duckdb"), tmp / "streamlit.log") as url:
        yield url


def chromium(args: list[str], profile: Path) -> str:
    """One headless Chromium run with a fresh profile; returns stdout (the DOM for --dump-dom)."""
    shutil.rmtree(profile, ignore_errors=True)
    completed = subprocess.run(
        [CHROMIUM, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", *args],
        capture_output=True,
        timeout=120,
        check=False,
    )
    return completed.stdout.decode("utf-8", errors="replace")


def check_pages(server: str, pages: dict[str, tuple[str, ...]], tmp_path: Path, prefix: str = "") -> None:
    """Load each page until the DOM holds all its expected texts; save its DOM and a screenshot."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    (ARTIFACTS.parent / ".gitignore").write_text("*\n")
    # a cold server's first loads show only the title within the time budget: warm every page once
    for path in pages:
        chromium(["--dump-dom", f"{server}/{path}"], tmp_path / "warmup")

    missing: dict[str, tuple[str, ...]] = {}
    for path, expected in pages.items():
        name = prefix + re.sub(
            r"[^a-z0-9]+", "-", (f"audit{path}" if path.startswith("?") else path or "audit").lower()
        )
        dom = ""
        for _ in range(ATTEMPTS):
            dom = chromium(["--dump-dom", f"{server}/{path}"], tmp_path / f"profile-{name}")
            if all(text in dom for text in expected):
                break
        (ARTIFACTS / f"{name}.html").write_text(dom, encoding="utf-8")
        absent = tuple(text for text in expected if text not in dom)
        if absent:
            missing[name] = absent
            continue
        assert "Traceback" not in dom and "stException" not in dom, f"{name}: the page shows an exception"
        # the DOM was complete on this warm server; the screenshot is for a person to look at
        shot = ARTIFACTS / f"{name}.png"
        best = 0
        for attempt in range(3):
            candidate = tmp_path / f"{name}-{attempt}.png"
            chromium(
                ["--window-size=1400,1800", f"--screenshot={candidate}", f"{server}/{path}"],
                tmp_path / "shot",
            )
            if candidate.is_file() and candidate.stat().st_size > best:
                best = candidate.stat().st_size
                shutil.copyfile(candidate, shot)
        assert best > 20_000, f"{name}: screenshot looks empty ({best} bytes)"
    assert not missing, f"texts never rendered after {ATTEMPTS} loads: {missing}"


def test_every_page_renders_its_data_in_chromium(server: str, tmp_path: Path) -> None:
    check_pages(server, PAGES, tmp_path)


def test_demo_warehouse_renders_korean_in_chromium(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, tmp_path: Path
) -> None:
    """The pages over what `tunelab demo` wrote: a planted near-duplicate and the first eval prompt."""
    existing = os.environ.get("TUNELAB_DEMO_WORKSPACE")  # reuse an earlier demo's workspace
    workspace = Path(existing) if existing else request.getfixturevalue("demo_workspace")
    db = tmp_path_factory.mktemp("demo-browser") / "tunelab.duckdb"
    shutil.copyfile(workspace / "tunelab.duckdb", db)

    demo = Path(__file__).resolve().parents[1] / "tunelab" / "demo"
    planted = json.loads((demo / "planted.json").read_text(encoding="utf-8"))
    pair = next(d for d in planted["sft"]["defects"] if d["reason"] == "near_dup_minhash")
    lines = (demo / "sft.jsonl").read_text(encoding="utf-8").splitlines()
    ref_row = int(pair["ref_sample_id"].rsplit(":", 1)[1])
    member, representative = (json.loads(lines[row])["output"] for row in (pair["line"] - 1, ref_row))
    # the longest stretch the two texts share is shown unmarked in both boxes
    match = difflib.SequenceMatcher(None, representative, member, autojunk=False).find_longest_match()
    shared = html.escape(representative[match.a : match.a + match.size], quote=False)
    assert len(shared) >= 8 and re.search("[가-힣]", shared)
    first_prompt = json.loads((demo / "eval.jsonl").read_text(encoding="utf-8").splitlines()[0])[
        "instruction"
    ]
    pages = {
        f"?tab=Duplicates&cluster={pair['ref_sample_id']}": (pair["sample_id"], shared, "<mark>"),
        "predictions": (first_prompt, "Regressions only"),
        "runs": ("sft-", "dpo-", "Comparison"),
    }
    with serve(db, tmp_path / "streamlit.log") as url:
        check_pages(url, pages, tmp_path, prefix="demo-")
