-- Lost attempts (a worker killed or stuck) have a budget of their own, apart
-- from the retries a task's failures spend; workers record what they serve so
-- a run waiting for a worker that does not exist can say so.

ALTER TABLE step_runs ADD COLUMN failures INTEGER NOT NULL DEFAULT 0;
ALTER TABLE step_runs ADD COLUMN lost INTEGER NOT NULL DEFAULT 0;
ALTER TABLE step_runs ADD COLUMN max_lost INTEGER NOT NULL DEFAULT 3;

CREATE INDEX step_runs_claim_tree ON step_runs (root_run_id, priority DESC, id)
WHERE status = 'queued';

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
