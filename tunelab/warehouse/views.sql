-- Views are recreated (CREATE OR REPLACE) whenever the schema is created or migrated.

-- Why rows left each curation: one row per (curation, stage, reason) of the dropping decisions;
-- pct is relative to every row read (quarantined ones included), so the stages add up to the drop share.
CREATE OR REPLACE VIEW v_drop_reasons AS
SELECT
    d.curation_id,
    d.stage,
    d.reason,
    count(*) AS n,
    CAST(100.0 * count(*) / nullif(any_value(c."read"), 0) AS DOUBLE) AS pct
FROM decisions d
JOIN curations c USING (curation_id)
WHERE NOT d.kept
GROUP BY d.curation_id, d.stage, d.reason;

-- Every model's corpus metric next to the model named 'base' in the same eval (nulls when there is none).
CREATE OR REPLACE VIEW v_run_compare AS
SELECT
    e.eval_set,
    m.eval_id,
    m.metric,
    m.model,
    m.value,
    m.ci_low,
    m.ci_high,
    m.n,
    d.baseline,
    b.value AS base_value,
    coalesce(d.delta, m.value - b.value) AS delta_abs,
    d.ci_low AS delta_ci_low,
    d.ci_high AS delta_ci_high,
    d.p_value,
    d.significant,
    -- a % change only against a baseline of at least 10 % of the metric's range (BLEU/chrF: 0-100)
    CASE WHEN abs(b.value) >= 0.1 * (CASE WHEN m.metric LIKE 'bleu%' OR m.metric LIKE 'chrf%' THEN 100 ELSE 1 END)
         THEN 100.0 * (m.value - b.value) / abs(b.value) END AS delta_pct
FROM eval_metrics m
JOIN evals e USING (eval_id)
LEFT JOIN eval_metrics b
    ON b.eval_id = m.eval_id AND b.metric = m.metric AND b.model = 'base'
LEFT JOIN eval_deltas d
    ON d.eval_id = m.eval_id AND d.metric = m.metric AND d.model = m.model AND d.baseline = 'base';

-- One sample's path: the decision that settled it in each curation -> that curation's data_version ->
-- the runs it fed when it was kept (directly, or through a parent run: DPO on top of the SFT run) ->
-- each such run's prediction for the sample with its per-sample scores as a MAP(metric -> value).
CREATE OR REPLACE VIEW v_lineage AS
WITH RECURSIVE fed(curation_id, run_id, via_parent_run) AS (
    SELECT curation_id, run_id, NULL::VARCHAR FROM runs WHERE curation_id IS NOT NULL
    UNION
    SELECT fed.curation_id, child.run_id, child.parent_run_id
    FROM fed JOIN runs child ON child.parent_run_id = fed.run_id
),
settled AS (
    -- a dropping decision wins over the stage='final' one, which wins over annotations
    SELECT *
    FROM decisions
    QUALIFY row_number() OVER (
        PARTITION BY curation_id, sample_id
        ORDER BY kept ASC, (stage = 'final') DESC, stage
    ) = 1
)
SELECT
    s.sample_id,
    c.dataset,
    s.curation_id,
    c.data_version,
    s.stage,
    s.kept,
    s.reason,
    s.ref_sample_id,
    s.score AS decision_score,
    s.evidence,
    r.run_id,
    r.kind AS run_kind,
    r.status AS run_status,
    fed.via_parent_run,
    p.eval_id,
    p.model,
    p.prediction,
    p.reference,
    (
        SELECT map(list(sc.metric ORDER BY sc.metric), list(sc.value ORDER BY sc.metric))
        FROM scores sc
        WHERE sc.eval_id = p.eval_id AND sc.model = p.model AND sc.sample_id = p.sample_id
    ) AS scores
FROM settled s
JOIN curations c USING (curation_id)
LEFT JOIN fed ON fed.curation_id = s.curation_id AND s.kept
LEFT JOIN runs r ON r.run_id = fed.run_id
LEFT JOIN predictions p ON p.run_id = r.run_id AND p.sample_id = s.sample_id;

-- Every pairwise preference between two models' answers to one prompt, one row per rater: each reviewer's
-- latest blind rating (pair_reviews) and each judge's latest pairwise verdict (judgments), both in the
-- pair's sorted order (model_a < model_b); winner is model_a, model_b or 'tie'.
CREATE OR REPLACE VIEW v_pair_votes AS
SELECT eval_id, sample_id, model_a, model_b, 'reviewer' AS source, coalesce(reviewer, 'unknown') AS rater,
       winner, left_model, created_at
FROM (
    SELECT *
    FROM pair_reviews
    QUALIFY row_number() OVER (
        PARTITION BY eval_id, sample_id, model_a, model_b, coalesce(reviewer, 'unknown')
        ORDER BY created_at DESC, rowid DESC
    ) = 1
)
UNION ALL
SELECT eval_id, sample_id, model_a, model_b, 'judge' AS source, rater, winner, NULL AS left_model, created_at
FROM (
    SELECT eval_id, sample_id, least(model, opponent) AS model_a, greatest(model, opponent) AS model_b,
           'judge:' || coalesce(judge, '?') AS rater,
           CASE verdict WHEN 'win' THEN model WHEN 'loss' THEN opponent ELSE 'tie' END AS winner,
           created_at
    FROM judgments
    WHERE mode = 'pairwise' AND opponent IS NOT NULL AND opponent <> model
      AND verdict IN ('win', 'loss', 'tie')
    -- a judge that stored both directions (A vs B and B vs A) counts once per prompt
    QUALIFY row_number() OVER (
        PARTITION BY eval_id, sample_id, least(model, opponent), greatest(model, opponent), coalesce(judge, '?')
        ORDER BY created_at DESC NULLS LAST, model
    ) = 1
);

-- Win rate of model_a over model_b per evaluation and source (reviewers pooled, or the judge): ties count
-- half; a 95 % Wilson score interval on the win rate (conservative with ties, whose spread is smaller than
-- a win/loss coin's); n = ratings, prompts = distinct prompts rated.
CREATE OR REPLACE VIEW v_pair_winrates AS
WITH counted AS (
    SELECT eval_id, source, model_a, model_b,
           count(*) AS n,
           count(DISTINCT sample_id) AS prompts,
           count(DISTINCT rater) AS raters,
           count(*) FILTER (WHERE winner = model_a) AS wins_a,
           count(*) FILTER (WHERE winner = model_b) AS wins_b,
           count(*) FILTER (WHERE winner = 'tie') AS ties
    FROM v_pair_votes
    GROUP BY eval_id, source, model_a, model_b
), rated AS (
    SELECT *, CAST((wins_a + 0.5 * ties) / n AS DOUBLE) AS win_rate_a, 1.959963984540054 AS z FROM counted
)
SELECT eval_id, source, model_a, model_b, n, prompts, raters, wins_a, wins_b, ties, win_rate_a,
       CAST(greatest(0.0, (win_rate_a + z * z / (2 * n)
            - z * sqrt(win_rate_a * (1 - win_rate_a) / n + z * z / (4.0 * n * n))) / (1 + z * z / n)) AS DOUBLE)
           AS ci_low,
       CAST(least(1.0, (win_rate_a + z * z / (2 * n)
            + z * sqrt(win_rate_a * (1 - win_rate_a) / n + z * z / (4.0 * n * n))) / (1 + z * z / n)) AS DOUBLE)
           AS ci_high
FROM rated;

-- Precision of near-duplicate candidates per similarity band, from the Thresholds page's marks: the newest
-- mark of each pair counts once; bands are 0.1 wide for MinHash (Jaccard) and 0.05 for semantic (cosine),
-- as tunelab/curate/calibrate.py BANDS_PER_UNIT draws them; ci_low/ci_high = 95 % Wilson score interval.
CREATE OR REPLACE VIEW v_threshold_precision AS
WITH latest AS (
    SELECT curation_id, stage, similarity, is_duplicate,
           CASE WHEN stage = 'semantic' THEN 20 ELSE 10 END AS per_unit
    FROM threshold_marks
    QUALIFY row_number() OVER (
        PARTITION BY curation_id, stage, sample_id, ref_sample_id ORDER BY created_at DESC, rowid DESC
    ) = 1
),
banded AS (
    -- the 1e-9 keeps 0.7 in the band [0.7, 0.8) despite 0.7 * 10 = 6.999...; 1.0 joins the top band
    SELECT curation_id, stage, per_unit, is_duplicate,
           least(floor(similarity * per_unit + 1e-9), per_unit - 1) AS band
    FROM latest
),
counted AS (
    SELECT curation_id, stage, band, any_value(per_unit) AS per_unit, count(*) AS n,
           count(*) FILTER (WHERE is_duplicate) AS duplicates
    FROM banded GROUP BY curation_id, stage, band
)
SELECT
    curation_id,
    stage,
    CAST(band / per_unit AS DOUBLE) AS band_low,
    CAST((band + 1) / per_unit AS DOUBLE) AS band_high,
    n,
    duplicates,
    CAST(duplicates / n AS DOUBLE) AS precision,
    -- Wilson: (p + z²/2n ± z·sqrt(p(1-p)/n + z²/4n²)) / (1 + z²/n), z = 1.959964
    CAST(greatest(0.0, ((duplicates / n) + 3.841459 / (2 * n)
        - 1.959964 * sqrt((duplicates / n) * (1 - duplicates / n) / n + 3.841459 / (4 * n * n)))
        / (1 + 3.841459 / n)) AS DOUBLE) AS ci_low,
    CAST(least(1.0, ((duplicates / n) + 3.841459 / (2 * n)
        + 1.959964 * sqrt((duplicates / n) * (1 - duplicates / n) / n + 3.841459 / (4 * n * n)))
        / (1 + 3.841459 / n)) AS DOUBLE) AS ci_high
FROM counted;
