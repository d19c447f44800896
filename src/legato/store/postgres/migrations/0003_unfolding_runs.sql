-- Runs unfold as they go: a step row is one instance of a spec step (a map's
-- item, a loop's iteration, a branch), keyed within its run. Kinds no worker
-- runs (switch, map, loop, sleep, signals, sub-workflows) have rows too.
-- Scopes count their unfinished instances in sharded counters, so finishing
-- a step never writes the run's row. Signals wait in their own table, and
-- task defaults are recorded by the workers that have the code.

ALTER TABLE step_runs ADD COLUMN key text;
UPDATE step_runs SET key = step_id;
ALTER TABLE step_runs ALTER COLUMN key SET NOT NULL;
ALTER TABLE step_runs ADD COLUMN scope text NOT NULL DEFAULT '';
ALTER TABLE step_runs ADD COLUMN kind text NOT NULL DEFAULT 'task';
ALTER TABLE step_runs ADD COLUMN idx integer;
ALTER TABLE step_runs ADD COLUMN item json;
ALTER TABLE step_runs ALTER COLUMN task DROP NOT NULL;
ALTER TABLE step_runs ALTER COLUMN max_attempts DROP NOT NULL;
ALTER TABLE step_runs ALTER COLUMN retry DROP NOT NULL;
ALTER TABLE step_runs ALTER COLUMN max_lost DROP NOT NULL;
ALTER TABLE step_runs ALTER COLUMN max_lost DROP DEFAULT;
ALTER TABLE step_runs ADD COLUMN wake_at timestamptz;
ALTER TABLE step_runs ADD COLUMN waiting_for text;
ALTER TABLE step_runs ADD COLUMN child_run_id uuid;
ALTER TABLE step_runs DROP CONSTRAINT step_runs_run_id_step_id_key;
ALTER TABLE step_runs ADD CONSTRAINT step_runs_run_id_key_key UNIQUE (run_id, key);

CREATE INDEX step_runs_timer ON step_runs (wake_at) WHERE status = 'suspended';
CREATE INDEX step_runs_scope ON step_runs (run_id, scope, idx);

CREATE TABLE scope_counters (
    run_id     uuid NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
    scope      text NOT NULL,
    shard      integer NOT NULL,
    remaining  integer NOT NULL,
    PRIMARY KEY (run_id, scope, shard)
);

CREATE TABLE signals (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    run_id       uuid NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
    name         text NOT NULL,
    payload      json,
    sent_at      timestamptz NOT NULL,
    sent_by      text,
    consumed_by  text,
    consumed_at  timestamptz
);

CREATE INDEX signals_waiting ON signals (run_id, name, id) WHERE consumed_by IS NULL;

CREATE TABLE signal_channels (
    run_id  uuid NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
    name    text NOT NULL,
    PRIMARY KEY (run_id, name)
);

CREATE TABLE task_defaults (
    task        text PRIMARY KEY,
    retry       json NOT NULL,
    timeout     double precision,
    queue       text NOT NULL,
    priority    integer NOT NULL,
    max_lost    integer NOT NULL,
    updated_at  timestamptz NOT NULL
);

ALTER TABLE runs ADD COLUMN parent_step text;
ALTER TABLE runs DROP COLUMN steps_total;
ALTER TABLE runs DROP COLUMN steps_done;
CREATE INDEX runs_parent ON runs (parent_run_id) WHERE parent_run_id IS NOT NULL;
