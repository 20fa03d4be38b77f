"""Persona / label accuracy: does a model's answer sound like the label its prompt was written for?

A nearest-centroid classifier: one centroid per label (mean of the L2-normalised embeddings of that
label's curated train responses, re-normalised), each prediction gets the label of the most similar
centroid; accuracy = share of predictions whose predicted label equals the row's label.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from tunelab.embeddings.loader import embed_cached
from tunelab.evaluate.metrics import embedder_for


def label_centroids(vectors: np.ndarray, labels: Sequence[str]) -> tuple[list[str], np.ndarray]:
    """(label names sorted, one unit-length centroid per label) from row vectors and their labels."""
    names = sorted({label for label in labels if label is not None})
    if len(names) < 2:
        raise ValueError(f"label accuracy needs at least two labels in the train responses, got {names}")
    label_array = np.asarray(labels, dtype=object)
    centroids = np.stack([vectors[label_array == name].mean(axis=0) for name in names]).astype(np.float32)
    centroids /= np.maximum(np.linalg.norm(centroids, axis=1, keepdims=True), 1e-12)
    return names, centroids


def predict_labels(names: Sequence[str], centroids: np.ndarray, vectors: np.ndarray) -> list[str]:
    """The nearest centroid's label per row (cosine: both sides are unit length)."""
    if len(vectors) == 0:
        return []
    return [names[i] for i in np.argmax(vectors @ centroids.T, axis=1)]


def label_hits(
    train_texts: Sequence[str],
    train_labels: Sequence[str],
    predictions: Sequence[str],
    expected_labels: Sequence[str | None],
    embedding_model: str,
    cache_dir: Path | None,
    show_progress: bool = False,
) -> tuple[list[float | None], list[str]]:
    """Per prediction: 1.0 when its nearest-centroid label equals the expected label, 0.0 when not,
    None when the row has no expected label; plus the predicted labels."""
    embedder = embedder_for(embedding_model)
    names, centroids = label_centroids(
        embed_cached(embedder, list(train_texts), cache_dir, show_progress=show_progress), list(train_labels)
    )
    vectors = embed_cached(embedder, list(predictions), cache_dir, show_progress=show_progress)
    predicted = predict_labels(names, centroids, vectors)
    hits = [
        None if want is None else float(got == want)
        for got, want in zip(predicted, expected_labels, strict=True)
    ]
    return hits, predicted
