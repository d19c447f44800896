-- legato queries (PostgreSQL). Each block starts with "-- name: <name>"; the
-- SQLite file defines the same names with the same parameters. Time comes
-- from legato_now(); the :now parameter the SQLite file uses is ignored here.
-- A `{name}` placeholder is a whole number written into the statement as a
-- literal (psycopg's sql.Literal), where the planner must see the value.
--
-- Row locks follow one order, set out in legato/store/reporting.py: a
-- transaction that changes a run's steps first locks the run row
-- (lock_runs: FOR NO KEY UPDATE, in id order), then step rows. Claims and
-- heartbeats take only what they can get without waiting (SKIP LOCKED), so
-- they never wait on anyone and cannot close a cycle. Every status write names
-- the statuses it moves from; tests/store/test_transitions.py checks each one
-- against the table in legato/model/states.py.

-- name: insert_spec
INSERT INTO workflow_specs (hash, name, version, spec, created_at)
VALUES (%(hash)s, %(name)s, %(version)s, %(spec)s::json, legato_now())
ON CONFLICT (hash) DO NOTHING;

-- name: get_spec
SELECT spec::text AS spec FROM workflow_specs WHERE hash = %(hash)s;

-- name: insert_run
INSERT INTO runs (id, workflow_name, workflow_version, spec_hash, status, params, tags,
                  created_by, correlation_id, idempotency_key, parent_run_id, root_run_id,
                  steps_total, created_at, updated_at)
VALUES (%(id)s, %(workflow_name)s, %(workflow_version)s, %(spec_hash)s, 'pending',
        %(params)s::json, %(tags)s::jsonb, %(created_by)s, %(correlation_id)s,
        %(idempotency_key)s, %(parent_run_id)s, %(root_run_id)s, %(steps_total)s,
        legato_now(), legato_now())
ON CONFLICT (idempotency_key) DO NOTHING
RETURNING id;

-- name: run_by_idempotency_key
SELECT id, workflow_name, params FROM runs WHERE idempotency_key = %(key)s;

-- name: insert_step
INSERT INTO step_runs (run_id, root_run_id, step_id, task, position, status, deps_remaining,
                       max_attempts, retry, timeout, queue, priority, max_lost, available_at,
                       queued_at)
VALUES (%(run_id)s, %(root_run_id)s, %(step_id)s, %(task)s, %(position)s, %(status)s,
        %(deps_remaining)s, %(max_attempts)s, %(retry)s::json, %(timeout)s, %(queue)s,
        %(priority)s, %(max_lost)s, legato_now(),
        CASE WHEN %(status)s = 'queued' THEN legato_now() END);

-- name: insert_event
INSERT INTO events (run_id, step_id, attempt, type, at, actor, details)
VALUES (%(run_id)s, %(step_id)s, %(attempt)s, %(type)s, legato_now(), %(actor)s,
        %(details)s::json);

-- name: get_run
SELECT * FROM runs WHERE id = %(id)s;

-- name: find_run_ids
SELECT id FROM runs WHERE id >= %(low)s::uuid AND id <= %(high)s::uuid ORDER BY id
LIMIT %(limit)s;

-- name: get_steps
SELECT * FROM step_runs WHERE run_id = %(run_id)s ORDER BY position;

-- name: list_runs
SELECT * FROM runs
WHERE (%(status)s::text IS NULL OR status = %(status)s::text)
  AND (%(workflow)s::text IS NULL OR workflow_name = %(workflow)s::text)
ORDER BY created_at DESC, id DESC
LIMIT %(limit)s;

-- name: run_events
SELECT * FROM events WHERE run_id = %(run_id)s ORDER BY id;

-- NO KEY UPDATE, not UPDATE: inserting an event takes KEY SHARE on its run
-- row (the foreign key), and that must never wait for a run lock.
-- name: lock_runs
SELECT id, status FROM runs WHERE id = ANY(%(ids)s::uuid[]) ORDER BY id FOR NO KEY UPDATE;

-- name: lock_runs_nowait
SELECT id, status FROM runs WHERE id = ANY(%(ids)s::uuid[]) ORDER BY id
FOR NO KEY UPDATE SKIP LOCKED;

-- One queue served (the usual worker): its best `limit` steps, through the
-- claim index. `{limit}` is written into the statement as a literal (one
-- prepared statement per batch size): with a LIMIT parameter PostgreSQL's
-- generic plan guesses a tenth of the queued steps, so it would plan the
-- statement afresh on every claim.
-- name: claim_queue_steps
WITH picked AS (
    SELECT id FROM step_runs
    WHERE status = 'queued' AND queue = %(queue)s
      AND task = ANY(%(tasks)s::text[])
      AND available_at <= legato_now()
    ORDER BY priority DESC, id
    LIMIT {limit}
    FOR UPDATE SKIP LOCKED)
UPDATE step_runs s
SET status = 'running', attempt = s.attempt + 1, worker_id = %(worker)s,
    lease_expires_at = legato_now() + make_interval(secs => %(lease)s),
    started_at = legato_now(), finished_at = NULL
FROM picked
WHERE s.id = picked.id AND s.status = 'queued'
RETURNING s.id, s.run_id, s.step_id, s.task, s.attempt, s.max_attempts, s.retry, s.timeout,
          s.inputs, s.priority;

-- Several queues: the best `limit` steps of each, each queue read through the
-- claim index (an `= ANY(queues)` test would make PostgreSQL sort every
-- queued step), then the best `limit` of those.
-- name: claim_steps
WITH picked AS (
    SELECT c.id FROM unnest(%(queues)s::text[]) AS q(name)
    CROSS JOIN LATERAL (
        SELECT s.id, s.priority FROM step_runs s
        WHERE s.status = 'queued' AND s.queue = q.name
          AND s.task = ANY(%(tasks)s::text[])
          AND s.available_at <= legato_now()
        ORDER BY s.priority DESC, s.id
        LIMIT {limit}
        FOR UPDATE SKIP LOCKED) AS c
    ORDER BY c.priority DESC, c.id
    LIMIT {limit})
UPDATE step_runs s
SET status = 'running', attempt = s.attempt + 1, worker_id = %(worker)s,
    lease_expires_at = legato_now() + make_interval(secs => %(lease)s),
    started_at = legato_now(), finished_at = NULL
FROM picked
WHERE s.id = picked.id AND s.status = 'queued'
RETURNING s.id, s.run_id, s.step_id, s.task, s.attempt, s.max_attempts, s.retry, s.timeout,
          s.inputs, s.priority;

-- name: claim_tree_steps
WITH picked AS (
    SELECT id FROM step_runs
    WHERE status = 'queued' AND root_run_id = %(root)s::uuid
      AND task = ANY(%(tasks)s::text[])
      AND (%(queues)s::text[] IS NULL OR queue = ANY(%(queues)s::text[]))
      AND available_at <= legato_now()
    ORDER BY priority DESC, id
    LIMIT {limit}
    FOR UPDATE SKIP LOCKED)
UPDATE step_runs s
SET status = 'running', attempt = s.attempt + 1, worker_id = %(worker)s,
    lease_expires_at = legato_now() + make_interval(secs => %(lease)s),
    started_at = legato_now(), finished_at = NULL
FROM picked
WHERE s.id = picked.id AND s.status = 'queued'
RETURNING s.id, s.run_id, s.step_id, s.task, s.attempt, s.max_attempts, s.retry, s.timeout,
          s.inputs, s.priority;

-- Runs of claimed steps not yet known to have started. A run row locked by
-- another transaction is skipped, not waited for: it is being started by
-- another claim, or finished; a run still pending when a result of it is
-- reported is started then.
-- name: start_runs
UPDATE runs SET status = 'running', started_at = legato_now(), updated_at = legato_now()
WHERE id IN (
    SELECT id FROM runs WHERE id = ANY(%(ids)s::uuid[]) AND status = 'pending'
    ORDER BY id FOR NO KEY UPDATE SKIP LOCKED)
  AND status = 'pending'
RETURNING id;

-- name: run_contexts
SELECT id, workflow_name, workflow_version, spec_hash, params, tags, created_by,
       correlation_id, created_at
FROM runs WHERE id = ANY(%(ids)s::uuid[]);

-- name: step_outputs
SELECT step_id, output FROM step_runs
WHERE run_id = %(run_id)s AND step_id = ANY(%(step_ids)s::text[]);

-- name: complete_step
UPDATE step_runs
SET status = 'completed', output = %(output)s::json, inputs = %(inputs)s::json, error = NULL,
    finished_at = legato_now(), lease_expires_at = NULL
WHERE id = %(id)s AND attempt = %(attempt)s AND status = 'running';

-- name: release_successors
UPDATE step_runs
SET deps_remaining = deps_remaining - 1,
    status = CASE WHEN deps_remaining = 1 THEN 'queued' ELSE status END,
    queued_at = CASE WHEN deps_remaining = 1 THEN legato_now() ELSE queued_at END,
    available_at = legato_now()
WHERE run_id = %(run_id)s AND step_id = ANY(%(step_ids)s::text[]) AND status = 'waiting'
RETURNING step_id, status;

-- name: count_done
UPDATE runs SET steps_done = steps_done + %(n)s, updated_at = legato_now()
WHERE id = %(run_id)s
RETURNING status, steps_done, steps_total;

-- name: finish_run
UPDATE runs
SET status = %(status)s, outputs = %(outputs)s::json, error = %(error)s::json,
    finished_at = legato_now(), updated_at = legato_now()
WHERE id = %(run_id)s AND status IN ('pending', 'running')
  AND %(status)s IN ('completed', 'failed', 'cancelled')
RETURNING id;

-- name: running_step
SELECT id, run_id, step_id, attempt, max_attempts, retry, worker_id, failures, lost, max_lost
FROM step_runs WHERE id = %(id)s AND attempt = %(attempt)s AND status = 'running'
FOR UPDATE;

-- name: retry_step
UPDATE step_runs
SET status = 'queued', available_at = legato_now() + make_interval(secs => %(delay)s),
    queued_at = legato_now(), failures = %(failures)s, error = %(error)s::json,
    inputs = COALESCE(%(inputs)s::json, inputs), worker_id = NULL, lease_expires_at = NULL,
    history = history || jsonb_build_array(jsonb_build_object(
        'attempt', attempt, 'status', 'failed', 'worker', worker_id,
        'started_at', extract(epoch FROM started_at),
        'finished_at', extract(epoch FROM legato_now()), 'error', %(error)s::jsonb))
WHERE id = %(id)s AND attempt = %(attempt)s AND status = 'running';

-- name: fail_step
UPDATE step_runs
SET status = 'failed', error = %(error)s::json, inputs = COALESCE(%(inputs)s::json, inputs),
    finished_at = legato_now(), failures = %(failures)s, lost = %(lost)s,
    lease_expires_at = NULL
WHERE id = %(id)s AND attempt = %(attempt)s AND status = 'running';

-- name: cancel_unstarted
UPDATE step_runs SET status = 'cancelled', finished_at = legato_now()
WHERE run_id = %(run_id)s AND status IN ('waiting', 'queued')
RETURNING step_id;

-- Candidates only: each is locked, with its run, before it is touched.
-- name: expired_steps
SELECT id, run_id, attempt FROM step_runs
WHERE status = 'running' AND lease_expires_at < legato_now()
ORDER BY lease_expires_at
LIMIT %(limit)s;

-- name: expired_step
SELECT id, run_id, step_id, attempt, worker_id, failures, lost, max_lost FROM step_runs
WHERE id = %(id)s AND attempt = %(attempt)s AND status = 'running'
  AND lease_expires_at < legato_now()
FOR UPDATE;

-- name: lose_step
UPDATE step_runs
SET status = 'queued', available_at = legato_now(), queued_at = legato_now(), lost = %(lost)s,
    worker_id = NULL, lease_expires_at = NULL,
    history = history || jsonb_build_array(jsonb_build_object(
        'attempt', attempt, 'status', 'lost', 'worker', worker_id,
        'started_at', extract(epoch FROM started_at),
        'finished_at', extract(epoch FROM legato_now()), 'error', %(error)s::jsonb))
WHERE id = %(id)s AND attempt = %(attempt)s AND status = 'running';

-- name: abandon_step
UPDATE step_runs
SET status = 'cancelled', error = %(error)s::json, finished_at = legato_now(), lost = %(lost)s,
    lease_expires_at = NULL
WHERE id = %(id)s AND attempt = %(attempt)s AND status = 'running';

-- name: release_step
UPDATE step_runs
SET status = 'queued', available_at = legato_now(), queued_at = legato_now(),
    worker_id = NULL, lease_expires_at = NULL,
    history = history || jsonb_build_array(jsonb_build_object(
        'attempt', attempt, 'status', 'released', 'worker', worker_id,
        'started_at', extract(epoch FROM started_at),
        'finished_at', extract(epoch FROM legato_now())))
WHERE id = %(id)s AND attempt = %(attempt)s AND status = 'running' AND worker_id = %(worker)s;

-- A row being reported or swept right now is skipped, not waited for: the
-- next heartbeat renews it, and a heartbeat never waits on anyone.
-- name: extend_leases
UPDATE step_runs SET lease_expires_at = legato_now() + make_interval(secs => %(lease)s)
WHERE id IN (
    SELECT id FROM step_runs
    WHERE id = ANY(%(ids)s::bigint[]) AND worker_id = %(worker)s AND status = 'running'
    FOR UPDATE SKIP LOCKED);

-- name: upsert_worker
INSERT INTO workers (id, host, pid, queues, tasks, root_run_id, concurrency, started_at,
                     last_seen_at, expires_at)
VALUES (%(id)s, %(host)s, %(pid)s, %(queues)s::jsonb, %(tasks)s::jsonb, %(root_run_id)s,
        %(concurrency)s, legato_now(), legato_now(),
        legato_now() + make_interval(secs => %(lease)s))
ON CONFLICT (id) DO UPDATE SET
    queues = excluded.queues, tasks = excluded.tasks, concurrency = excluded.concurrency,
    last_seen_at = excluded.last_seen_at, expires_at = excluded.expires_at;

-- name: touch_worker
UPDATE workers
SET last_seen_at = legato_now(), expires_at = legato_now() + make_interval(secs => %(lease)s)
WHERE id = %(id)s;

-- name: delete_worker
DELETE FROM workers WHERE id = %(id)s;

-- name: live_workers
SELECT * FROM workers WHERE expires_at > legato_now() ORDER BY started_at, id;

-- name: prune_workers
DELETE FROM workers WHERE expires_at < legato_now() - interval '1 day';
