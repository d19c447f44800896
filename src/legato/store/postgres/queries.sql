-- legato queries (PostgreSQL). Each block starts with "-- name: <name>"; the
-- SQLite file defines the same names with the same parameters. Time comes
-- from legato_now(); the :now parameter the SQLite file uses is ignored here.

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
SELECT id FROM runs WHERE idempotency_key = %(key)s;

-- name: insert_step
INSERT INTO step_runs (run_id, root_run_id, step_id, task, position, status, deps_remaining,
                       max_attempts, retry, timeout, queue, priority, available_at, queued_at)
VALUES (%(run_id)s, %(root_run_id)s, %(step_id)s, %(task)s, %(position)s, %(status)s,
        %(deps_remaining)s, %(max_attempts)s, %(retry)s::json, %(timeout)s, %(queue)s,
        %(priority)s, legato_now(),
        CASE WHEN %(status)s = 'queued' THEN legato_now() END);

-- name: insert_event
INSERT INTO events (run_id, step_id, attempt, type, at, actor, details)
VALUES (%(run_id)s, %(step_id)s, %(attempt)s, %(type)s, legato_now(), %(actor)s,
        %(details)s::json);

-- name: get_run
SELECT * FROM runs WHERE id = %(id)s;

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

-- name: claim_steps
WITH picked AS (
    SELECT id FROM step_runs
    WHERE status = 'queued'
      AND queue = ANY(%(queues)s::text[])
      AND task = ANY(%(tasks)s::text[])
      AND available_at <= legato_now()
      AND (%(root)s::uuid IS NULL OR root_run_id = %(root)s::uuid)
    ORDER BY priority DESC, id
    LIMIT %(limit)s
    FOR UPDATE SKIP LOCKED)
UPDATE step_runs s
SET status = 'running', attempt = s.attempt + 1, worker_id = %(worker)s,
    lease_expires_at = legato_now() + make_interval(secs => %(lease)s),
    started_at = legato_now(), finished_at = NULL
FROM picked
WHERE s.id = picked.id
RETURNING s.id, s.run_id, s.step_id, s.task, s.attempt, s.max_attempts, s.retry, s.timeout,
          s.inputs, s.priority;

-- name: start_runs
UPDATE runs SET status = 'running', started_at = legato_now(), updated_at = legato_now()
WHERE id = ANY(%(ids)s::uuid[]) AND status = 'pending'
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
RETURNING id;

-- name: running_step
SELECT id, run_id, step_id, attempt, max_attempts, retry, worker_id
FROM step_runs WHERE id = %(id)s AND attempt = %(attempt)s AND status = 'running'
FOR UPDATE;

-- name: retry_step
UPDATE step_runs
SET status = 'queued', available_at = legato_now() + make_interval(secs => %(delay)s),
    queued_at = legato_now(), error = %(error)s::json, inputs = COALESCE(%(inputs)s::json, inputs),
    worker_id = NULL, lease_expires_at = NULL,
    history = history || jsonb_build_array(jsonb_build_object(
        'attempt', attempt, 'status', 'failed', 'worker', worker_id,
        'started_at', extract(epoch FROM started_at),
        'finished_at', extract(epoch FROM legato_now()), 'error', %(error)s::jsonb))
WHERE id = %(id)s AND attempt = %(attempt)s AND status = 'running';

-- name: fail_step
UPDATE step_runs
SET status = 'failed', error = %(error)s::json, inputs = COALESCE(%(inputs)s::json, inputs),
    finished_at = legato_now(), lease_expires_at = NULL
WHERE id = %(id)s AND attempt = %(attempt)s AND status = 'running';

-- name: cancel_unstarted
UPDATE step_runs SET status = 'cancelled', finished_at = legato_now()
WHERE run_id = %(run_id)s AND status IN ('waiting', 'queued')
RETURNING step_id;

-- name: expired_steps
SELECT id, run_id, step_id, attempt, worker_id FROM step_runs
WHERE status = 'running' AND lease_expires_at < legato_now()
ORDER BY lease_expires_at
LIMIT %(limit)s
FOR UPDATE SKIP LOCKED;

-- name: extend_leases
UPDATE step_runs SET lease_expires_at = legato_now() + make_interval(secs => %(lease)s)
WHERE worker_id = %(worker)s AND status = 'running' AND id = ANY(%(ids)s::bigint[]);
