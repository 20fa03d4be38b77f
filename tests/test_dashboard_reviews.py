"""Reviews that count: blind A/B ratings round-trip through the Predictions page into `pair_reviews`,
agreement (Krippendorff's alpha, Cohen's kappa) and win rates (Wilson intervals) on hand-made sets with
known values, the comparison chosen from the URL, and one real Chromium run of the blind flow."""

from __future__ import annotations

import asyncio
import html
import json
import os
import re
import subprocess
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from streamlit.testing.v1 import AppTest
from test_dashboard_queries import EVAL, build_warehouse

from tunelab.dashboards import agreement, queries
from tunelab.errors import UserError
from tunelab.warehouse import store
from tunelab.warehouse.connection import write_connection

PAGES = Path(__file__).resolve().parents[1] / "tunelab" / "dashboards" / "views"
BLIND_EVAL = "eval-blind-1"
BLIND = "Blind A/B review"
# neutral answers (no model name in them), so the page itself is all that could reveal a model
ANSWERS = {
    "base": ["", "<|im_end|>", "부산은 항구 도시예요.", "잘 모르겠어요."],
    "sft": ["서울은 <b>수도</b>예요. ![x](http://127.0.0.1:9/x.png)", "김치찌개는 김치를 볶아요.", "부산에는 바다가 있어요.", "산책을 추천해요."],
    "dpo": ["수도는 서울입니다, 반가워요!", "먼저 김치와 고기를 볶으세요.", "부산은 바다와 시장이 유명해요.", "공원 산책 어때요?"],
}  # fmt: skip
PROMPTS = ["한국의 수도는?", "김치찌개 끓이는 법?", "부산은 어떤 곳?", "주말에 뭐 할까?"]
SIDS = [f"blind-set:{i}" for i in range(len(PROMPTS))]
# what both reviewers prefer on each prompt, dpo vs sft: dpo three times, a tie once
PREFERS = ["dpo", "dpo", "dpo", "tie"]


def add_blind_eval(db: Path) -> None:
    preds, scores, metrics = [], [], []
    for model, answers in ANSWERS.items():
        for i, (sid, answer) in enumerate(zip(SIDS, answers, strict=True)):
            preds.append({"model": model, "sample_id": sid, "prompt": PROMPTS[i], "reference": "참고 답변",
                          "prediction": answer, "label": None, "latency_s": 0.1})  # fmt: skip
            value = {"base": 0.0, "sft": 0.4, "dpo": 0.5}[model] + 0.1 * i
            scores.append({"model": model, "sample_id": sid, "metric": "rougeL", "value": value})
        metrics.append(
            {"model": model, "metric": "rougeL", "value": 0.5, "ci_low": 0.4, "ci_high": 0.6, "n": 4}
        )
        metrics.append(
            {"model": model, "metric": "chrf_corpus", "value": 30.0, "n": 4}
        )  # no per-sample, no delta
    store.ingest_eval(
        db,
        {"eval_id": BLIND_EVAL, "eval_set": "blind-set", "created_at": "2026-11-23T00:00:00", "params": "{}"},
        pl.DataFrame(preds), pl.DataFrame(scores), pl.DataFrame(metrics),
    )  # fmt: skip


@pytest.fixture(scope="module")
def db(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    path = build_warehouse(tmp_path_factory.mktemp("wh") / "tunelab.duckdb")
    add_blind_eval(path)
    previous = os.environ.get("TUNELAB_WAREHOUSE")
    os.environ["TUNELAB_WAREHOUSE"] = str(path)
    yield path
    if previous is None:
        os.environ.pop("TUNELAB_WAREHOUSE", None)
    else:
        os.environ["TUNELAB_WAREHOUSE"] = previous


def page(name: str, **params: str) -> AppTest:
    at = AppTest.from_file(str(PAGES / f"{name}.py"), default_timeout=60)
    for key, value in params.items():
        at.query_params[key] = value
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def shown(at: AppTest) -> str:
    """Everything written on the page (markdown, captions, alerts), character references decoded."""
    parts = [m.value for m in at.markdown] + [c.value for c in at.caption] + [s.value for s in at.success]
    return html.unescape("\n".join(parts))


def answer_boxes(at: AppTest) -> dict[str, str]:
    boxes = {}
    for m in at.markdown:
        text = html.unescape(m.value)
        found = re.search(r'<div class="tl-score">Answer ([AB])</div>', text)
        if found:
            boxes[found.group(1)] = text
    return boxes


def test_blind_review_round_trip_two_reviewers(db: Path) -> None:
    at = page("predictions", eval=BLIND_EVAL, view=BLIND, pair_1="dpo", pair_2="sft")
    assert at.radio(key="view").value == BLIND
    for reviewer in ("민지", "준호"):
        at.text_input(key="reviewer").input(reviewer).run()
        for i, sid in enumerate(SIDS):
            left, right = agreement.blind_sides(reviewer, BLIND_EVAL, sid, "dpo", "sft")
            boxes = answer_boxes(at)
            # the sides are the seeded ones, and nothing but the answers' own text is shown
            assert ANSWERS[left][i] in boxes["A"] and ANSWERS[right][i] in boxes["B"], (reviewer, sid)
            assert not re.search(r"\b(dpo|sft)\b", boxes["A"] + boxes["B"])
            # only the previous prompt's names are revealed (after its rating), never this one's
            assert f"Saved for {sid}" not in shown(at)
            choice = "tie" if PREFERS[i] == "tie" else ("A" if left == PREFERS[i] else "B")
            if i == 0:
                at.text_input(key=f"blind_comment|{BLIND_EVAL}|{sid}|{left}|{right}").input(
                    "더 친절해요"
                ).run()
            at.button(key=f"blind_{choice}").click().run()
            assert not at.exception, [e.value for e in at.exception]
            # rated: now the names are revealed
            assert f"Saved for {sid}: A was {left}, B was {right}" in shown(at)
        assert any(f"{reviewer} rated 4 of 4" in html.unescape(p.text or "") for p in at.get("progress"))

    rows = store.query(
        db,
        "SELECT sample_id, model_a, model_b, left_model, winner, reviewer, comment FROM pair_reviews "
        "ORDER BY reviewer, sample_id",
    ).to_dicts()
    assert len(rows) == 8
    for row in rows:
        assert (row["model_a"], row["model_b"]) == ("dpo", "sft")  # canonical (sorted) order
        assert (
            row["left_model"]
            == agreement.blind_sides(row["reviewer"], BLIND_EVAL, row["sample_id"], "sft", "dpo")[0]
        )
        assert row["winner"] == PREFERS[SIDS.index(row["sample_id"])]
    assert {r["reviewer"] for r in rows} == {"민지", "준호"}
    assert [r["comment"] for r in rows if r["sample_id"] == SIDS[0]] == ["더 친절해요", "더 친절해요"]

    rates = queries.pair_winrates(db, BLIND_EVAL).to_dicts()
    assert len(rates) == 1
    rate = rates[0]
    assert (rate["source"], rate["n"], rate["prompts"], rate["raters"]) == ("reviewer", 8, 4, 2)
    assert (rate["wins_a"], rate["ties"], rate["wins_b"]) == (6, 2, 0)
    assert rate["win_rate_a"] == pytest.approx((6 + 0.5 * 2) / 8)
    assert rate["ci_low"] < rate["win_rate_a"] < rate["ci_high"] <= 1.0

    votes = queries.pair_votes(db, BLIND_EVAL)
    alpha = agreement.krippendorff_alpha(votes)
    assert alpha["alpha"] == pytest.approx(1.0) and (alpha["n"], alpha["raters"]) == (4, 2)
    # the page shows the same: win rate, perfect agreement
    at.run()
    assert "Krippendorff's alpha among reviewers (nominal): 1.00" in shown(at)
    table = next(d.value for d in at.dataframe if "win_rate_a" in d.value.columns)
    assert table["win_rate_a"].tolist() == [pytest.approx(0.875)] and table["n"].tolist() == [8]


def test_pair_review_refuses_bad_input(db: Path) -> None:
    with pytest.raises(UserError, match="winner must be"):
        store.add_pair_review(db, BLIND_EVAL, SIDS[0], "dpo", "sft", "base")
    with pytest.raises(UserError, match="must differ"):
        store.add_pair_review(db, BLIND_EVAL, SIDS[0], "dpo", "dpo", "dpo")
    with pytest.raises(UserError, match="no prediction of model 'gpt'"):
        store.add_pair_review(db, BLIND_EVAL, SIDS[0], "gpt", "sft", "tie")
    with pytest.raises(UserError, match="at most"):
        store.add_pair_review(db, BLIND_EVAL, SIDS[0], "dpo", "sft", "tie", "x" * 5000)


def votes_frame(ratings: dict[str, list[str]], pair: tuple[str, str] = ("dpo", "sft")) -> pl.DataFrame:
    """rater -> winner per prompt ('a', 'b', 'tie', or None for not rated) as v_pair_votes rows."""
    rows = []
    for rater, winners in ratings.items():
        for i, w in enumerate(winners):
            if w is not None:
                winner = {"a": pair[0], "b": pair[1]}.get(w, "tie")
                rows.append({"sample_id": f"s:{i}", "model_a": pair[0], "model_b": pair[1], "rater": rater,
                             "winner": winner})  # fmt: skip
    return pl.DataFrame(rows)


def test_agreement_on_known_sets() -> None:
    perfect = votes_frame({"r1": ["a", "b", "tie", "a"], "r2": ["a", "b", "tie", "a"]})
    alpha = agreement.krippendorff_alpha(perfect, n_resamples=200)
    assert alpha["alpha"] == pytest.approx(1.0) and alpha["n"] == 4
    kappa = agreement.pairwise_agreement(perfect, n_resamples=200).to_dicts()[0]
    assert (kappa["kappa"], kappa["agreement"], kappa["n"]) == (pytest.approx(1.0), 1.0, 4)

    # by hand: 5 of 6 agree; marginals r1 a3 b2 t1, r2 a2 b3 t1 -> p_e = 13/36, kappa = (5/6 - 13/36) / (23/36)
    # coincidences: aa 4, bb 4, tt 2, ab = ba = 1 (n = 12) -> alpha = 1 - 11 * 2 / (2 * (5*5 + 5*2 + 5*2))
    r1, r2 = ["a", "a", "b", "b", "tie", "a"], ["a", "b", "b", "b", "tie", "a"]
    some = votes_frame({"r1": r1, "r2": r2})
    kappa = agreement.pairwise_agreement(some, n_resamples=300).to_dicts()[0]
    assert kappa["kappa"] == pytest.approx(17 / 23) and kappa["agreement"] == pytest.approx(5 / 6)
    assert kappa["kappa_low"] <= kappa["kappa"] <= kappa["kappa_high"]
    # the vectorised resampling computes sklearn's kappa: the whole set as one "resample" gives 17/23
    codes = {"a": 0, "tie": 1, "b": 2}
    first, second = (np.array([codes[w] for w in r]) for r in (r1, r2))
    assert agreement._kappa_resampled(first, second, np.arange(6)[None, :])[0] == pytest.approx(17 / 23)
    alpha = agreement.krippendorff_alpha(some, n_resamples=300)
    assert alpha["alpha"] == pytest.approx(1 - 22 / 90)
    assert alpha["ci_low"] <= alpha["alpha"] <= alpha["ci_high"]
    again = agreement.krippendorff_alpha(some, n_resamples=300)
    assert (again["ci_low"], again["ci_high"]) == (alpha["ci_low"], alpha["ci_high"])  # seeded

    # a third rater on only some prompts: alpha uses every prompt two or more rated
    partial = votes_frame({"r1": r1, "r2": r2, "r3": [None, None, "b", None, None, None]})
    assert agreement.krippendorff_alpha(partial, n_resamples=50)["raters"] == 3
    # one category only: chance agreement is total, so alpha is undefined, not 1
    assert agreement.krippendorff_alpha(votes_frame({"r1": ["a", "a"], "r2": ["a", "a"]}))["alpha"] is None
    # nobody overlaps: no agreement to report
    assert agreement.pairwise_agreement(votes_frame({"r1": ["a", None], "r2": [None, "b"]})).height == 0


def test_sides_are_seeded_per_reviewer_and_prompt() -> None:
    sides = [agreement.blind_sides("민지", "e", f"s:{i}", "sft", "dpo") for i in range(40)]
    assert sides == [
        agreement.blind_sides("민지", "e", f"s:{i}", "dpo", "sft") for i in range(40)
    ]  # order-free
    assert {left for left, _ in sides} == {"dpo", "sft"}  # both sides occur
    other = [agreement.blind_sides("준호", "e", f"s:{i}", "sft", "dpo") for i in range(40)]
    assert other != sides  # another reviewer gets another shuffle


def test_judge_verdicts_join_the_votes_and_the_agreement(tmp_path: Path) -> None:
    db = build_warehouse(tmp_path / "tunelab.duckdb")
    sids = [f"demo-persona-eval:{i}" for i in range(4)]
    for sid, winner in zip(sids, ["dpo", "dpo", "sft", "tie"], strict=True):
        left, right = agreement.blind_sides("민지", EVAL, sid, "dpo", "sft")
        store.add_pair_review(db, EVAL, sid, left, right, winner, reviewer="민지")
    verdicts = [("dpo", "sft", "win"), ("sft", "dpo", "loss"), ("dpo", "sft", "win"), ("dpo", "sft", "tie")]
    with write_connection(db) as con:  # rows shaped as the judge writes them (evaluate/judge.py)
        for sid, (model, opponent, verdict) in zip(sids, verdicts, strict=True):
            con.execute(
                "INSERT INTO judgments (eval_id, sample_id, model, opponent, mode, verdict, judge, created_at) "
                "VALUES (?, ?, ?, ?, 'pairwise', ?, 'qwen-judge', now())",
                [EVAL, sid, model, opponent, verdict],
            )
    votes = queries.pair_votes(db, EVAL)
    judge = votes.filter(pl.col("source") == "judge")
    assert judge["winner"].to_list() == ["dpo", "dpo", "dpo", "tie"] and set(judge["rater"]) == {
        "judge:qwen-judge"
    }
    pairs = agreement.pairwise_agreement(votes, n_resamples=100).to_dicts()
    assert [(p["kind"], p["n"], p["agreement"]) for p in pairs] == [("reviewer–judge", 4, 0.75)]
    rates = {r["source"]: r for r in queries.pair_winrates(db, EVAL).to_dicts()}
    assert rates["judge"]["win_rate_a"] == pytest.approx(3.5 / 4) and rates["reviewer"]["win_rate_a"] == 0.625


def test_comparison_and_baseline_from_the_url(db: Path) -> None:
    at = page("runs", eval=EVAL, baseline="sft")
    assert at.selectbox(key="eval").value == EVAL and at.selectbox(key="baseline").value == "sft"
    lead = next(d.value for d in at.dataframe if "Δ vs sft" in d.value.columns)
    rows = {(r["metric"], r["model"]): r for r in lead.to_dict("records")}
    assert (
        rows[("rougeL", "dpo")]["Δ vs sft"] == f"{0.5 / 6:+.4f}"
        and rows[("rougeL", "dpo")]["source"] == "stored"
    )
    # base − sft is the stored sft − base reversed: its interval flips
    assert rows[("rougeL", "base")]["Δ 95 % interval"] == "[-0.3500, -0.0500]"
    assert rows[("rougeL", "base")]["source"] == "stored (reversed)"
    # chrf has per-sample scores but no stored pair: computed here with the paired test
    assert rows[("chrf", "dpo")]["source"] == "computed here" and rows[("chrf", "dpo")]["p"] != "—"
    assert "None" not in lead.to_string()

    other = page("runs", eval=BLIND_EVAL, baseline="dpo")
    lead = next(d.value for d in other.dataframe if "Δ vs dpo" in d.value.columns)
    chrf = lead[lead["metric"] == "chrf_corpus"]
    assert set(chrf["Δ vs dpo"]) == {"—"} and set(chrf["significant"]) == {"—"}  # missing, not "None"
    assert "None" not in lead.to_string()


def test_predictions_baseline_from_the_url_and_empty_answers(db: Path) -> None:
    at = page("predictions", eval=EVAL, baseline="sft", model="dpo", regressions="true")
    assert at.selectbox(key="baseline").value == "sft"
    assert "1 regression · dpo vs sft on rougeL" in shown(at)  # sample 2: dpo 0.3 < sft 0.4
    assert "**demo-persona-eval:2**" in shown(at)

    at = page("predictions", eval=BLIND_EVAL)
    text = shown(at)
    assert "(empty answer)" in text and "degenerate: empty answer" in text
    assert "degenerate: special tokens only" in text


# ---------------------------------------------------------------- one real browser run of the blind flow


def cdp_click_flow(
    chromium_bin: str, url: str, profile: Path, steps: list[str], timeout: float = 40
) -> list[str]:
    """Open `url` in headless Chromium and drive it over the DevTools protocol: each step is JavaScript that
    returns a string once the page is ready for it (and acts), or '' to be polled again. Returns the results."""
    import websockets

    process = subprocess.Popen(
        [chromium_bin, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-sync",
         "--disable-background-networking", "--remote-debugging-port=0", f"--user-data-dir={profile}",
         "--window-size=1400,1800", "about:blank"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        ws_url = None
        for line in process.stderr:  # "DevTools listening on ws://127.0.0.1:PORT/devtools/browser/…"
            if "DevTools listening on" in line:
                ws_url = line.split("listening on", 1)[1].strip()
                break
        assert ws_url, "chromium printed no DevTools address"
        port = ws_url.split(":")[2].split("/")[0]
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=10) as response:
            target = next(t for t in json.load(response) if t["type"] == "page")

        async def drive() -> list[str]:
            async with websockets.connect(target["webSocketDebuggerUrl"], max_size=2**24) as ws:
                counter = 0

                async def call(method: str, **params: object) -> dict:
                    nonlocal counter
                    counter += 1
                    await ws.send(json.dumps({"id": counter, "method": method, "params": params}))
                    while True:
                        message = json.loads(await ws.recv())
                        if message.get("id") == counter:
                            return message.get("result", {})

                await call("Page.navigate", url=url)
                results = []
                loop = asyncio.get_running_loop()
                deadline = loop.time() + timeout
                for step in steps:
                    while True:
                        out = await call("Runtime.evaluate", expression=step, returnByValue=True)
                        value = out.get("result", {}).get("value") or ""
                        if value:
                            results.append(value)
                            break
                        assert loop.time() < deadline, f"the page never got to: {step[:80]}"
                        await asyncio.sleep(0.3)
                return results

        return asyncio.run(drive())
    finally:
        process.terminate()
        process.wait(timeout=15)


@pytest.mark.slow
def test_blind_review_in_chromium(tmp_path: Path) -> None:
    from test_dashboard_browser import CHROMIUM, serve

    if not Path(CHROMIUM).is_file():
        pytest.skip(f"chromium not installed at {CHROMIUM} (apt-get install chromium fonts-nanum)")
    db = build_warehouse(tmp_path / "tunelab.duckdb")
    add_blind_eval(db)
    sid = SIDS[0]
    with serve(db, tmp_path / "streamlit.log") as base_url:
        url = f"{base_url}/predictions?eval={BLIND_EVAL}&view=Blind+A%2FB+review&pair_1=dpo&pair_2=sft"
        body = "document.body ? document.body.innerText : ''"
        ready = (
            f"(() => {{ const t = {body}; return t.includes('Answer A') && t.includes('Answer B') "
            "&& t.includes('rated 0 of 4') ? t : ''; })()"
        )
        click = (
            "(() => { const b = [...document.querySelectorAll('button')].find(b => b.innerText.trim() === "
            "'B is better'); if (!b) return ''; b.click(); return 'clicked'; })()"
        )
        saved = f"(() => {{ const t = {body}; return t.includes('A was') ? t : ''; }})()"
        before, _, after = cdp_click_flow(CHROMIUM, url, tmp_path / "profile", [ready, click, saved])
    reviewer = store.default_reviewer()
    left, right = agreement.blind_sides(reviewer, BLIND_EVAL, sid, "dpo", "sft")
    # before the rating: both answers, no model name on the page's review area; after: revealed
    review_area = before.split("Answer A", 1)[1]
    # both answers as the text they are (the sft one holds HTML and a Markdown image: shown, not rendered)
    assert ANSWERS[left][0] in review_area and ANSWERS[right][0] in review_area
    assert not re.search(r"\b(dpo|sft)\b", review_area.split("Results so far", 1)[0])
    assert f"A was {left}, B was {right}; you chose B ({right})" in after
    rows = store.query(db, "SELECT model_a, model_b, left_model, winner, reviewer FROM pair_reviews").rows()
    assert rows == [("dpo", "sft", left, right, reviewer)]
