-- Runs unfold as they go: a step row is one instance of a spec step (a map's
-- item, a loop's iteration, a branch), keyed within its run. Kinds no worker
-- runs (switch, map, loop, sleep, signals, sub-workflows) have rows too.
-- Scopes count their unfinished instances in sharded counters, so finishing
-- a step never writes the run's row. Signals wait in their own table, and
-- task defaults are recorded by the workers that have the code.

CREATE TABLE step_runs_v3 (
    id                INTEGER PRIMARY KEY,
    run_id            TEXT NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
    root_run_id       TEXT NOT NULL,
    key               TEXT NOT NULL,
    step_id           TEXT NOT NULL,
    scope             TEXT NOT NULL DEFAULT '',
    kind              TEXT NOT NULL DEFAULT 'task',
    idx               INTEGER,
    item              TEXT,
    task              TEXT,
    position          INTEGER NOT NULL,
    status            TEXT NOT NULL,
    deps_remaining    INTEGER NOT NULL,
    attempt           INTEGER NOT NULL DEFAULT 0,
    max_attempts      INTEGER,
    retry             TEXT,
    timeout           REAL,
    queue             TEXT NOT NULL,
    priority          INTEGER NOT NULL,
    available_at      REAL NOT NULL,
    wake_at           REAL,
    waiting_for       TEXT,
    child_run_id      TEXT,
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
    max_lost          INTEGER,
    UNIQUE (run_id, key)
);

INSERT INTO step_runs_v3 (id, run_id, root_run_id, key, step_id, scope, kind, task, position,
                          status, deps_remaining, attempt, max_attempts, retry, timeout, queue,
                          priority, available_at, inputs, output, error, history, worker_id,
                          lease_expires_at, queued_at, started_at, finished_at, failures, lost,
                          max_lost)
SELECT id, run_id, root_run_id, step_id, step_id, '', 'task', task, position, status,
       deps_remaining, attempt, max_attempts, retry, timeout, queue, priority, available_at,
       inputs, output, error, history, worker_id, lease_expires_at, queued_at, started_at,
       finished_at, failures, lost, max_lost
FROM step_runs;

DROP TABLE step_runs;
ALTER TABLE step_runs_v3 RENAME TO step_runs;

CREATE INDEX step_runs_claim ON step_runs (queue, priority DESC, id) WHERE status = 'queued';
CREATE INDEX step_runs_claim_tree ON step_runs (root_run_id, priority DESC, id)
WHERE status = 'queued';
CREATE INDEX step_runs_lease ON step_runs (lease_expires_at) WHERE status = 'running';
CREATE INDEX step_runs_worker ON step_runs (worker_id) WHERE status = 'running';
CREATE INDEX step_runs_timer ON step_runs (wake_at) WHERE status = 'suspended';
CREATE INDEX step_runs_scope ON step_runs (run_id, scope, idx);

CREATE TABLE scope_counters (
    run_id     TEXT NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
    scope      TEXT NOT NULL,
    shard      INTEGER NOT NULL,
    remaining  INTEGER NOT NULL,
    PRIMARY KEY (run_id, scope, shard)
);

CREATE TABLE signals (
    id           INTEGER PRIMARY KEY,
    run_id       TEXT NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
    name         TEXT NOT NULL,
    payload      TEXT,
    sent_at      REAL NOT NULL,
    sent_by      TEXT,
    consumed_by  TEXT,
    consumed_at  REAL
);

CREATE INDEX signals_waiting ON signals (run_id, name, id) WHERE consumed_by IS NULL;

CREATE TABLE signal_channels (
    run_id  TEXT NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
    name    TEXT NOT NULL,
    PRIMARY KEY (run_id, name)
);

CREATE TABLE task_defaults (
    task        TEXT PRIMARY KEY,
    retry       TEXT NOT NULL,
    timeout     REAL,
    queue       TEXT NOT NULL,
    priority    INTEGER NOT NULL,
    max_lost    INTEGER NOT NULL,
    updated_at  REAL NOT NULL
);

ALTER TABLE runs ADD COLUMN parent_step TEXT;
ALTER TABLE runs DROP COLUMN steps_total;
ALTER TABLE runs DROP COLUMN steps_done;
CREATE INDEX runs_parent ON runs (parent_run_id) WHERE parent_run_id IS NOT NULL;
