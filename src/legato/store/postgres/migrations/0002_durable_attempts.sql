-- Lost attempts (a worker killed or stuck) have a budget of their own, apart
-- from the retries a task's failures spend; workers record what they serve so
-- a run waiting for a worker that does not exist can say so.

ALTER TABLE step_runs ADD COLUMN failures integer NOT NULL DEFAULT 0;
ALTER TABLE step_runs ADD COLUMN lost integer NOT NULL DEFAULT 0;
ALTER TABLE step_runs ADD COLUMN max_lost integer NOT NULL DEFAULT 3;

CREATE INDEX step_runs_claim_tree ON step_runs (root_run_id, priority DESC, id)
WHERE status = 'queued';

CREATE TABLE workers (
    id            text PRIMARY KEY,
    host          text NOT NULL,
    pid           integer NOT NULL,
    queues        jsonb,
    tasks         jsonb NOT NULL,
    root_run_id   uuid,
    concurrency   integer NOT NULL,
    started_at    timestamptz NOT NULL,
    last_seen_at  timestamptz NOT NULL,
    expires_at    timestamptz NOT NULL
);

CREATE INDEX workers_expires ON workers (expires_at);
