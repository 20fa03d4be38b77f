from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"


@pytest.fixture
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real datasets not found at {SHARED_DATA} (a fresh clone has no ../shared/data)")
    return SHARED_DATA


@pytest.fixture(scope="session")
def demo_workspace(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Run the real `tunelab demo` once per test session (through the CLI) and share its workspace.

    Tests that read a warehouse produced by the demo (queries in the README, dashboard pages) use it.
    """
    import os
    import subprocess
    import sys

    workspace = tmp_path_factory.mktemp("demo") / "ws"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}
    proc = subprocess.run(
        [sys.executable, "-m", "tunelab.cli", "demo", "--workspace", str(workspace)],
        capture_output=True,
        text=True,
        timeout=900,
        env=env,
    )
    if proc.returncode != 0:
        pytest.fail(f"tunelab demo failed ({proc.returncode}):\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}")
    (workspace / "demo-stdout.txt").write_text(proc.stdout, encoding="utf-8")
    return workspace
