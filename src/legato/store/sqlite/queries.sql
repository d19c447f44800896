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

-- A workflow named by a sub-workflow step: the newest deployed definition
-- (of the version, if given), else the newest spec a run stored. A spec with
-- no steps stands for a workflow tracked from outside: never one to start.
-- name: newest_spec
SELECT spec FROM (
    SELECT s.spec, 0 AS stored, d.deployed_at AS at, d.seq
    FROM definitions AS d JOIN workflow_specs AS s ON s.hash = d.hash
    WHERE d.name = :name AND (:version IS NULL OR d.version = :version)
    UNION ALL
    SELECT spec, 1, created_at, 0 FROM workflow_specs
    WHERE name = :name AND (:version IS NULL OR version = :version)
      AND json_array_length(spec, '$.steps') > 0
)
ORDER BY stored, at DESC, seq DESC
LIMIT 1;

-- name: insert_definition
INSERT INTO definitions (name, version, hash, source, deployed_at, deployed_by, seq)
VALUES (:name, :version, :hash, :source, :now, :deployed_by,
        (SELECT COALESCE(MAX(seq), 0) + 1 FROM definitions))
ON CONFLICT (name, version) DO NOTHING
RETURNING hash;

-- name: definition_hash
SELECT hash FROM definitions WHERE name = :name AND version = :version;

-- name: list_definitions
SELECT name, version, hash, source, deployed_at, deployed_by FROM definitions
WHERE :name IS NULL OR name = :name
ORDER BY name, deployed_at DESC, seq DESC;

-- name: definition_spec
SELECT s.spec FROM definitions AS d JOIN workflow_specs AS s ON s.hash = d.hash
WHERE d.name = :name AND (:version IS NULL OR d.version = :version)
ORDER BY d.deployed_at DESC, d.seq DESC
LIMIT 1;

-- name: insert_run
INSERT INTO runs (id, workflow_name, workflow_version, spec_hash, status, params, tags,
                  created_by, correlation_id, idempotency_key, parent_run_id, parent_step,
                  root_run_id, task_defaults, logical_date, kind, workflow_hash,
                  created_at, updated_at)
VALUES (:id, :workflow_name, :workflow_version, :spec_hash, 'pending', :params, :tags,
        :created_by, :correlation_id, :idempotency_key, :parent_run_id, :parent_step,
        :root_run_id, :task_defaults, COALESCE(:logical_date, :now), :kind, :workflow_hash,
        :now, :now)
ON CONFLICT (idempotency_key) DO NOTHING
RETURNING id, created_at, logical_date;

-- Runs of one batch in one statement (`rows` a JSON array of objects); a run
-- whose idempotency key is taken is left out of RETURNING. (`WHERE true`: an
-- upsert after INSERT ... SELECT needs a WHERE to parse.)
-- name: insert_runs
INSERT INTO runs (id, workflow_name, workflow_version, spec_hash, status, params, tags,
                  created_by, correlation_id, idempotency_key, parent_run_id, parent_step,
                  root_run_id, task_defaults, logical_date, kind, workflow_hash,
                  created_at, updated_at)
SELECT json_extract(value, '$.id'), json_extract(value, '$.workflow_name'), json_extract(value, '$.workflow_version'),
       json_extract(value, '$.spec_hash'), 'pending', json_extract(value, '$.params'), json_extract(value, '$.tags'),
       json_extract(value, '$.created_by'), json_extract(value, '$.correlation_id'), json_extract(value, '$.idempotency_key'),
       json_extract(value, '$.parent_run_id'), json_extract(value, '$.parent_step'), json_extract(value, '$.root_run_id'),
       json_extract(value, '$.task_defaults'), COALESCE(json_extract(value, '$.logical_date'), :now),
       json_extract(value, '$.kind'), json_extract(value, '$.workflow_hash'), :now, :now
FROM json_each(:rows) WHERE true ORDER BY key
ON CONFLICT (idempotency_key) DO NOTHING
RETURNING id, created_at, logical_date;

-- name: run_by_idempotency_key
SELECT id, workflow_name, params FROM runs WHERE idempotency_key = :key;

-- New step rows, any number in one statement (Tx.insert_rows repeats the row).
-- name: insert_steps
INSERT INTO step_runs (run_id, root_run_id, key, step_id, scope, kind, idx, item, task, position,
                       status, deps_remaining, queue_on_release, max_attempts, retry, timeout,
                       queue, priority, max_lost, schedule_timeout, heartbeat_timeout,
                       run_attempt, available_at, queued_at, stage)
VALUES (:run_id, :root_run_id, :key, :step_id, :scope, :kind, :idx, :item, :task, :position,
        :status, :deps_remaining, :queue_on_release, :max_attempts, :retry, :timeout,
        :queue, :priority, :max_lost, :schedule_timeout, :heartbeat_timeout, :run_attempt, :now,
        CASE WHEN :status = 'queued' THEN :now END, :stage);

-- name: insert_counter
INSERT INTO scope_counters (run_id, scope, shard, remaining)
VALUES (:run_id, :scope, :shard, :remaining);

-- A transaction's events in one statement, in the order given (Tx.insert_rows
-- repeats the row).
-- name: insert_events
INSERT INTO events (run_id, step_id, attempt, type, at, actor, details)
VALUES (:run_id, :step_id, :attempt, :type, :now, :actor, :details);

-- name: get_run
SELECT * FROM runs WHERE id = :id;

-- name: tagged_runs
-- Runs carrying a tag (a failure handler's link to the run it handles), newest first.
SELECT run_id FROM run_tags WHERE key = :key AND value = :value
ORDER BY created_at DESC, run_id DESC
LIMIT :limit;

-- name: find_run_ids
SELECT id FROM runs WHERE id >= :low AND id <= :high ORDER BY id LIMIT :limit;

-- name: get_steps
SELECT * FROM step_runs WHERE run_id = :run_id ORDER BY position, id;

-- name: list_runs
SELECT * FROM runs
WHERE (:status IS NULL OR status = :status)
  AND (:workflow IS NULL OR workflow_name = :workflow)
ORDER BY created_at DESC, id DESC
LIMIT :limit;

-- name: step_counts
SELECT run_id, COUNT(*) AS total,
       SUM(CASE WHEN status IN ('completed', 'skipped', 'failed', 'cancelled') THEN 1 ELSE 0 END)
           AS done,
       SUM(CASE WHEN kind = 'task' THEN 1 ELSE 0 END) AS tasks
FROM step_runs
WHERE run_id IN (SELECT value FROM json_each(:ids)) AND kind NOT IN ('item', 'iteration')
GROUP BY run_id;

-- name: run_events
SELECT * FROM events WHERE run_id = :run_id ORDER BY id;

-- name: child_runs
SELECT id FROM runs
WHERE parent_run_id = :run_id AND status IN ('pending', 'running', 'paused')
ORDER BY id;

-- name: lock_runs
SELECT id, status, error IS NOT NULL AS failing, attempt FROM runs WHERE id IN (SELECT value FROM json_each(:ids)) ORDER BY id;

-- name: lock_runs_nowait
SELECT id, status, error IS NOT NULL AS failing, attempt FROM runs WHERE id IN (SELECT value FROM json_each(:ids)) ORDER BY id;

-- name: lock_run_or_fail
SELECT id, status, error IS NOT NULL AS failing, attempt FROM runs WHERE id = :id;

-- name: lock_runs_or_fail
SELECT id, status, error IS NOT NULL AS failing, attempt FROM runs
WHERE id IN (SELECT value FROM json_each(:ids)) ORDER BY id;

-- name: run_variables
SELECT variables FROM runs WHERE id = :id;

-- name: set_variables
UPDATE runs SET variables = :variables, updated_at = :now WHERE id = :id;

-- Fragments (`{{name}}` in a query, written in where the file is read).
--
-- Room in a candidate step's flow-limit slot (`c`, a step_runs row): its
-- running attempts under its concurrency, a start left in its rate window.
-- fragment: flow_room
AND (c.flow_key IS NULL OR (
    (c.flow_concurrency IS NULL
     OR (SELECT count(*) FROM step_runs AS f
         WHERE f.flow_key = c.flow_key AND f.status = 'running')
        < c.flow_concurrency)
    AND (c.flow_rate IS NULL
     OR NOT EXISTS (SELECT 1 FROM flow_windows AS w
                    WHERE w.key = c.flow_key AND w.started >= c.flow_rate
                      AND w.window_start > :now - c.flow_window))))

-- The claim's write, for the queued rows the query's `id IN (...)` chose.
-- fragment: claim_update
UPDATE step_runs
SET status = 'running', attempt = attempt + 1, worker_id = :worker,
    lease_expires_at = :now + :lease, started_at = :now, finished_at = NULL,
    last_heartbeat_at = :now
WHERE status = 'queued'

-- What a claim (or an adoption) returns of each attempt.
-- fragment: claimed_columns
id, run_id, key, step_id, scope, kind, idx, item, task, attempt, max_attempts, retry,
          timeout, max_lost, inputs, priority, run_attempt, stage, queued_at, flow_key, flow_by,
          flow_concurrency, flow_rate, flow_window, heartbeat_timeout

-- name: claim_queue_steps
{{claim_update}} AND id IN (
    SELECT c.id FROM step_runs AS c
    WHERE status = 'queued' AND held = 0 AND queue = :queue
      AND task IN (SELECT value FROM json_each(:tasks))
      AND available_at <= :now
      AND NOT EXISTS (SELECT 1 FROM runs AS r WHERE r.id = c.run_id AND r.status = 'paused')
      {{flow_room}}
    ORDER BY priority DESC, stage DESC, queued_at, id
    LIMIT :limit)
RETURNING {{claimed_columns}};

-- Attempts a worker holds that it does not know it runs: a claim whose commit
-- it never heard of (the connection cut as it committed). Their leases are
-- renewed and the worker runs them as they are, the attempt unchanged.
-- name: adopt_steps
UPDATE step_runs
SET lease_expires_at = :now + :lease
WHERE worker_id = :worker AND status = 'running'
  AND id NOT IN (SELECT value FROM json_each(:known))
RETURNING {{claimed_columns}};

-- The best `limit` steps of each queue served (each found through the claim
-- index), then the best `limit` of those.
-- name: claim_steps
{{claim_update}} AND id IN (
    SELECT s.id FROM json_each(:queues) AS q, step_runs AS s
    WHERE s.id IN (
        SELECT c.id FROM step_runs AS c
        WHERE c.status = 'queued' AND c.held = 0 AND c.queue = q.value
          AND c.task IN (SELECT value FROM json_each(:tasks))
          AND c.available_at <= :now
          AND NOT EXISTS (SELECT 1 FROM runs AS r WHERE r.id = c.run_id AND r.status = 'paused')
          {{flow_room}}
        ORDER BY c.priority DESC, c.stage DESC, c.queued_at, c.id
        LIMIT :limit)
    ORDER BY s.priority DESC, s.stage DESC, s.queued_at, s.id
    LIMIT :limit)
RETURNING {{claimed_columns}};

-- name: claim_tree_steps
{{claim_update}} AND id IN (
    SELECT c.id FROM step_runs AS c
    WHERE status = 'queued' AND held = 0 AND root_run_id = :root
      AND task IN (SELECT value FROM json_each(:tasks))
      AND (:queues IS NULL OR queue IN (SELECT value FROM json_each(:queues)))
      AND available_at <= :now
      AND NOT EXISTS (SELECT 1 FROM runs AS r WHERE r.id = c.run_id AND r.status = 'paused')
      {{flow_room}}
    ORDER BY priority DESC, stage DESC, queued_at, id
    LIMIT :limit)
RETURNING {{claimed_columns}};

-- A task's defaults, filled in by the worker that claims a step of a run
-- started without the task's code.
-- name: fill_policy
UPDATE step_runs
SET retry = :retry, max_attempts = :max_attempts, max_lost = :max_lost,
    timeout = COALESCE(timeout, :timeout),
    heartbeat_timeout = COALESCE(heartbeat_timeout, :heartbeat_timeout)
WHERE id = :id AND retry IS NULL;

-- name: start_runs
UPDATE runs SET status = 'running', started_at = :now, updated_at = :now
WHERE id IN (SELECT value FROM json_each(:ids)) AND status = 'pending'
RETURNING id;

-- name: run_contexts
SELECT id, workflow_name, workflow_version, spec_hash, params, tags, created_by,
       correlation_id, created_at, logical_date, parent_run_id, parent_step, root_run_id,
       task_defaults, attempt
FROM runs WHERE id IN (SELECT value FROM json_each(:ids));

-- name: instances
SELECT id, key, step_id, scope, kind, idx, item, status, output, child_run_id, attempt,
       failures, position, inputs, error
FROM step_runs
WHERE run_id = :run_id AND key IN (SELECT value FROM json_each(:keys));

-- name: scope_items
SELECT key, idx, status, output FROM step_runs
WHERE run_id = :run_id AND scope = :scope AND idx IS NOT NULL
ORDER BY idx;

-- name: complete_step
UPDATE step_runs
SET status = 'completed', output = :output, inputs = :inputs, error = NULL,
    finished_at = :now, lease_expires_at = NULL
WHERE id = :id AND attempt = :attempt AND status = 'running'
RETURNING key, step_id, scope, kind, idx, worker_id;

-- Several attempts completed, in one statement (rows: a JSON array of id, attempt,
-- output, inputs; each id once): each applies only while its attempt is current,
-- as complete_step does; its row comes back with its id.
-- name: complete_steps
UPDATE step_runs
SET status = 'completed', output = r.output, inputs = r.inputs, error = NULL,
    finished_at = :now, lease_expires_at = NULL
FROM (SELECT json_extract(value, '$.id') AS id, json_extract(value, '$.attempt') AS attempt,
             json_extract(value, '$.output') AS output, json_extract(value, '$.inputs') AS inputs
      FROM json_each(:rows)) AS r
WHERE step_runs.id = r.id AND step_runs.attempt = r.attempt AND step_runs.status = 'running'
RETURNING id, key, step_id, scope, kind, idx, worker_id;

-- Dependencies of several steps, of any runs, completed at once (rows: run_id, key
-- and n, the number of this step's dependencies that completed; each step once):
-- release_successors for all of them in one statement.
-- name: release_successors_many
UPDATE step_runs
SET deps_remaining = deps_remaining - r.n,
    status = CASE WHEN deps_remaining = r.n AND deps_failed = 0 AND queue_on_release = 1
                  THEN 'queued' ELSE status END,
    queued_at = CASE WHEN deps_remaining = r.n AND deps_failed = 0 AND queue_on_release = 1
                     THEN :now ELSE queued_at END,
    available_at = CASE WHEN deps_remaining = r.n AND deps_failed = 0 AND queue_on_release = 1
                        THEN :now ELSE available_at END
FROM (SELECT json_extract(value, '$.run_id') AS run_id, json_extract(value, '$.key') AS key,
             json_extract(value, '$.n') AS n
      FROM json_each(:rows)) AS r
WHERE step_runs.run_id = r.run_id AND step_runs.key = r.key AND step_runs.status = 'waiting'
RETURNING run_id, id, key, step_id, scope, kind, idx, deps_remaining, deps_failed, status;

-- One dependency of these steps finished (:failed = 1 when it did not complete).
-- A task with the default condition (queue_on_release) whose last dependency
-- this is, all of them completed, is queued here: no second statement.
-- name: release_successors
UPDATE step_runs
SET deps_remaining = deps_remaining - 1,
    deps_failed = deps_failed + :failed,
    status = CASE WHEN deps_remaining = 1 AND deps_failed + :failed = 0
                       AND queue_on_release = 1
                  THEN 'queued' ELSE status END,
    queued_at = CASE WHEN deps_remaining = 1 AND deps_failed + :failed = 0
                          AND queue_on_release = 1
                     THEN :now ELSE queued_at END,
    available_at = CASE WHEN deps_remaining = 1 AND deps_failed + :failed = 0
                             AND queue_on_release = 1
                        THEN :now ELSE available_at END
WHERE run_id = :run_id AND key IN (SELECT value FROM json_each(:keys)) AND status = 'waiting'
RETURNING run_id, id, key, step_id, scope, kind, idx, deps_remaining, deps_failed, status;

-- name: next_gated_item
SELECT id, key, step_id, scope, kind, idx FROM step_runs
WHERE run_id = :run_id AND scope = :scope AND status = 'waiting' AND deps_remaining > 0
  AND idx IS NOT NULL
ORDER BY idx
LIMIT 1;

-- name: ungate_item
UPDATE step_runs SET deps_remaining = 0
WHERE id = :id AND status = 'waiting' AND deps_remaining = 1;

-- name: queue_instance
UPDATE step_runs SET status = 'queued', queued_at = :now, available_at = :now
WHERE id = :id AND status = 'waiting';

-- name: skip_instance
UPDATE step_runs SET status = 'skipped', error = :error, finished_at = :now
WHERE id = :id AND status = 'waiting'
RETURNING key;

-- name: begin_instance
UPDATE step_runs SET status = 'running', started_at = :now, inputs = :inputs
WHERE id = :id AND status = 'waiting';

-- name: suspend_instance
UPDATE step_runs
SET status = 'suspended', started_at = COALESCE(started_at, :now),
    wake_at = COALESCE(:wake_at, :now + :delay),
    waiting_for = :waiting_for, child_run_id = :child_run_id, inputs = COALESCE(:inputs, inputs),
    attempt = attempt + :new_attempt, failures = failures + :failed
WHERE id = :id AND status IN ('waiting', 'suspended');

-- name: complete_instance
UPDATE step_runs
SET status = 'completed', output = :output, error = NULL, finished_at = :now,
    started_at = COALESCE(started_at, :now), wake_at = NULL,
    inputs = COALESCE(:inputs, inputs)
WHERE id = :id AND status IN ('waiting', 'running', 'suspended')
RETURNING key, step_id, scope, kind, idx;

-- name: fail_instance
UPDATE step_runs
SET status = 'failed', error = :error, finished_at = :now, wake_at = NULL,
    started_at = COALESCE(started_at, :now), failures = failures + :failed,
    inputs = COALESCE(:inputs, inputs)
WHERE id = :id AND status IN ('waiting', 'running', 'suspended')
RETURNING key, step_id, scope, kind, idx;

-- name: decrement_counter
UPDATE scope_counters SET remaining = remaining - :count
WHERE run_id = :run_id AND scope = :scope AND shard = :shard
RETURNING remaining;

-- Several counters counted down at once (rows: run_id, scope, shard, count; each
-- counter once).
-- name: decrement_counters
UPDATE scope_counters SET remaining = remaining - r.count
FROM (SELECT json_extract(value, '$.run_id') AS run_id, json_extract(value, '$.scope') AS scope,
             json_extract(value, '$.shard') AS shard, json_extract(value, '$.count') AS count
      FROM json_each(:rows)) AS r
WHERE scope_counters.run_id = r.run_id AND scope_counters.scope = r.scope
  AND scope_counters.shard = r.shard
RETURNING run_id, scope, shard, remaining;

-- name: counter_shards
SELECT remaining AS shards FROM scope_counters
WHERE run_id = :run_id AND scope = :scope AND shard = -1;

-- name: latch_counter
SELECT remaining FROM scope_counters WHERE run_id = :run_id AND scope = :scope AND shard = -1;

-- name: counter_remaining
SELECT COALESCE(SUM(remaining), 0) AS remaining FROM scope_counters
WHERE run_id = :run_id AND scope = :scope AND shard >= 0;

-- name: finish_run
UPDATE runs
SET status = :status, outputs = :outputs, error = :error, finished_at = :now, updated_at = :now
WHERE id = :run_id AND status IN ('pending', 'running', 'paused')
  AND :status IN ('completed', 'failed', 'cancelled')
RETURNING id, parent_run_id, parent_step;

-- Top-level runs whose last step completed, finished in one statement (`rows` a
-- JSON array of {id, outputs}); each row is held by the transaction and was
-- found unfinished, which the status guard checks again. Each run is found by
-- its key (`ids`; `+status` keeps the planner off the status index, which
-- would read every running run).
-- name: complete_runs
UPDATE runs
SET status = 'completed',
    outputs = (SELECT json_extract(value, '$.outputs') FROM json_each(:rows)
               WHERE json_extract(value, '$.id') = runs.id),
    error = NULL, finished_at = :now, updated_at = :now
WHERE id IN (SELECT value FROM json_each(:ids))
  AND +status IN ('pending', 'running', 'paused')
RETURNING id;

-- name: running_step
SELECT id, run_id, key, step_id, scope, kind, idx, attempt, max_attempts, retry, worker_id,
       failures, lost, max_lost, stop_requested
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
WHERE id = :id AND attempt = :attempt AND status = 'running'
RETURNING key, step_id, scope, kind, idx;

-- name: cancel_unstarted
UPDATE step_runs SET status = 'cancelled', finished_at = :now, wake_at = NULL
WHERE run_id = :run_id
  AND (status IN ('waiting', 'queued', 'suspended') OR (status = 'running' AND kind <> 'task'))
RETURNING key, child_run_id;

-- A step failed while steps that react to failures are still to run: the run
-- ends failed with this error once they have.
-- name: mark_run_failing
UPDATE runs SET error = :error, updated_at = :now
WHERE id = :id AND status IN ('pending', 'running') AND error IS NULL;

-- name: run_error
SELECT error FROM runs WHERE id = :id;

-- name: mark_instance_failing
UPDATE step_runs SET error = :error WHERE id = :id AND status = 'running' AND error IS NULL;

-- The unfinished steps of one scope instance, in the order they are listed.
-- name: scope_members
SELECT id, key, step_id, scope, kind, idx, status, child_run_id FROM step_runs
WHERE run_id = :run_id AND scope = :scope
  AND status IN ('waiting', 'queued', 'suspended', 'running')
ORDER BY position, id;

-- Not started, or a compound no worker holds (a map, loop, switch, item, iteration).
-- name: cancel_instance
UPDATE step_runs SET status = 'cancelled', finished_at = :now, wake_at = NULL
WHERE id = :id
  AND (status IN ('waiting', 'queued', 'suspended') OR (status = 'running' AND kind <> 'task'))
RETURNING key, child_run_id;

-- Every instance inside a scope, at any depth (its rows' scopes chain up to it).
-- name: cancel_scope
WITH RECURSIVE inside (key) AS (
    SELECT key FROM step_runs WHERE run_id = :run_id AND scope = :scope
    UNION
    SELECT s.key FROM step_runs AS s JOIN inside ON s.scope = inside.key
    WHERE s.run_id = :run_id)
UPDATE step_runs SET status = 'cancelled', finished_at = :now, wake_at = NULL
WHERE run_id = :run_id AND key IN (SELECT key FROM inside)
  AND (status IN ('waiting', 'queued', 'suspended') OR (status = 'running' AND kind <> 'task'))
RETURNING key, child_run_id;

-- name: expired_steps
SELECT id, run_id, attempt FROM step_runs
WHERE status = 'running' AND lease_expires_at < :now
ORDER BY lease_expires_at
LIMIT :limit;

-- name: expired_step
SELECT id, run_id, key, step_id, scope, kind, idx, attempt, worker_id, failures, lost, max_lost
FROM step_runs
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
  AND id IN (SELECT value FROM json_each(:ids))
RETURNING id, stop_requested;

-- What a task reported through its context, written by its worker's next
-- heartbeat or report (NULL keeps what was there).
-- name: write_progress
UPDATE step_runs
SET progress = COALESCE(:progress, progress),
    heartbeat_details = COALESCE(:details, heartbeat_details),
    last_heartbeat_at = :now
WHERE id = :id AND status = 'running';

-- A paused run's timers wait for it to resume.
-- name: due_timers
SELECT id, run_id, key, step_id, scope, kind, idx, waiting_for, attempt, failures, run_attempt
FROM step_runs
WHERE status = 'suspended' AND wake_at <= :now AND (:root IS NULL OR root_run_id = :root)
  AND NOT EXISTS (SELECT 1 FROM runs AS r WHERE r.id = step_runs.run_id AND r.status = 'paused')
ORDER BY wake_at
LIMIT :limit;

-- When the next timer falls due, in seconds from now (NULL: none is set).
-- name: next_timer
SELECT MIN(wake_at) - :now AS due_in FROM step_runs
WHERE status = 'suspended' AND wake_at IS NOT NULL AND (:root IS NULL OR root_run_id = :root)
  AND NOT EXISTS (SELECT 1 FROM runs AS r WHERE r.id = step_runs.run_id AND r.status = 'paused');

-- name: timer_still_due
SELECT id FROM step_runs
WHERE id = :id AND status = 'suspended' AND wake_at <= :now;

-- name: open_channel
INSERT INTO signal_channels (run_id, name) VALUES (:run_id, :name)
ON CONFLICT (run_id, name) DO NOTHING;

-- name: lock_channel
SELECT name FROM signal_channels WHERE run_id = :run_id AND name = :name;

-- name: insert_signal
INSERT INTO signals (run_id, name, payload, sent_at, sent_by)
VALUES (:run_id, :name, :payload, :now, :sent_by)
RETURNING id;

-- name: kept_signal
SELECT id, payload FROM signals
WHERE run_id = :run_id AND name = :name AND consumed_by IS NULL
ORDER BY id
LIMIT 1;

-- name: consume_signal
UPDATE signals SET consumed_by = :key, consumed_at = :now WHERE id = :id AND consumed_by IS NULL;

-- name: waiting_for_signal
SELECT id, key, step_id, scope, kind, idx FROM step_runs
WHERE run_id = :run_id AND status = 'suspended' AND kind = 'wait_for_signal'
  AND waiting_for = :waiting_for
ORDER BY id
LIMIT 1;

-- name: upsert_task_defaults
INSERT INTO task_defaults (task, retry, timeout, queue, priority, max_lost, schedule_timeout,
                           heartbeat_timeout, updated_at)
VALUES (:task, :retry, :timeout, :queue, :priority, :max_lost, :schedule_timeout,
        :heartbeat_timeout, :now)
ON CONFLICT (task) DO UPDATE SET
    retry = excluded.retry, timeout = excluded.timeout, queue = excluded.queue,
    priority = excluded.priority, max_lost = excluded.max_lost,
    schedule_timeout = excluded.schedule_timeout, heartbeat_timeout = excluded.heartbeat_timeout,
    updated_at = excluded.updated_at;

-- name: task_defaults
SELECT task, retry, timeout, queue, priority, max_lost, schedule_timeout, heartbeat_timeout
FROM task_defaults
WHERE task IN (SELECT value FROM json_each(:tasks));

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
-- With the attempts each is running now (the step_runs_worker index).
SELECT w.*,
       (SELECT count(*) FROM step_runs s WHERE s.worker_id = w.id AND s.status = 'running')
           AS running
FROM workers w WHERE w.expires_at > :now ORDER BY w.started_at, w.id;

-- name: prune_workers
DELETE FROM workers WHERE expires_at < :now - 86400;

-- Runs tracked from outside (create_workflow_run) --------------------------------

-- A tracked run's status as its creator reports it, with its result, error,
-- times and task count. `allowed` lists the statuses it may move from (the
-- transition table's, and the target itself while unfinished: an update of
-- the other fields); a run driven by its steps is never touched.
-- name: set_tracked_status
UPDATE runs
SET status = :status,
    outputs = COALESCE(:outputs, outputs),
    error = COALESCE(:error, error),
    started_at = COALESCE(:started_at, started_at,
                          CASE WHEN :status IN ('running', 'paused') THEN :now END),
    finished_at = CASE WHEN :status IN ('completed', 'failed', 'cancelled')
                       THEN COALESCE(:finished_at, :now) END,
    task_count = COALESCE(:task_count, task_count),
    updated_at = :now
WHERE id = :id AND kind = 'external' AND status IN (SELECT value FROM json_each(:allowed))
RETURNING id, status;
-- Retention. Top-level runs that finished before the cutoff, oldest first:
-- each deleted with its tree (its child runs share its root_run_id).
-- name: prune_candidates
SELECT id FROM runs
WHERE parent_run_id IS NULL
  AND finished_at < :now - :older_than
  AND status IN ('completed', 'failed', 'cancelled')
  AND status IN (SELECT value FROM json_each(:statuses))
  AND (:workflow IS NULL OR workflow_name = :workflow)
ORDER BY finished_at
LIMIT :limit;

-- name: prune_children
SELECT id, root_run_id, status FROM runs
WHERE root_run_id IN (SELECT value FROM json_each(:ids)) AND parent_run_id IS NOT NULL
ORDER BY id;

-- Steps, events, signals, counters and tags go with each run (ON DELETE CASCADE).
-- name: delete_child_runs
DELETE FROM runs
WHERE root_run_id IN (SELECT value FROM json_each(:ids)) AND parent_run_id IS NOT NULL
  AND status IN ('completed', 'failed', 'cancelled');

-- name: delete_runs
DELETE FROM runs
WHERE id IN (SELECT value FROM json_each(:ids)) AND parent_run_id IS NULL
  AND status IN ('completed', 'failed', 'cancelled');

-- What a prune would delete: the top-level runs, and their child runs.
-- name: prune_count
SELECT COUNT(*) AS runs, COALESCE(SUM(children), 0) AS child_runs FROM (
    SELECT (SELECT COUNT(*) FROM runs AS c
            WHERE c.root_run_id = r.id AND c.parent_run_id IS NOT NULL) AS children
    FROM runs AS r
    WHERE r.parent_run_id IS NULL
      AND r.finished_at < :now - :older_than
      AND r.status IN ('completed', 'failed', 'cancelled')
      AND r.status IN (SELECT value FROM json_each(:statuses))
      AND (:workflow IS NULL OR r.workflow_name = :workflow)
      AND NOT EXISTS (
          SELECT 1 FROM runs AS c
          WHERE c.root_run_id = r.id AND c.parent_run_id IS NOT NULL
            AND c.status NOT IN ('completed', 'failed', 'cancelled')));

-- A periodic task's turn: taken (a row returned) by at most one caller per
-- interval, however many ask at once.
-- name: claim_maintenance
INSERT INTO maintenance (name, ran_at) VALUES (:name, :now)
ON CONFLICT (name) DO UPDATE SET ran_at = excluded.ran_at
WHERE maintenance.ran_at <= :now - :every
RETURNING name;

-- -- operations on runs (legato.store.operations, legato.store.repair) -------------------

-- name: pause_run
UPDATE runs SET status = 'paused', updated_at = :now
WHERE id = :id AND status IN ('pending', 'running')
RETURNING id;

-- name: resume_run
UPDATE runs SET status = 'running', started_at = COALESCE(started_at, :now), updated_at = :now
WHERE id = :id AND status = 'paused'
RETURNING id;

-- The queued steps of a paused run leave the claim indexes until it resumes.
-- name: hold_steps
UPDATE step_runs SET held = 1 WHERE run_id = :run_id AND status = 'queued' AND held = 0;

-- A step held while its run was paused has been queued since the run resumed
-- (its schedule-to-start timeout counts from then).
-- name: unhold_steps
UPDATE step_runs
SET held = 0, queued_at = CASE WHEN finished_at IS NULL THEN :now ELSE queued_at END
WHERE run_id = :run_id AND held = 1;

-- Ask the workers running these attempts to stop (they learn it by heartbeat).
-- name: request_stop
UPDATE step_runs SET stop_requested = 1
WHERE run_id = :run_id AND status = 'running' AND kind = 'task' AND stop_requested = 0
RETURNING key, attempt;

-- name: clear_stop
UPDATE step_runs SET stop_requested = 0
WHERE run_id = :run_id AND status = 'running' AND stop_requested = 1;

-- A finished run set going again (retried, rerun, restarted): one attempt more,
-- with new params or another spec when given, its variables afresh when it
-- starts from the beginning.
-- name: reopen_run
UPDATE runs
SET status = 'running', outputs = NULL, error = NULL, finished_at = NULL, updated_at = :now,
    attempt = attempt + 1, params = COALESCE(:params, params),
    spec_hash = COALESCE(:spec_hash, spec_hash),
    workflow_version = COALESCE(:version, workflow_version),
    variables = CASE WHEN :fresh THEN '{}' ELSE variables END,
    started_at = CASE WHEN :fresh OR started_at IS NULL THEN :now ELSE started_at END
WHERE id = :id AND status IN ('completed', 'failed', 'cancelled')
RETURNING id, attempt;

-- An attempt that stopped when asked, in a run that has ended: cancelled,
-- whatever it returned kept as its output.
-- name: cancel_attempt
UPDATE step_runs
SET status = 'cancelled', error = :error, output = COALESCE(:output, output),
    inputs = COALESCE(:inputs, inputs), finished_at = :now, lease_expires_at = NULL,
    stop_requested = 0
WHERE id = :id AND attempt = :attempt AND status = 'running'
RETURNING key, step_id, scope, kind, idx;

-- An attempt that stopped when asked, in a run that goes on (paused with
-- stop_now, or set going again): back to the queue, its retries not spent.
-- name: requeue_attempt
UPDATE step_runs
SET status = 'queued', available_at = :now, queued_at = :now, held = :held, stop_requested = 0,
    worker_id = NULL, lease_expires_at = NULL,
    history = json_insert(history, '$[#]', json_object(
        'attempt', attempt, 'status', 'stopped', 'worker', worker_id,
        'started_at', started_at, 'finished_at', :now))
WHERE id = :id AND attempt = :attempt AND status = 'running';

-- A finished instance made to run again: back to waiting (or, for a compound
-- that keeps what its scope holds, running), its last attempt kept in its
-- history, its budgets afresh.
-- name: reset_instance
UPDATE step_runs
SET status = :status, deps_remaining = :deps_remaining, deps_failed = :deps_failed,
    run_attempt = :run_attempt, output = NULL, error = NULL, finished_at = NULL, wake_at = NULL, waiting_for = NULL,
    worker_id = NULL, lease_expires_at = NULL, failures = 0, lost = 0, stop_requested = 0,
    held = 0, progress = NULL, heartbeat_details = NULL,
    inputs = CASE WHEN :keep_inputs THEN inputs END,
    started_at = CASE WHEN :status = 'running' THEN started_at END,
    history = CASE WHEN kind = 'task' AND attempt > 0 THEN json_insert(history, '$[#]',
        json_object('attempt', attempt, 'status', status, 'worker', worker_id,
                    'started_at', started_at, 'finished_at', finished_at,
                    'error', json(error)))
        ELSE history END
WHERE id = :id AND status IN ('completed', 'failed', 'skipped', 'cancelled')
  AND :status IN ('waiting', 'running');

-- A step marked done by request with the output given (Conductor's skip).
-- name: skip_step
UPDATE step_runs
SET status = 'completed', output = :output, error = NULL, finished_at = :now, wake_at = NULL,
    held = 0, started_at = COALESCE(started_at, :now), lease_expires_at = NULL,
    history = CASE WHEN status = 'failed' AND kind = 'task' AND attempt > 0 THEN
        json_insert(history, '$[#]', json_object(
            'attempt', attempt, 'status', status, 'worker', worker_id,
            'started_at', started_at, 'finished_at', finished_at, 'error', json(error)))
        ELSE history END
WHERE id = :id AND status IN ('waiting', 'queued', 'suspended', 'failed')
RETURNING key, step_id, scope, kind, idx, child_run_id;

-- name: delete_instances
DELETE FROM step_runs WHERE run_id = :run_id AND key IN (SELECT value FROM json_each(:keys));

-- name: delete_counters
DELETE FROM scope_counters
WHERE run_id = :run_id AND scope IN (SELECT value FROM json_each(:scopes));

-- name: delete_run_steps
DELETE FROM step_runs WHERE run_id = :run_id;

-- name: delete_run_counters
DELETE FROM scope_counters WHERE run_id = :run_id;

-- name: set_counter
UPDATE scope_counters SET remaining = :remaining
WHERE run_id = :run_id AND scope = :scope AND shard = :shard;

-- A line a task wrote during an attempt (store/logs.py); none for a step run
-- that no longer exists, none twice.
-- name: insert_log
INSERT INTO step_logs (run_id, step_run_id, attempt, seq, at, level, logger, message)
SELECT run_id, id, :attempt, :seq, :at, :level, :logger, :message
FROM step_runs WHERE id = :step_run_id
ON CONFLICT DO NOTHING;

-- name: run_logs
SELECT l.id, l.run_id, s.step_id, l.attempt, l.seq, l.at, l.level, l.logger, l.message
FROM step_logs AS l JOIN step_runs AS s ON s.id = l.step_run_id
WHERE l.run_id = :run_id AND l.id > :after AND (:attempt IS NULL OR l.attempt = :attempt)
ORDER BY l.id
LIMIT :limit;

-- name: find_step
SELECT id FROM step_runs WHERE run_id = :run_id AND step_id = :step_id;

-- name: step_logs
SELECT l.id, l.run_id, :step_id AS step_id, l.attempt, l.seq, l.at, l.level, l.logger, l.message
FROM step_logs AS l
WHERE l.step_run_id = :step_run_id AND l.id > :after
  AND (:attempt IS NULL OR l.attempt = :attempt)
ORDER BY l.id
LIMIT :limit;

-- The lines of the runs of whole trees a prune deletes (before their rows).
-- name: delete_tree_logs
DELETE FROM step_logs
WHERE run_id IN (SELECT id FROM runs
                 WHERE (id IN (SELECT value FROM json_each(:ids)) AND parent_run_id IS NULL)
                    OR (root_run_id IN (SELECT value FROM json_each(:ids))
                        AND parent_run_id IS NOT NULL));

-- Flow control (legato/store/limits.py). A step's limits, set when its row
-- is made or first claimed.
-- name: mark_flow
UPDATE step_runs
SET flow_key = :flow_key, flow_by = :flow_by, flow_concurrency = :concurrency,
    flow_rate = :rate, flow_window = :window
WHERE run_id = :run_id AND key = :key;

-- The slot's row, made on first use. On SQLite the one writer serialises
-- claimers; on PostgreSQL the row lock does.
-- Slots whose last window (if they have a rate) ended over an hour ago: a slot
-- with no row is a fresh window, made again on next use.
-- name: prune_flow_windows
DELETE FROM flow_windows WHERE key IN (
    SELECT key FROM flow_windows
    WHERE window_start + COALESCE(span, 0) < :now - 3600
    LIMIT :limit
);

-- name: flow_lock
INSERT INTO flow_windows (key, window_start, started) VALUES (:flow_key, :now, 0)
ON CONFLICT (key) DO NOTHING;

-- Take a slot for a claimed attempt (already running, its flow_key set):
-- its slot's running attempts, itself counted (not the attempts this claim
-- has yet to decide on), within the limit, and a start
-- left in the window (a window that has passed opens anew now).
-- name: flow_take
UPDATE flow_windows
SET window_start = CASE WHEN :rate IS NULL THEN window_start
                        WHEN window_start <= :now - :window THEN :now
                        ELSE window_start END,
    started = CASE WHEN :rate IS NULL THEN started
                   WHEN window_start <= :now - :window THEN 1
                   ELSE started + 1 END,
    rate = :rate, span = :window
WHERE key = :flow_key
  AND (:concurrency IS NULL
       OR (SELECT count(*) FROM step_runs
           WHERE flow_key = :flow_key AND status = 'running'
             AND id NOT IN (SELECT value FROM json_each(:undecided))) <= :concurrency)
  AND (:rate IS NULL OR window_start <= :now - :window OR started < :rate)
RETURNING key;

-- A claimed attempt its slot has no room for goes back to the queue as it
-- was, its slot now known (so claims pass it over until there is room).
-- name: unclaim_step
UPDATE step_runs
SET status = 'queued', attempt = attempt - 1, worker_id = NULL, lease_expires_at = NULL,
    started_at = NULL, flow_key = :flow_key
WHERE id = :id AND attempt = :attempt AND status = 'running';

-- When the soonest full window opens (seconds from now).
-- name: flow_next_window
SELECT MIN(window_start + span) - :now AS due_in FROM flow_windows
WHERE started >= rate AND window_start > :now - span;

-- Queued steps that no worker claimed within their schedule-to-start timeout
-- (counted from when they became claimable; a paused run's wait). Candidates
-- only: each is locked, with its run, before it is touched.
-- name: unclaimed_steps
SELECT id, run_id, attempt FROM step_runs AS s
WHERE status = 'queued' AND schedule_timeout IS NOT NULL AND held = 0
  AND MAX(queued_at, available_at) + schedule_timeout < :now
  AND NOT EXISTS (SELECT 1 FROM runs AS r WHERE r.id = s.run_id AND r.status = 'paused')
ORDER BY available_at
LIMIT :limit;

-- name: unclaimed_step
SELECT id, run_id, key, step_id, scope, kind, idx, attempt, max_attempts, retry, failures, lost,
       schedule_timeout, :now - MAX(queued_at, available_at) AS waited
FROM step_runs
WHERE id = :id AND attempt = :attempt AND status = 'queued' AND held = 0
  AND MAX(queued_at, available_at) + schedule_timeout < :now;

-- An attempt that never started timed out in the queue, and is queued again:
-- it counts as a failed attempt (it is numbered, recorded and spends a retry).
-- name: retry_unclaimed
UPDATE step_runs
SET attempt = attempt + 1, available_at = :now + :delay, queued_at = :now,
    failures = :failures, error = :error,
    history = json_insert(history, '$[#]', json_object(
        'attempt', attempt + 1, 'status', 'failed', 'worker', NULL, 'started_at', NULL,
        'finished_at', :now, 'error', json(:error)))
WHERE id = :id AND attempt = :attempt AND status = 'queued';

-- name: fail_unclaimed
UPDATE step_runs
SET status = 'failed', attempt = attempt + 1, error = :error, finished_at = :now,
    failures = :failures,
    history = json_insert(history, '$[#]', json_object(
        'attempt', attempt + 1, 'status', 'failed', 'worker', NULL, 'started_at', NULL,
        'finished_at', :now, 'error', json(:error)))
WHERE id = :id AND attempt = :attempt AND status = 'queued'
RETURNING key, step_id, scope, kind, idx;

-- Running attempts whose task has not said it is alive within its heartbeat
-- timeout (its worker may still renew the lease). Candidates only.
-- name: silent_steps
SELECT id, run_id, attempt FROM step_runs
WHERE status = 'running' AND heartbeat_timeout IS NOT NULL
  AND last_heartbeat_at + heartbeat_timeout < :now
ORDER BY last_heartbeat_at
LIMIT :limit;

-- name: silent_step
SELECT id, run_id, key, task, attempt, worker_id, retry, heartbeat_timeout,
       :now - last_heartbeat_at AS silent_for
FROM step_runs
WHERE id = :id AND attempt = :attempt AND status = 'running'
  AND last_heartbeat_at + heartbeat_timeout < :now;
