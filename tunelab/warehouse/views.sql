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
