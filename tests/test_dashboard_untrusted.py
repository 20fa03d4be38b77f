"""Dataset text can't act in the dashboard: a reviewer's browser makes no request chosen by a row's author.

A warehouse whose prompts, responses, references, predictions, labels, quarantined lines and review
comments carry Markdown images, links, autolinks and raw HTML pointing at a recording HTTP server on
127.0.0.1 is rendered page by page in real headless Chromium; the server must receive zero requests, and
each page must show the hostile text as text (so an empty page can't pass).
"""

from __future__ import annotations

import http.server
import json
import threading
from collections.abc import Iterator
from pathlib import Path

import polars as pl
import pytest
from test_dashboard_browser import chromium, serve

from tunelab.warehouse import store

pytestmark = pytest.mark.slow

CURATION = "cur-hostile"
EVAL = "eval-hostile"


class Recorder(http.server.BaseHTTPRequestHandler):
    seen: list[str] = []

    def do_GET(self) -> None:  # noqa: N802 (http.server's name)
        Recorder.seen.append(self.path)
        self.send_response(200)
        self.send_header("Content-Type", "image/png")
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def recorder() -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Recorder)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()


def payloads(base: str, where: str) -> str:
    """Every way a text could make a browser fetch `base`, tagged with `where` it was planted."""
    return (
        f"첫 문단 {where}\n\n![x]({base}/{where}/md-image.png)\n\n"
        f'<img src="{base}/{where}/html-img.png"> [link]({base}/{where}/link) {base}/{where}/autolink '
        f'<div style="background:url({base}/{where}/css.png)">div</div>'
        f'<iframe src="{base}/{where}/iframe"></iframe><script>fetch("{base}/{where}/script")</script>'
        f"\n\n$x$ :red[{where}-red] <b>bold-{where}</b>"
    )


def build_hostile_warehouse(db: Path, base: str) -> None:
    label = f"![l]({base}/label.png)"
    samples = pl.DataFrame(
        [
            {"sample_id": "h:0", "source_row": 0, "source_line": 1, "label": label,
             "prompt": payloads(base, "dup"), "response": payloads(base, "response")},
            {"sample_id": "h:1", "source_row": 1, "source_line": 2, "label": label,
             "prompt": payloads(base, "dup") + " 끝", "response": payloads(base, "response")},
            {"sample_id": "h:2", "source_row": 2, "source_line": 3, "label": "ok",
             "prompt": "짧은 질문", "response": "네"},
        ]
    )  # fmt: skip
    decisions = pl.DataFrame(
        [
            {"sample_id": "h:1", "stage": "exact", "kept": False, "reason": "exact_dup",
             "ref_sample_id": "h:0", "score": 1.0, "evidence": payloads(base, "evidence")},
            {"sample_id": "h:2", "stage": "length", "kept": False, "reason": f"too_short:label={label}",
             "ref_sample_id": None, "score": 1.0, "evidence": payloads(base, "evidence2")},
            {"sample_id": "h:0", "stage": "final", "kept": True, "reason": None,
             "ref_sample_id": None, "score": None, "evidence": "split=train"},
        ]
    )  # fmt: skip
    quarantine = pl.DataFrame(
        {"dataset": ["h"], "source_file": [f"{base}/file.jsonl"], "source_line": [4], "source_row": [3],
         "error": [payloads(base, "error")], "raw": [payloads(base, "raw")]}
    )  # fmt: skip
    store.ingest_curation(
        db,
        {"curation_id": CURATION, "dataset": "h", "kind": "sft", "data_version": "dv",
         "recipe": {"curate": {"stages": ["schema", "length", "exact", "split"]}},
         "created_at": "2026-12-01T00:00:00", "read": 4, "kept": 1, "dropped": 2, "quarantined": 1,
         "report": {}},
        samples, decisions, quarantine,
    )  # fmt: skip
    preds, scores = [], []
    for model in ("base", "sft"):
        preds.append({"model": model, "run_id": None, "sample_id": "h-eval:0",
                      "prompt": payloads(base, f"evalprompt-{model}"), "reference": payloads(base, "reference"),
                      "prediction": payloads(base, f"prediction-{model}"), "label": label, "latency_s": 0.1})  # fmt: skip
        scores.append({"model": model, "sample_id": "h-eval:0", "metric": "rougeL",
                       "value": 0.1 if model == "base" else 0.3, "signature": "rougeL|tok:kiwi"})  # fmt: skip
    metrics = [{"model": m, "metric": "rougeL", "value": v, "signature": "rougeL|tok:kiwi"}
               for m, v in (("base", 0.1), ("sft", 0.3))]  # fmt: skip
    store.ingest_eval(
        db,
        {"eval_id": EVAL, "eval_set": "h-eval", "curation_id": CURATION, "created_at": "2026-12-01T00:01:00",
         "params": json.dumps({})},
        pl.DataFrame(preds), pl.DataFrame(scores), pl.DataFrame(metrics),
    )  # fmt: skip
    store.add_review(db, EVAL, "sft", "h-eval:0", 1, payloads(base, "review"))


# page -> planted tags whose text must be visible there (as text, never as markup)
PAGES = {
    "": ("evidence",),
    "?tab=Duplicates&cluster=h:0": ("dup", "response"),
    "?tab=Quarantine": ("raw",),
    "?tab=Labels": (),
    "runs": (),
    "predictions": ("evalprompt-base", "reference", "prediction-sft", "review"),
}


def test_no_request_leaves_the_page_for_dataset_text(recorder: str, tmp_path: Path) -> None:
    db = tmp_path / "tunelab.duckdb"
    build_hostile_warehouse(db, recorder)
    Recorder.seen.clear()
    with serve(db, tmp_path / "streamlit.log") as url:
        for path in PAGES:  # warm-up: a cold server's first loads show only the title
            chromium(["--dump-dom", f"{url}/{path}"], tmp_path / "warmup")
        missing = {}
        for path, tags in PAGES.items():
            expected = [f"첫 문단 {tag}" for tag in tags]
            dom = ""
            for _ in range(8):
                dom = chromium(["--dump-dom", f"{url}/{path}"], tmp_path / "profile")
                if all(text in dom for text in expected) and "Traceback" not in dom:
                    break
            absent = [text for text in expected if text not in dom]
            if absent:
                missing[path] = absent
            for tag in tags:  # the payload is on the page as inert text
                assert f"{recorder}/{tag}/md-image.png" in dom, (path, tag)
                assert f"bold-{tag}" in dom and f"<b>bold-{tag}</b>" not in dom, (path, tag)
                assert f'<img src="{recorder}/{tag}' not in dom, (path, tag)
    assert not missing, f"hostile texts never rendered: {missing}"
    assert Recorder.seen == [], f"the browser fetched URLs planted in dataset text: {Recorder.seen}"
