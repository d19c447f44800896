-- legato queries (SQLite). Each block starts with "-- name: <name>"; the
-- PostgreSQL file defines the same names with the same parameters.
-- Lists are passed as one JSON array parameter and read with json_each.
-- SQLite runs one write transaction at a time (BEGIN IMMEDIATE), so the row
-- locks the PostgreSQL file takes have no counterpart here.
-- Every status write names the statuses it moves from; tests/store/test_transitions.py
-- checks each one against the table in legato/model/states.py.

-- name: insert_spec
INSERT INTO workflow_specs (hash, name, version, spec, created_at)
VALUES (:hash, :name, :version, :spec, :now)
ON CONFLICT (hash) DO NOTHING;

-- name: get_spec
SELECT spec FROM workflow_specs WHERE hash = :hash;

-- name: insert_run
INSERT INTO runs (id, workflow_name, workflow_version, spec_hash, status, params, tags,
                  created_by, correlation_id, idempotency_key, parent_run_id, root_run_id,
                  steps_total, created_at, updated_at)
VALUES (:id, :workflow_name, :workflow_version, :spec_hash, 'pending', :params, :tags,
        :created_by, :correlation_id, :idempotency_key, :parent_run_id, :root_run_id,
        :steps_total, :now, :now)
ON CONFLICT (idempotency_key) DO NOTHING
RETURNING id;

-- name: run_by_idempotency_key
SELECT id, workflow_name, params FROM runs WHERE idempotency_key = :key;

-- name: insert_step
INSERT INTO step_runs (run_id, root_run_id, step_id, task, position, status, deps_remaining,
                       max_attempts, retry, timeout, queue, priority, max_lost, available_at,
                       queued_at)
VALUES (:run_id, :root_run_id, :step_id, :task, :position, :status, :deps_remaining,
        :max_attempts, :retry, :timeout, :queue, :priority, :max_lost, :now,
        CASE WHEN :status = 'queued' THEN :now END);

-- name: insert_event
INSERT INTO events (run_id, step_id, attempt, type, at, actor, details)
VALUES (:run_id, :step_id, :attempt, :type, :now, :actor, :details);

-- name: get_run
SELECT * FROM runs WHERE id = :id;

-- name: find_run_ids
SELECT id FROM runs WHERE id >= :low AND id <= :high ORDER BY id LIMIT :limit;

-- name: get_steps
SELECT * FROM step_runs WHERE run_id = :run_id ORDER BY position;

-- name: list_runs
SELECT * FROM runs
WHERE (:status IS NULL OR status = :status)
  AND (:workflow IS NULL OR workflow_name = :workflow)
ORDER BY created_at DESC, id DESC
LIMIT :limit;

-- name: run_events
SELECT * FROM events WHERE run_id = :run_id ORDER BY id;

-- name: lock_runs
SELECT id, status FROM runs WHERE id IN (SELECT value FROM json_each(:ids)) ORDER BY id;

-- name: lock_runs_nowait
SELECT id, status FROM runs WHERE id IN (SELECT value FROM json_each(:ids)) ORDER BY id;

-- name: claim_queue_steps
UPDATE step_runs
SET status = 'running', attempt = attempt + 1, worker_id = :worker,
    lease_expires_at = :now + :lease, started_at = :now, finished_at = NULL
WHERE status = 'queued' AND id IN (
    SELECT id FROM step_runs
    WHERE status = 'queued' AND queue = :queue
      AND task IN (SELECT value FROM json_each(:tasks))
      AND available_at <= :now
    ORDER BY priority DESC, id
    LIMIT :limit)
RETURNING id, run_id, step_id, task, attempt, max_attempts, retry, timeout, inputs, priority;

-- The best `limit` steps of each queue served (each found through the claim
-- index), then the best `limit` of those.
-- name: claim_steps
UPDATE step_runs
SET status = 'running', attempt = attempt + 1, worker_id = :worker,
    lease_expires_at = :now + :lease, started_at = :now, finished_at = NULL
WHERE status = 'queued' AND id IN (
    SELECT s.id FROM json_each(:queues) AS q, step_runs AS s
    WHERE s.id IN (
        SELECT c.id FROM step_runs AS c
        WHERE c.status = 'queued' AND c.queue = q.value
          AND c.task IN (SELECT value FROM json_each(:tasks))
          AND c.available_at <= :now
        ORDER BY c.priority DESC, c.id
        LIMIT :limit)
    ORDER BY s.priority DESC, s.id
    LIMIT :limit)
RETURNING id, run_id, step_id, task, attempt, max_attempts, retry, timeout, inputs, priority;

-- name: claim_tree_steps
UPDATE step_runs
SET status = 'running', attempt = attempt + 1, worker_id = :worker,
    lease_expires_at = :now + :lease, started_at = :now, finished_at = NULL
WHERE status = 'queued' AND id IN (
    SELECT id FROM step_runs
    WHERE status = 'queued' AND root_run_id = :root
      AND task IN (SELECT value FROM json_each(:tasks))
      AND (:queues IS NULL OR queue IN (SELECT value FROM json_each(:queues)))
      AND available_at <= :now
    ORDER BY priority DESC, id
    LIMIT :limit)
RETURNING id, run_id, step_id, task, attempt, max_attempts, retry, timeout, inputs, priority;

-- name: start_runs
UPDATE runs SET status = 'running', started_at = :now, updated_at = :now
WHERE id IN (SELECT value FROM json_each(:ids)) AND status = 'pending'
RETURNING id;

-- name: run_contexts
SELECT id, workflow_name, workflow_version, spec_hash, params, tags, created_by,
       correlation_id, created_at
FROM runs WHERE id IN (SELECT value FROM json_each(:ids));

-- name: step_outputs
SELECT step_id, output FROM step_runs
WHERE run_id = :run_id AND step_id IN (SELECT value FROM json_each(:step_ids));

-- name: complete_step
UPDATE step_runs
SET status = 'completed', output = :output, inputs = :inputs, error = NULL,
    finished_at = :now, lease_expires_at = NULL
WHERE id = :id AND attempt = :attempt AND status = 'running';

-- name: release_successors
UPDATE step_runs
SET deps_remaining = deps_remaining - 1,
    status = CASE WHEN deps_remaining = 1 THEN 'queued' ELSE status END,
    queued_at = CASE WHEN deps_remaining = 1 THEN :now ELSE queued_at END,
    available_at = :now
WHERE run_id = :run_id AND step_id IN (SELECT value FROM json_each(:step_ids))
  AND status = 'waiting'
RETURNING step_id, status;

-- name: count_done
UPDATE runs SET steps_done = steps_done + :n, updated_at = :now
WHERE id = :run_id
RETURNING status, steps_done, steps_total;

-- name: finish_run
UPDATE runs
SET status = :status, outputs = :outputs, error = :error, finished_at = :now, updated_at = :now
WHERE id = :run_id AND status IN ('pending', 'running')
  AND :status IN ('completed', 'failed', 'cancelled')
RETURNING id;

-- name: running_step
SELECT id, run_id, step_id, attempt, max_attempts, retry, worker_id, failures, lost, max_lost
FROM step_runs WHERE id = :id AND attempt = :attempt AND status = 'running';

-- name: retry_step
UPDATE step_runs
SET status = 'queued', available_at = :now + :delay, queued_at = :now, failures = :failures,
    error = :error, inputs = COALESCE(:inputs, inputs), worker_id = NULL, lease_expires_at = NULL,
    history = json_insert(history, '$[#]', json_object(
        'attempt', attempt, 'status', 'failed', 'worker', worker_id,
        'started_at', started_at, 'finished_at', :now, 'error', json(:error)))
WHERE id = :id AND attempt = :attempt AND status = 'running';

-- name: fail_step
UPDATE step_runs
SET status = 'failed', error = :error, inputs = COALESCE(:inputs, inputs), finished_at = :now,
    failures = :failures, lost = :lost, lease_expires_at = NULL
WHERE id = :id AND attempt = :attempt AND status = 'running';

-- name: cancel_unstarted
UPDATE step_runs SET status = 'cancelled', finished_at = :now
WHERE run_id = :run_id AND status IN ('waiting', 'queued')
RETURNING step_id;

-- name: expired_steps
SELECT id, run_id, attempt FROM step_runs
WHERE status = 'running' AND lease_expires_at < :now
ORDER BY lease_expires_at
LIMIT :limit;

-- name: expired_step
SELECT id, run_id, step_id, attempt, worker_id, failures, lost, max_lost FROM step_runs
WHERE id = :id AND attempt = :attempt AND status = 'running' AND lease_expires_at < :now;

-- name: lose_step
UPDATE step_runs
SET status = 'queued', available_at = :now, queued_at = :now, lost = :lost,
    worker_id = NULL, lease_expires_at = NULL,
    history = json_insert(history, '$[#]', json_object(
        'attempt', attempt, 'status', 'lost', 'worker', worker_id,
        'started_at', started_at, 'finished_at', :now, 'error', json(:error)))
WHERE id = :id AND attempt = :attempt AND status = 'running';

-- name: abandon_step
UPDATE step_runs
SET status = 'cancelled', error = :error, finished_at = :now, lost = :lost,
    lease_expires_at = NULL
WHERE id = :id AND attempt = :attempt AND status = 'running';

-- name: release_step
UPDATE step_runs
SET status = 'queued', available_at = :now, queued_at = :now,
    worker_id = NULL, lease_expires_at = NULL,
    history = json_insert(history, '$[#]', json_object(
        'attempt', attempt, 'status', 'released', 'worker', worker_id,
        'started_at', started_at, 'finished_at', :now))
WHERE id = :id AND attempt = :attempt AND status = 'running' AND worker_id = :worker;

-- name: extend_leases
UPDATE step_runs SET lease_expires_at = :now + :lease
WHERE worker_id = :worker AND status = 'running'
  AND id IN (SELECT value FROM json_each(:ids));

-- name: upsert_worker
INSERT INTO workers (id, host, pid, queues, tasks, root_run_id, concurrency, started_at,
                     last_seen_at, expires_at)
VALUES (:id, :host, :pid, :queues, :tasks, :root_run_id, :concurrency, :now, :now,
        :now + :lease)
ON CONFLICT (id) DO UPDATE SET
    queues = excluded.queues, tasks = excluded.tasks, concurrency = excluded.concurrency,
    last_seen_at = excluded.last_seen_at, expires_at = excluded.expires_at;

-- name: touch_worker
UPDATE workers SET last_seen_at = :now, expires_at = :now + :lease WHERE id = :id;

-- name: delete_worker
DELETE FROM workers WHERE id = :id;

-- name: live_workers
SELECT * FROM workers WHERE expires_at > :now ORDER BY started_at, id;

-- name: prune_workers
DELETE FROM workers WHERE expires_at < :now - 86400;
