-- tunelab warehouse, the current schema (a fresh file gets exactly this; older files are migrated
-- by store.MIGRATIONS and must end up with the same columns — tests/test_warehouse_schema.py checks it).
-- No PRIMARY KEY / UNIQUE constraints: ids are checked inside the ingest transaction instead, because
-- DuckDB's ART indexes slow down bulk inserts and reject delete+reinsert of a key in one transaction
-- (which replace=True needs).

CREATE TABLE IF NOT EXISTS schema_version (
    version    INTEGER NOT NULL,
    applied_at TIMESTAMP NOT NULL
);

CREATE TABLE IF NOT EXISTS datasets (
    name              VARCHAR NOT NULL,
    kind              VARCHAR,
    path              VARCHAR,
    first_seen_at     TIMESTAMP,
    last_curation_id  VARCHAR,
    last_curated_at   TIMESTAMP
);

CREATE TABLE IF NOT EXISTS curations (
    curation_id   VARCHAR NOT NULL,
    dataset       VARCHAR NOT NULL,
    dataset_path  VARCHAR,
    kind          VARCHAR,
    data_version  VARCHAR,
    recipe        VARCHAR,   -- JSON text: the recipe's dataset + curate sections
    created_at    TIMESTAMP,
    "read"        BIGINT,
    kept          BIGINT,
    dropped       BIGINT,
    quarantined   BIGINT,
    report        VARCHAR,   -- JSON text
    out_dir       VARCHAR
);

CREATE TABLE IF NOT EXISTS samples (
    curation_id   VARCHAR NOT NULL,
    sample_id     VARCHAR NOT NULL,
    dataset       VARCHAR,
    source_row    BIGINT,
    source_line   BIGINT,
    label         VARCHAR,
    content_hash  VARCHAR,
    system        VARCHAR,
    prompt        VARCHAR,
    response      VARCHAR,
    chosen        VARCHAR,
    rejected      VARCHAR,
    instruction   VARCHAR,
    context       VARCHAR[],
    question      VARCHAR,
    answer        VARCHAR,
    cot           VARCHAR,
    text          VARCHAR,
    field_types   VARCHAR,   -- JSON text: canonical field -> source type name
    source_id     VARCHAR,   -- the record's own id in the source (id, _id, uuid ... or dataset.id_field)
    messages      STRUCT(role VARCHAR, content VARCHAR)[],  -- kind chat: every turn, in order
    history       STRUCT(role VARCHAR, content VARCHAR)[]   -- kind dpo: the turns before the prompt
);

CREATE TABLE IF NOT EXISTS decisions (
    curation_id    VARCHAR NOT NULL,
    sample_id      VARCHAR NOT NULL,
    stage          VARCHAR NOT NULL,
    kept           BOOLEAN NOT NULL,
    reason         VARCHAR,
    ref_sample_id  VARCHAR,
    score          DOUBLE,
    evidence       VARCHAR
);

CREATE TABLE IF NOT EXISTS quarantine (
    curation_id  VARCHAR NOT NULL,
    dataset      VARCHAR,
    source_file  VARCHAR,
    source_line  BIGINT,
    source_row   BIGINT,
    error        VARCHAR,
    raw          VARCHAR
);

CREATE TABLE IF NOT EXISTS runs (
    run_id         VARCHAR NOT NULL,
    kind           VARCHAR NOT NULL,   -- 'sft' | 'dpo'
    status         VARCHAR NOT NULL,   -- 'running' | 'finished' | 'failed'
    curation_id    VARCHAR,
    parent_run_id  VARCHAR,
    base_model     VARCHAR,
    base_revision  VARCHAR,
    recipe         VARCHAR,            -- JSON text
    git_sha        VARCHAR,
    adapter_path   VARCHAR,
    output_dir     VARCHAR,
    error          VARCHAR,
    started_at     TIMESTAMP,
    finished_at    TIMESTAMP,
    metrics        VARCHAR,            -- JSON text; last because version 2 added it with ALTER TABLE
    note           VARCHAR             -- `tunelab train ... --note`; version 7
);

CREATE TABLE IF NOT EXISTS train_log (
    run_id              VARCHAR NOT NULL,
    step                BIGINT,
    epoch               DOUBLE,
    loss                DOUBLE,
    eval_loss           DOUBLE,
    learning_rate       DOUBLE,
    grad_norm           DOUBLE,
    rewards_chosen      DOUBLE,
    rewards_rejected    DOUBLE,
    rewards_margins     DOUBLE,
    rewards_accuracies  DOUBLE,
    logps_chosen        DOUBLE,
    logps_rejected      DOUBLE,
    extra               VARCHAR,       -- JSON text: any other numbers the trainer logged
    logged_at           TIMESTAMP
);

CREATE TABLE IF NOT EXISTS evals (
    eval_id      VARCHAR NOT NULL,
    eval_set     VARCHAR,
    curation_id  VARCHAR,
    created_at   TIMESTAMP,
    params       VARCHAR               -- JSON text
);

CREATE TABLE IF NOT EXISTS predictions (
    eval_id     VARCHAR NOT NULL,
    model       VARCHAR NOT NULL,
    run_id      VARCHAR,               -- null for a base model
    sample_id   VARCHAR NOT NULL,
    prompt      VARCHAR,
    reference   VARCHAR,
    prediction  VARCHAR,
    label       VARCHAR,
    latency_s   DOUBLE,
    gen_params  VARCHAR                -- JSON text
);

CREATE TABLE IF NOT EXISTS scores (
    eval_id    VARCHAR NOT NULL,
    model      VARCHAR NOT NULL,
    sample_id  VARCHAR NOT NULL,
    metric     VARCHAR NOT NULL,
    value      DOUBLE,
    signature  VARCHAR
);

CREATE TABLE IF NOT EXISTS eval_metrics (
    eval_id    VARCHAR NOT NULL,
    model      VARCHAR NOT NULL,
    metric     VARCHAR NOT NULL,
    value      DOUBLE,
    signature  VARCHAR,
    ci_low     DOUBLE,                 -- 95 % interval of value (bootstrap; see method, seed)
    ci_high    DOUBLE,
    n          INTEGER,                -- prompts the value is over
    method     VARCHAR,
    seed       INTEGER
);

-- every compared number: a model against the base, and each stage against its parent (dpo vs sft)
CREATE TABLE IF NOT EXISTS eval_deltas (
    eval_id     VARCHAR NOT NULL,
    model       VARCHAR NOT NULL,
    baseline    VARCHAR NOT NULL,
    metric      VARCHAR NOT NULL,
    delta       DOUBLE,                -- model minus baseline, on the prompts both answered
    ci_low      DOUBLE,                -- 95 % paired-bootstrap interval of the delta
    ci_high     DOUBLE,
    p_value     DOUBLE,                -- paired approximate randomization
    n           INTEGER,
    delta_pct   DOUBLE,                -- only when the baseline is at least 10 % of the metric's range
    significant BOOLEAN,               -- p < 0.05
    method      VARCHAR,
    seed        INTEGER
);

-- added in schema version 2
CREATE TABLE IF NOT EXISTS reviews (
    eval_id     VARCHAR NOT NULL,
    model       VARCHAR NOT NULL,
    sample_id   VARCHAR NOT NULL,
    rating      INTEGER NOT NULL,      -- +1 / -1
    comment     VARCHAR,
    created_at  TIMESTAMP,
    reviewer    VARCHAR                -- who rated ($TUNELAB_REVIEWER, else the OS user)
);

-- added in schema version 7 ------------------------------------------------------------------------

-- per-row numbers the signal stages measure (language, pii, quality, pairs), kept or dropped, for the
-- dashboard's distributions; `field` is the text field measured (prompt, response, chosen ...) or NULL
CREATE TABLE IF NOT EXISTS signals (
    curation_id  VARCHAR NOT NULL,
    sample_id    VARCHAR NOT NULL,
    stage        VARCHAR NOT NULL,
    field        VARCHAR,
    signal       VARCHAR NOT NULL,
    value        DOUBLE
);

-- an LLM judge's verdict on one prediction: rubric (score 1-10, opponent NULL) or pairwise against an
-- opponent model (verdict 'win' | 'loss' | 'tie' for `model`, score 1 / 0 / 0.5, consistent = both
-- presentation orders agreed)
CREATE TABLE IF NOT EXISTS judgments (
    eval_id     VARCHAR NOT NULL,
    sample_id   VARCHAR NOT NULL,
    model       VARCHAR NOT NULL,
    opponent    VARCHAR,
    mode        VARCHAR NOT NULL,      -- 'rubric' | 'pairwise'
    score       DOUBLE,
    verdict     VARCHAR,
    consistent  BOOLEAN,
    reason      VARCHAR,               -- the judge's own words (untrusted text)
    judge       VARCHAR,               -- judge model name
    signature   VARCHAR,               -- judge model, endpoint, template hash, temperature
    created_at  TIMESTAMP
);

-- a blind A/B review: two models' answers to one prompt, shown in random left/right order
CREATE TABLE IF NOT EXISTS pair_reviews (
    eval_id     VARCHAR NOT NULL,
    sample_id   VARCHAR NOT NULL,
    model_a     VARCHAR NOT NULL,      -- the pair in a canonical (sorted) order
    model_b     VARCHAR NOT NULL,
    left_model  VARCHAR,               -- which one the reviewer saw on the left
    winner      VARCHAR NOT NULL,      -- model_a's name, model_b's name, or 'tie'
    reviewer    VARCHAR,
    comment     VARCHAR,
    created_at  TIMESTAMP
);

-- a person's mark on a near-duplicate candidate pair of a curation (the dashboard's Thresholds page)
CREATE TABLE IF NOT EXISTS threshold_marks (
    curation_id    VARCHAR NOT NULL,
    stage          VARCHAR NOT NULL,   -- 'minhash' | 'semantic'
    sample_id      VARCHAR NOT NULL,
    ref_sample_id  VARCHAR NOT NULL,
    similarity     DOUBLE,
    is_duplicate   BOOLEAN NOT NULL,
    reviewer       VARCHAR,
    created_at     TIMESTAMP
);
