-- legato schema (PostgreSQL), as the migrations leave it. A test checks they agree.
-- Payloads are json, not jsonb: they read back exactly as written (key order,
-- number format), as on SQLite. Tags and attempt history, which are searched
-- or appended to, are jsonb.

-- Every time legato judges (leases, retries, timeouts) comes from here: the
-- database's clock, shifted by the transaction-local setting legato.clock_offset
-- (seconds) that tests use to move time instead of sleeping.
CREATE FUNCTION legato_now() RETURNS timestamptz
LANGUAGE sql STABLE AS $$
    SELECT now() + make_interval(secs => COALESCE(
        NULLIF(current_setting('legato.clock_offset', true), '')::double precision, 0))
$$;

CREATE TABLE workflow_specs (
    hash        text PRIMARY KEY,
    name        text NOT NULL,
    version     text NOT NULL,
    spec        json  NOT NULL,
    created_at  timestamptz NOT NULL
);

CREATE TABLE runs (
    id               uuid PRIMARY KEY,
    workflow_name    text NOT NULL,
    workflow_version text NOT NULL,
    spec_hash        text NOT NULL REFERENCES workflow_specs (hash),
    status           text NOT NULL,
    params           json  NOT NULL,
    outputs          json ,
    variables        json  NOT NULL DEFAULT '{}',
    error            json ,
    tags             jsonb NOT NULL DEFAULT '{}',
    created_by       text,
    correlation_id   text,
    idempotency_key  text UNIQUE,
    parent_run_id    uuid,
    root_run_id      uuid NOT NULL,
    steps_total      integer NOT NULL,
    steps_done       integer NOT NULL DEFAULT 0,
    created_at       timestamptz NOT NULL,
    started_at       timestamptz,
    finished_at      timestamptz,
    updated_at       timestamptz NOT NULL
);

CREATE INDEX runs_created ON runs (created_at DESC);
CREATE INDEX runs_status_created ON runs (status, created_at DESC);
CREATE INDEX runs_workflow_created ON runs (workflow_name, created_at DESC);

CREATE TABLE step_runs (
    id                bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    run_id            uuid NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
    root_run_id       uuid NOT NULL,
    step_id           text NOT NULL,
    task              text NOT NULL,
    position          integer NOT NULL,
    status            text NOT NULL,
    deps_remaining    integer NOT NULL,
    attempt           integer NOT NULL DEFAULT 0,
    max_attempts      integer NOT NULL,
    retry             json  NOT NULL,
    timeout           double precision,
    queue             text NOT NULL,
    priority          integer NOT NULL,
    available_at      timestamptz NOT NULL,
    inputs            json ,
    output            json ,
    error             json ,
    history           jsonb NOT NULL DEFAULT '[]',
    worker_id         text,
    lease_expires_at  timestamptz,
    queued_at         timestamptz,
    started_at        timestamptz,
    finished_at       timestamptz,
    failures          integer NOT NULL DEFAULT 0,
    lost              integer NOT NULL DEFAULT 0,
    max_lost          integer NOT NULL DEFAULT 3,
    UNIQUE (run_id, step_id)
);

CREATE INDEX step_runs_claim ON step_runs (queue, priority DESC, id) WHERE status = 'queued';
CREATE INDEX step_runs_lease ON step_runs (lease_expires_at) WHERE status = 'running';
CREATE INDEX step_runs_worker ON step_runs (worker_id) WHERE status = 'running';
CREATE INDEX step_runs_claim_tree ON step_runs (root_run_id, priority DESC, id)
WHERE status = 'queued';

CREATE TABLE events (
    id       bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    run_id   uuid NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
    step_id  text,
    attempt  integer,
    type     text NOT NULL,
    at       timestamptz NOT NULL,
    actor    text,
    details  json 
);

CREATE INDEX events_run ON events (run_id, id);

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
