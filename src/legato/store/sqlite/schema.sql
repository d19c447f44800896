-- legato schema (SQLite), as the migrations leave it. A test checks they agree.
-- Timestamps are REAL seconds since the epoch (UTC); JSON is TEXT.

CREATE TABLE workflow_specs (
    hash        TEXT PRIMARY KEY,
    name        TEXT NOT NULL,
    version     TEXT NOT NULL,
    spec        TEXT NOT NULL,
    created_at  REAL NOT NULL
);

CREATE TABLE runs (
    id               TEXT PRIMARY KEY,
    workflow_name    TEXT NOT NULL,
    workflow_version TEXT NOT NULL,
    spec_hash        TEXT NOT NULL REFERENCES workflow_specs (hash),
    status           TEXT NOT NULL,
    params           TEXT NOT NULL,
    outputs          TEXT,
    variables        TEXT NOT NULL DEFAULT '{}',
    error            TEXT,
    tags             TEXT NOT NULL DEFAULT '{}',
    created_by       TEXT,
    correlation_id   TEXT,
    idempotency_key  TEXT UNIQUE,
    parent_run_id    TEXT,
    root_run_id      TEXT NOT NULL,
    steps_total      INTEGER NOT NULL,
    steps_done       INTEGER NOT NULL DEFAULT 0,
    created_at       REAL NOT NULL,
    started_at       REAL,
    finished_at      REAL,
    updated_at       REAL NOT NULL
);

CREATE INDEX runs_created ON runs (created_at DESC);
CREATE INDEX runs_status_created ON runs (status, created_at DESC);
CREATE INDEX runs_workflow_created ON runs (workflow_name, created_at DESC);

CREATE TABLE step_runs (
    id                INTEGER PRIMARY KEY,
    run_id            TEXT NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
    root_run_id       TEXT NOT NULL,
    step_id           TEXT NOT NULL,
    task              TEXT NOT NULL,
    position          INTEGER NOT NULL,
    status            TEXT NOT NULL,
    deps_remaining    INTEGER NOT NULL,
    attempt           INTEGER NOT NULL DEFAULT 0,
    max_attempts      INTEGER NOT NULL,
    retry             TEXT NOT NULL,
    timeout           REAL,
    queue             TEXT NOT NULL,
    priority          INTEGER NOT NULL,
    available_at      REAL NOT NULL,
    inputs            TEXT,
    output            TEXT,
    error             TEXT,
    history           TEXT NOT NULL DEFAULT '[]',
    worker_id         TEXT,
    lease_expires_at  REAL,
    queued_at         REAL,
    started_at        REAL,
    finished_at       REAL,
    failures          INTEGER NOT NULL DEFAULT 0,
    lost              INTEGER NOT NULL DEFAULT 0,
    max_lost          INTEGER NOT NULL DEFAULT 3,
    UNIQUE (run_id, step_id)
);

CREATE INDEX step_runs_claim ON step_runs (queue, priority DESC, id) WHERE status = 'queued';
CREATE INDEX step_runs_lease ON step_runs (lease_expires_at) WHERE status = 'running';
CREATE INDEX step_runs_worker ON step_runs (worker_id) WHERE status = 'running';
CREATE INDEX step_runs_claim_tree ON step_runs (root_run_id, priority DESC, id)
WHERE status = 'queued';

CREATE TABLE events (
    id       INTEGER PRIMARY KEY,
    run_id   TEXT NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
    step_id  TEXT,
    attempt  INTEGER,
    type     TEXT NOT NULL,
    at       REAL NOT NULL,
    actor    TEXT,
    details  TEXT
);

CREATE INDEX events_run ON events (run_id, id);

CREATE TABLE workers (
    id            TEXT PRIMARY KEY,
    host          TEXT NOT NULL,
    pid           INTEGER NOT NULL,
    queues        TEXT,
    tasks         TEXT NOT NULL,
    root_run_id   TEXT,
    concurrency   INTEGER NOT NULL,
    started_at    REAL NOT NULL,
    last_seen_at  REAL NOT NULL,
    expires_at    REAL NOT NULL
);

CREATE INDEX workers_expires ON workers (expires_at);
