-- legato queries (PostgreSQL). Each block starts with "-- name: <name>"; the
-- SQLite file defines the same names with the same parameters. Time comes
-- from legato_now(); the :now parameter the SQLite file uses is ignored here.
-- A `{name}` placeholder is a whole number written into the statement as a
-- literal (psycopg's sql.Literal), where the planner must see the value.
--
-- Row locks follow the order set out in legato/store/reporting.py: a
-- transaction that may change a run's own state (fail or finish it, queue a
-- retry, set its variables) holds the run's row (FOR NO KEY UPDATE) before
-- any of its steps' rows, taking it first or, discovered later, only without
-- waiting (NOWAIT) and otherwise starting over with it taken first. Finishing
-- a step takes no lock on its run. Claims and heartbeats take only what they
-- can get without waiting (SKIP LOCKED). Every status write names the statuses
-- it moves from; tests/store/test_transitions.py checks each one against the
-- table in legato/model/states.py.

-- name: insert_spec
INSERT INTO workflow_specs (hash, name, version, spec, created_at)
VALUES (%(hash)s, %(name)s, %(version)s, %(spec)s::json, legato_now())
ON CONFLICT (hash) DO NOTHING;

-- name: get_spec
SELECT spec::text AS spec FROM workflow_specs WHERE hash = %(hash)s;

-- A workflow named by a sub-workflow step: the newest deployed definition
-- (of the version, if given), else the newest spec a run stored. A spec with
-- no steps stands for a workflow tracked from outside: never one to start.
-- name: newest_spec
SELECT spec FROM (
    SELECT s.spec::text AS spec, 0 AS stored, d.deployed_at AS at, d.seq
    FROM definitions AS d JOIN workflow_specs AS s ON s.hash = d.hash
    WHERE d.name = %(name)s AND (%(version)s::text IS NULL OR d.version = %(version)s::text)
    UNION ALL
    SELECT spec::text, 1, created_at, 0 FROM workflow_specs
    WHERE name = %(name)s AND (%(version)s::text IS NULL OR version = %(version)s::text)
      AND json_array_length(spec -> 'steps') > 0
) AS candidates
ORDER BY stored, at DESC, seq DESC
LIMIT 1;

-- name: insert_definition
INSERT INTO definitions (name, version, hash, source, deployed_at, deployed_by)
VALUES (%(name)s, %(version)s, %(hash)s, %(source)s, legato_now(), %(deployed_by)s)
ON CONFLICT (name, version) DO NOTHING
RETURNING hash;

-- name: definition_hash
SELECT hash FROM definitions WHERE name = %(name)s AND version = %(version)s;

-- name: list_definitions
SELECT name, version, hash, source, deployed_at, deployed_by FROM definitions
WHERE %(name)s::text IS NULL OR name = %(name)s::text
ORDER BY name, deployed_at DESC, seq DESC;

-- name: definition_spec
SELECT s.spec::text AS spec
FROM definitions AS d JOIN workflow_specs AS s ON s.hash = d.hash
WHERE d.name = %(name)s AND (%(version)s::text IS NULL OR d.version = %(version)s::text)
ORDER BY d.deployed_at DESC, d.seq DESC
LIMIT 1;

-- name: insert_run
INSERT INTO runs (id, workflow_name, workflow_version, spec_hash, status, params, tags,
                  created_by, correlation_id, idempotency_key, parent_run_id, parent_step,
                  root_run_id, task_defaults, logical_date, kind, workflow_hash,
                  created_at, updated_at)
VALUES (%(id)s, %(workflow_name)s, %(workflow_version)s, %(spec_hash)s, 'pending',
        %(params)s::json, %(tags)s::jsonb, %(created_by)s, %(correlation_id)s,
        %(idempotency_key)s, %(parent_run_id)s, %(parent_step)s, %(root_run_id)s,
        %(task_defaults)s::json,
        COALESCE(to_timestamp(%(logical_date)s::double precision), legato_now()),
        %(kind)s, %(workflow_hash)s, legato_now(), legato_now())
ON CONFLICT (idempotency_key) DO NOTHING
RETURNING id, created_at, logical_date;

-- Runs of one batch in one statement (`rows` a JSON array of objects); a run
-- whose idempotency key another transaction took since is left out of RETURNING.
-- name: insert_runs
INSERT INTO runs (id, workflow_name, workflow_version, spec_hash, status, params, tags,
                  created_by, correlation_id, idempotency_key, parent_run_id, parent_step,
                  root_run_id, task_defaults, logical_date, kind, workflow_hash,
                  created_at, updated_at)
SELECT r.id, r.workflow_name, r.workflow_version, r.spec_hash, 'pending', r.params::json,
       r.tags::jsonb, r.created_by, r.correlation_id, r.idempotency_key, r.parent_run_id,
       r.parent_step, r.root_run_id, r.task_defaults::json,
       COALESCE(to_timestamp(r.logical_date), legato_now()), r.kind, r.workflow_hash,
       legato_now(), legato_now()
FROM json_to_recordset(%(rows)s::json) AS r(
    id uuid, workflow_name text, workflow_version text, spec_hash text, params text, tags text,
    created_by text, correlation_id text, idempotency_key text, parent_run_id uuid,
    parent_step text, root_run_id uuid, task_defaults text, logical_date double precision,
    kind text, workflow_hash text)
ON CONFLICT (idempotency_key) DO NOTHING
RETURNING id, created_at, logical_date;

-- name: run_by_idempotency_key
SELECT id, workflow_name, params FROM runs WHERE idempotency_key = %(key)s;

-- New step rows, any number in one statement: `rows` is a JSON array of objects.
-- name: insert_steps
INSERT INTO step_runs (run_id, root_run_id, key, step_id, scope, kind, idx, item, task, position,
                       status, deps_remaining, queue_on_release, max_attempts, retry, timeout,
                       queue, priority, max_lost, schedule_timeout, heartbeat_timeout,
                       run_attempt, available_at, queued_at, stage)
SELECT r.run_id, r.root_run_id, r.key, r.step_id, r.scope, r.kind, r.idx, r.item::json, r.task,
       r.position, r.status, r.deps_remaining, r.queue_on_release, r.max_attempts,
       r.retry::json, r.timeout, r.queue, r.priority, r.max_lost, r.schedule_timeout,
       r.heartbeat_timeout, r.run_attempt, legato_now(),
       CASE WHEN r.status = 'queued' THEN legato_now() END, r.stage
FROM json_to_recordset(%(rows)s::json) AS r(
    run_id uuid, root_run_id uuid, key text, step_id text, scope text, kind text, idx integer,
    item text, task text, position integer, status text, deps_remaining integer,
    queue_on_release boolean, max_attempts integer, retry text, timeout double precision,
    queue text, priority integer, max_lost integer, schedule_timeout double precision,
    heartbeat_timeout double precision, run_attempt integer, stage integer);

-- name: insert_counter
INSERT INTO scope_counters (run_id, scope, shard, remaining)
VALUES (%(run_id)s, %(scope)s, %(shard)s, %(remaining)s);

-- A transaction's events in one statement, in the order given: `rows` is a JSON
-- array of objects.
-- name: insert_events
INSERT INTO events (run_id, step_id, attempt, type, at, actor, details)
SELECT e.run_id, e.step_id, e.attempt, e.type, legato_now(), e.actor, e.details::json
FROM json_to_recordset(%(rows)s::json)
     AS e(run_id uuid, step_id text, attempt integer, type text, actor text, details text);

-- name: get_run
SELECT * FROM runs WHERE id = %(id)s;

-- name: tagged_runs
-- Runs carrying a tag (a failure handler's link to the run it handles), newest first.
SELECT run_id FROM run_tags WHERE key = %(key)s AND value = %(value)s
ORDER BY created_at DESC, run_id DESC
LIMIT %(limit)s;

-- name: find_run_ids
SELECT id FROM runs WHERE id >= %(low)s::uuid AND id <= %(high)s::uuid ORDER BY id
LIMIT %(limit)s;

-- name: get_steps
SELECT * FROM step_runs WHERE run_id = %(run_id)s ORDER BY position, id;

-- name: list_runs
SELECT * FROM runs
WHERE (%(status)s::text IS NULL OR status = %(status)s::text)
  AND (%(workflow)s::text IS NULL OR workflow_name = %(workflow)s::text)
ORDER BY created_at DESC, id DESC
LIMIT %(limit)s;

-- name: step_counts
SELECT run_id, COUNT(*) AS total,
       COUNT(*) FILTER (WHERE status IN ('completed', 'skipped', 'failed', 'cancelled')) AS done,
       COUNT(*) FILTER (WHERE kind = 'task') AS tasks
FROM step_runs
WHERE run_id = ANY(%(ids)s::uuid[]) AND kind NOT IN ('item', 'iteration')
GROUP BY run_id;

-- name: run_events
SELECT * FROM events WHERE run_id = %(run_id)s ORDER BY id;

-- name: child_runs
SELECT id FROM runs
WHERE parent_run_id = %(run_id)s AND status IN ('pending', 'running', 'paused')
ORDER BY id;

-- NO KEY UPDATE, not UPDATE: inserting an event takes KEY SHARE on its run
-- row (the foreign key), and that must never wait for a run lock.
-- name: lock_runs
SELECT id, status, error IS NOT NULL AS failing, attempt FROM runs WHERE id = ANY(%(ids)s::uuid[]) ORDER BY id FOR NO KEY UPDATE;

-- name: lock_runs_nowait
SELECT id, status, error IS NOT NULL AS failing, attempt FROM runs WHERE id = ANY(%(ids)s::uuid[]) ORDER BY id
FOR NO KEY UPDATE SKIP LOCKED;

-- Taken after step rows: never waits, fails (and the transaction starts over,
-- taking it first) when another transaction holds it.
-- name: lock_run_or_fail
SELECT id, status, error IS NOT NULL AS failing, attempt FROM runs WHERE id = %(id)s FOR NO KEY UPDATE NOWAIT;

-- Several runs found to need their lock mid-way (a batch's completions finish them),
-- taken at once in id order: as lock_run_or_fail, never waits.
-- name: lock_runs_or_fail
SELECT id, status, error IS NOT NULL AS failing, attempt FROM runs
WHERE id = ANY(%(ids)s::uuid[]) ORDER BY id FOR NO KEY UPDATE NOWAIT;

-- name: run_variables
SELECT variables FROM runs WHERE id = %(id)s;

-- name: set_variables
UPDATE runs SET variables = %(variables)s::json, updated_at = legato_now() WHERE id = %(id)s;

-- Fragments (`{{name}}` in a query, written in where the file is read).
--
-- Room in a candidate step's flow-limit slot (`s`, a step_runs row): its
-- running attempts under its concurrency, a start left in its rate window.
-- fragment: flow_room
AND (s.flow_key IS NULL OR (
    (s.flow_concurrency IS NULL
     OR (SELECT count(*) FROM step_runs AS f
         WHERE f.flow_key = s.flow_key AND f.status = 'running')
        < s.flow_concurrency)
    AND (s.flow_rate IS NULL
     OR NOT EXISTS (SELECT 1 FROM flow_windows AS w
                    WHERE w.key = s.flow_key AND w.started >= s.flow_rate
                      AND w.window_start
                          > legato_now() - make_interval(secs => s.flow_window)))))

-- The claim's write, for the rows a query's `picked` chose.
-- fragment: claim_picked
UPDATE step_runs s
SET status = 'running', attempt = s.attempt + 1, worker_id = %(worker)s,
    lease_expires_at = legato_now() + make_interval(secs => %(lease)s),
    started_at = legato_now(), finished_at = NULL, last_heartbeat_at = legato_now()
FROM picked
WHERE s.id = picked.id AND s.status = 'queued'
RETURNING s.id, s.run_id, s.key, s.step_id, s.scope, s.kind, s.idx, s.item, s.task, s.attempt,
          s.max_attempts, s.retry, s.timeout, s.max_lost, s.inputs, s.priority, s.run_attempt,
          s.stage, s.queued_at, s.flow_key, s.flow_by, s.flow_concurrency, s.flow_rate,
          s.flow_window, s.heartbeat_timeout

-- One queue served (the usual worker): its best `limit` steps, through the
-- claim index. `{limit}` is written into the statement as a literal (one
-- prepared statement per batch size): with a LIMIT parameter PostgreSQL's
-- generic plan guesses a tenth of the queued steps, so it would plan the
-- statement afresh on every claim.
-- name: claim_queue_steps
WITH picked AS (
    SELECT s.id FROM step_runs AS s
    WHERE status = 'queued' AND NOT held AND queue = %(queue)s
      AND task = ANY(%(tasks)s::text[])
      AND available_at <= legato_now()
      AND NOT EXISTS (SELECT 1 FROM runs AS r
                      WHERE r.id = s.run_id AND r.status = 'paused')
      {{flow_room}}
    ORDER BY priority DESC, stage DESC, queued_at, id
    LIMIT {limit}
    FOR UPDATE OF s SKIP LOCKED)
{{claim_picked}};

-- Attempts a worker holds that it does not know it runs: a claim whose commit
-- it never heard of (the connection cut as it committed). Their leases are
-- renewed and the worker runs them as they are, the attempt unchanged.
-- name: adopt_steps
UPDATE step_runs
SET lease_expires_at = legato_now() + make_interval(secs => %(lease)s)
WHERE worker_id = %(worker)s AND status = 'running' AND id <> ALL(%(known)s::bigint[])
RETURNING id, run_id, key, step_id, scope, kind, idx, item, task, attempt, max_attempts, retry,
          timeout, max_lost, inputs, priority, run_attempt, stage, queued_at, flow_key, flow_by,
          flow_concurrency, flow_rate, flow_window, heartbeat_timeout;

-- Several queues: the best `limit` steps of each, each queue read through the
-- claim index (an `= ANY(queues)` test would make PostgreSQL sort every
-- queued step), then the best `limit` of those.
-- name: claim_steps
WITH picked AS (
    SELECT c.id FROM unnest(%(queues)s::text[]) AS q(name)
    CROSS JOIN LATERAL (
        SELECT s.id, s.priority, s.stage, s.queued_at FROM step_runs s
        WHERE s.status = 'queued' AND NOT s.held AND s.queue = q.name
          AND s.task = ANY(%(tasks)s::text[])
          AND s.available_at <= legato_now()
          AND NOT EXISTS (SELECT 1 FROM runs AS r WHERE r.id = s.run_id AND r.status = 'paused')
          {{flow_room}}
        ORDER BY s.priority DESC, s.stage DESC, s.queued_at, s.id
        LIMIT {limit}
        FOR UPDATE OF s SKIP LOCKED) AS c
    ORDER BY c.priority DESC, c.stage DESC, c.queued_at, c.id
    LIMIT {limit})
{{claim_picked}};

-- name: claim_tree_steps
WITH picked AS (
    SELECT s.id FROM step_runs AS s
    WHERE status = 'queued' AND NOT held AND root_run_id = %(root)s::uuid
      AND task = ANY(%(tasks)s::text[])
      AND (%(queues)s::text[] IS NULL OR queue = ANY(%(queues)s::text[]))
      AND available_at <= legato_now()
      AND NOT EXISTS (SELECT 1 FROM runs AS r
                      WHERE r.id = s.run_id AND r.status = 'paused')
      {{flow_room}}
    ORDER BY priority DESC, stage DESC, queued_at, id
    LIMIT {limit}
    FOR UPDATE OF s SKIP LOCKED)
{{claim_picked}};

-- A task's defaults, filled in by the worker that claims a step of a run
-- started without the task's code.
-- name: fill_policy
UPDATE step_runs
SET retry = %(retry)s::json, max_attempts = %(max_attempts)s, max_lost = %(max_lost)s,
    timeout = COALESCE(timeout, %(timeout)s),
    heartbeat_timeout = COALESCE(heartbeat_timeout, %(heartbeat_timeout)s)
WHERE id = %(id)s AND retry IS NULL;

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
       correlation_id, created_at, logical_date, parent_run_id, parent_step, root_run_id,
       task_defaults, attempt
FROM runs WHERE id = ANY(%(ids)s::uuid[]);

-- name: instances
SELECT id, key, step_id, scope, kind, idx, item, status, output, child_run_id, attempt,
       failures, position, inputs, error
FROM step_runs
WHERE run_id = %(run_id)s AND key = ANY(%(keys)s::text[]);

-- name: scope_items
SELECT key, idx, status, output FROM step_runs
WHERE run_id = %(run_id)s AND scope = %(scope)s AND idx IS NOT NULL
ORDER BY idx;

-- name: complete_step
UPDATE step_runs
SET status = 'completed', output = %(output)s::json, inputs = %(inputs)s::json, error = NULL,
    finished_at = legato_now(), lease_expires_at = NULL
WHERE id = %(id)s AND attempt = %(attempt)s AND status = 'running'
RETURNING key, step_id, scope, kind, idx, worker_id;

-- Several attempts completed, in one statement (rows: a JSON array of id, attempt,
-- output, inputs; each id once): each applies only while its attempt is current,
-- as complete_step does; its row comes back with its id.
-- name: complete_steps
WITH current AS (
    SELECT t.id, r.output, r.inputs
    FROM json_to_recordset(%(rows)s::json)
        AS r(id bigint, attempt integer, output text, inputs text)
    CROSS JOIN LATERAL (
        SELECT s.id FROM step_runs AS s
        WHERE s.id = r.id AND s.attempt = r.attempt AND s.status = 'running'
        LIMIT 1
    ) AS t
)
UPDATE step_runs AS s
SET status = 'completed', output = c.output::json, inputs = c.inputs::json, error = NULL,
    finished_at = legato_now(), lease_expires_at = NULL
FROM current AS c
WHERE s.id = ANY(ARRAY(SELECT id FROM current)) AND s.id = c.id AND s.status = 'running'
RETURNING s.id, s.key, s.step_id, s.scope, s.kind, s.idx, s.worker_id;

-- Dependencies of several steps, of any runs, completed at once (rows: run_id, key
-- and n, the number of this step's dependencies that completed; each step once):
-- release_successors for all of them in one statement. Each row is found through
-- its key (LIMIT 1 keeps the planner from joining the batch any other way) and
-- locked in the order the rows are given.
-- name: release_successors_many
WITH locked AS (
    SELECT t.id, r.n
    FROM json_to_recordset(%(rows)s::json) AS r(run_id uuid, key text, n integer)
    CROSS JOIN LATERAL (
        SELECT s.id FROM step_runs AS s
        WHERE s.run_id = r.run_id AND s.key = r.key AND s.status = 'waiting'
        LIMIT 1
        FOR UPDATE
    ) AS t
)
UPDATE step_runs AS s
SET deps_remaining = s.deps_remaining - l.n,
    status = CASE WHEN s.deps_remaining = l.n AND s.deps_failed = 0 AND s.queue_on_release
                  THEN 'queued' ELSE s.status END,
    queued_at = CASE WHEN s.deps_remaining = l.n AND s.deps_failed = 0 AND s.queue_on_release
                     THEN legato_now() ELSE s.queued_at END,
    available_at = CASE WHEN s.deps_remaining = l.n AND s.deps_failed = 0 AND s.queue_on_release
                        THEN legato_now() ELSE s.available_at END
FROM locked AS l
WHERE s.id = ANY(ARRAY(SELECT id FROM locked)) AND s.id = l.id AND s.status = 'waiting'
RETURNING s.run_id, s.id, s.key, s.step_id, s.scope, s.kind, s.idx, s.deps_remaining,
          s.deps_failed, s.status;

-- One dependency of these steps finished (failed = 1 when it did not complete).
-- A task with the default condition (queue_on_release) whose last dependency
-- this is, all of them completed, is queued here: no second statement.
-- name: release_successors
UPDATE step_runs
SET deps_remaining = deps_remaining - 1,
    deps_failed = deps_failed + %(failed)s,
    status = CASE WHEN deps_remaining = 1 AND deps_failed + %(failed)s = 0
                       AND queue_on_release
                  THEN 'queued' ELSE status END,
    queued_at = CASE WHEN deps_remaining = 1 AND deps_failed + %(failed)s = 0
                          AND queue_on_release
                     THEN legato_now() ELSE queued_at END,
    available_at = CASE WHEN deps_remaining = 1 AND deps_failed + %(failed)s = 0
                             AND queue_on_release
                        THEN legato_now() ELSE available_at END
WHERE run_id = %(run_id)s AND key = ANY(%(keys)s::text[]) AND status = 'waiting'
RETURNING run_id, id, key, step_id, scope, kind, idx, deps_remaining, deps_failed, status;

-- name: next_gated_item
SELECT id, key, step_id, scope, kind, idx FROM step_runs
WHERE run_id = %(run_id)s AND scope = %(scope)s AND status = 'waiting'
  AND deps_remaining > 0 AND idx IS NOT NULL
ORDER BY idx
LIMIT 1
FOR UPDATE SKIP LOCKED;

-- name: ungate_item
UPDATE step_runs SET deps_remaining = 0
WHERE id = %(id)s AND status = 'waiting' AND deps_remaining = 1;

-- name: queue_instance
UPDATE step_runs SET status = 'queued', queued_at = legato_now(), available_at = legato_now()
WHERE id = %(id)s AND status = 'waiting';

-- name: skip_instance
UPDATE step_runs SET status = 'skipped', error = %(error)s::json, finished_at = legato_now()
WHERE id = %(id)s AND status = 'waiting'
RETURNING key;

-- name: begin_instance
UPDATE step_runs SET status = 'running', started_at = legato_now(), inputs = %(inputs)s::json
WHERE id = %(id)s AND status = 'waiting';

-- name: suspend_instance
UPDATE step_runs
SET status = 'suspended', started_at = COALESCE(started_at, legato_now()),
    wake_at = COALESCE(to_timestamp(%(wake_at)s::double precision),
                       legato_now() + make_interval(secs => %(delay)s::double precision)),
    waiting_for = %(waiting_for)s, child_run_id = %(child_run_id)s,
    inputs = COALESCE(%(inputs)s::json, inputs), attempt = attempt + %(new_attempt)s,
    failures = failures + %(failed)s
WHERE id = %(id)s AND status IN ('waiting', 'suspended');

-- name: complete_instance
UPDATE step_runs
SET status = 'completed', output = %(output)s::json, error = NULL, finished_at = legato_now(),
    started_at = COALESCE(started_at, legato_now()), wake_at = NULL,
    inputs = COALESCE(%(inputs)s::json, inputs)
WHERE id = %(id)s AND status IN ('waiting', 'running', 'suspended')
RETURNING key, step_id, scope, kind, idx;

-- name: fail_instance
UPDATE step_runs
SET status = 'failed', error = %(error)s::json, finished_at = legato_now(), wake_at = NULL,
    started_at = COALESCE(started_at, legato_now()), failures = failures + %(failed)s,
    inputs = COALESCE(%(inputs)s::json, inputs)
WHERE id = %(id)s AND status IN ('waiting', 'running', 'suspended')
RETURNING key, step_id, scope, kind, idx;

-- name: decrement_counter
UPDATE scope_counters SET remaining = remaining - %(count)s
WHERE run_id = %(run_id)s AND scope = %(scope)s AND shard = %(shard)s
RETURNING remaining;

-- Several counters counted down at once (rows: run_id, scope, shard, count; each
-- counter once), each found through its key and locked in the order given (the
-- caller's sorted order, which the one-counter statements follow too). The write
-- finds them by key again (never by ctid: a row another transaction changed
-- while this one waited for it has moved).
-- name: decrement_counters
WITH locked AS (
    SELECT t.run_id, t.scope, t.shard, r.count
    FROM json_to_recordset(%(rows)s::json)
        AS r(run_id uuid, scope text, shard integer, count integer)
    CROSS JOIN LATERAL (
        SELECT c.run_id, c.scope, c.shard FROM scope_counters AS c
        WHERE c.run_id = r.run_id AND c.scope = r.scope AND c.shard = r.shard
        LIMIT 1
        FOR UPDATE
    ) AS t
)
UPDATE scope_counters AS c SET remaining = c.remaining - l.count
FROM locked AS l
WHERE c.run_id = ANY(ARRAY(SELECT run_id FROM locked))
  AND c.scope = ANY(ARRAY(SELECT scope FROM locked))
  AND c.shard = ANY(ARRAY(SELECT shard FROM locked))
  AND c.run_id = l.run_id AND c.scope = l.scope AND c.shard = l.shard
RETURNING c.run_id, c.scope, c.shard, c.remaining;

-- name: counter_shards
SELECT remaining AS shards FROM scope_counters
WHERE run_id = %(run_id)s AND scope = %(scope)s AND shard = -1;

-- The scope's latch: held by whoever brought a shard to zero while it adds
-- the shards up, so that of two finishing the scope's last instances at once
-- the second sees the first's work.
-- name: latch_counter
SELECT remaining FROM scope_counters
WHERE run_id = %(run_id)s AND scope = %(scope)s AND shard = -1
FOR UPDATE;

-- name: counter_remaining
SELECT COALESCE(SUM(remaining), 0) AS remaining FROM scope_counters
WHERE run_id = %(run_id)s AND scope = %(scope)s AND shard >= 0;

-- name: finish_run
UPDATE runs
SET status = %(status)s, outputs = %(outputs)s::json, error = %(error)s::json,
    finished_at = legato_now(), updated_at = legato_now()
WHERE id = %(run_id)s AND status IN ('pending', 'running', 'paused')
  AND %(status)s IN ('completed', 'failed', 'cancelled')
RETURNING id, parent_run_id, parent_step;

-- Top-level runs whose last step completed, finished in one statement (`rows` a
-- JSON array of {id, outputs}, `ids` their ids: each run found by its key, where a
-- join alone would read every running run); each row is held by the transaction
-- and was found unfinished, which the status guard checks again.
-- name: complete_runs
UPDATE runs
SET status = 'completed', outputs = v.outputs::json, error = NULL,
    finished_at = legato_now(), updated_at = legato_now()
FROM json_to_recordset(%(rows)s::json) AS v(id uuid, outputs text)
WHERE runs.id = ANY(%(ids)s::uuid[]) AND runs.id = v.id
  AND runs.status IN ('pending', 'running', 'paused')
RETURNING runs.id;

-- name: running_step
SELECT id, run_id, key, step_id, scope, kind, idx, attempt, max_attempts, retry, worker_id,
       failures, lost, max_lost, stop_requested
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
WHERE id = %(id)s AND attempt = %(attempt)s AND status = 'running'
RETURNING key, step_id, scope, kind, idx;

-- name: cancel_unstarted
UPDATE step_runs SET status = 'cancelled', finished_at = legato_now(), wake_at = NULL
WHERE run_id = %(run_id)s
  AND (status IN ('waiting', 'queued', 'suspended') OR (status = 'running' AND kind <> 'task'))
RETURNING key, child_run_id;

-- A step failed while steps that react to failures are still to run: the run
-- ends failed with this error once they have.
-- name: mark_run_failing
UPDATE runs SET error = %(error)s::json, updated_at = legato_now()
WHERE id = %(id)s AND status IN ('pending', 'running') AND error IS NULL;

-- name: run_error
SELECT error FROM runs WHERE id = %(id)s;

-- name: mark_instance_failing
UPDATE step_runs SET error = %(error)s::json
WHERE id = %(id)s AND status = 'running' AND error IS NULL;

-- The unfinished steps of one scope instance, in the order they are listed.
-- name: scope_members
SELECT id, key, step_id, scope, kind, idx, status, child_run_id FROM step_runs
WHERE run_id = %(run_id)s AND scope = %(scope)s
  AND status IN ('waiting', 'queued', 'suspended', 'running')
ORDER BY position, id;

-- Not started, or a compound no worker holds (a map, loop, switch, item, iteration).
-- name: cancel_instance
UPDATE step_runs SET status = 'cancelled', finished_at = legato_now(), wake_at = NULL
WHERE id = %(id)s
  AND (status IN ('waiting', 'queued', 'suspended') OR (status = 'running' AND kind <> 'task'))
RETURNING key, child_run_id;

-- Every instance inside a scope, at any depth (its rows' scopes chain up to it).
-- name: cancel_scope
WITH RECURSIVE inside (key) AS (
    SELECT key FROM step_runs WHERE run_id = %(run_id)s AND scope = %(scope)s
    UNION
    SELECT s.key FROM step_runs AS s JOIN inside ON s.scope = inside.key
    WHERE s.run_id = %(run_id)s)
UPDATE step_runs SET status = 'cancelled', finished_at = legato_now(), wake_at = NULL
WHERE run_id = %(run_id)s AND key IN (SELECT key FROM inside)
  AND (status IN ('waiting', 'queued', 'suspended') OR (status = 'running' AND kind <> 'task'))
RETURNING key, child_run_id;

-- Candidates only: each is locked, with its run, before it is touched.
-- name: expired_steps
SELECT id, run_id, attempt FROM step_runs
WHERE status = 'running' AND lease_expires_at < legato_now()
ORDER BY lease_expires_at
LIMIT %(limit)s;

-- name: expired_step
SELECT id, run_id, key, step_id, scope, kind, idx, attempt, worker_id, failures, lost, max_lost
FROM step_runs
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
    FOR UPDATE SKIP LOCKED)
RETURNING id, stop_requested;

-- What a task reported through its context, written by its worker's next
-- heartbeat or report (NULL keeps what was there); a row locked elsewhere is
-- skipped, as a heartbeat skips it.
-- name: write_progress
UPDATE step_runs
SET progress = COALESCE(%(progress)s::json, progress),
    heartbeat_details = COALESCE(%(details)s::json, heartbeat_details),
    last_heartbeat_at = legato_now()
WHERE id IN (SELECT id FROM step_runs WHERE id = %(id)s AND status = 'running'
             FOR UPDATE SKIP LOCKED);

-- A paused run's timers wait for it to resume.
-- name: due_timers
SELECT id, run_id, key, step_id, scope, kind, idx, waiting_for, attempt, failures, run_attempt
FROM step_runs
WHERE status = 'suspended' AND wake_at <= legato_now()
  AND (%(root)s::uuid IS NULL OR root_run_id = %(root)s::uuid)
  AND NOT EXISTS (SELECT 1 FROM runs AS r WHERE r.id = step_runs.run_id AND r.status = 'paused')
ORDER BY wake_at
LIMIT %(limit)s
FOR UPDATE OF step_runs SKIP LOCKED;

-- When the next timer falls due, in seconds from now (NULL: none is set).
-- name: next_timer
SELECT EXTRACT(EPOCH FROM MIN(wake_at) - legato_now())::float8 AS due_in FROM step_runs
WHERE status = 'suspended' AND wake_at IS NOT NULL
  AND (%(root)s::uuid IS NULL OR root_run_id = %(root)s::uuid)
  AND NOT EXISTS (SELECT 1 FROM runs AS r WHERE r.id = step_runs.run_id AND r.status = 'paused');

-- name: timer_still_due
SELECT id FROM step_runs
WHERE id = %(id)s AND status = 'suspended' AND wake_at <= legato_now();

-- name: open_channel
INSERT INTO signal_channels (run_id, name) VALUES (%(run_id)s, %(name)s)
ON CONFLICT (run_id, name) DO NOTHING;

-- The rendezvous of a signal and the step waiting for it: whichever comes
-- second sees the first.
-- name: lock_channel
SELECT name FROM signal_channels WHERE run_id = %(run_id)s AND name = %(name)s FOR UPDATE;

-- name: insert_signal
INSERT INTO signals (run_id, name, payload, sent_at, sent_by)
VALUES (%(run_id)s, %(name)s, %(payload)s::json, legato_now(), %(sent_by)s)
RETURNING id;

-- name: kept_signal
SELECT id, payload FROM signals
WHERE run_id = %(run_id)s AND name = %(name)s AND consumed_by IS NULL
ORDER BY id
LIMIT 1
FOR UPDATE;

-- name: consume_signal
UPDATE signals SET consumed_by = %(key)s, consumed_at = legato_now()
WHERE id = %(id)s AND consumed_by IS NULL;

-- name: waiting_for_signal
SELECT id, key, step_id, scope, kind, idx FROM step_runs
WHERE run_id = %(run_id)s AND status = 'suspended' AND kind = 'wait_for_signal'
  AND waiting_for = %(waiting_for)s
ORDER BY id
LIMIT 1
FOR UPDATE;

-- name: upsert_task_defaults
INSERT INTO task_defaults (task, retry, timeout, queue, priority, max_lost, schedule_timeout,
                           heartbeat_timeout, updated_at)
VALUES (%(task)s, %(retry)s::json, %(timeout)s, %(queue)s, %(priority)s, %(max_lost)s,
        %(schedule_timeout)s, %(heartbeat_timeout)s, legato_now())
ON CONFLICT (task) DO UPDATE SET
    retry = excluded.retry, timeout = excluded.timeout, queue = excluded.queue,
    priority = excluded.priority, max_lost = excluded.max_lost,
    schedule_timeout = excluded.schedule_timeout, heartbeat_timeout = excluded.heartbeat_timeout,
    updated_at = excluded.updated_at;

-- name: task_defaults
SELECT task, retry, timeout, queue, priority, max_lost, schedule_timeout, heartbeat_timeout
FROM task_defaults
WHERE task = ANY(%(tasks)s::text[]);

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
-- With the attempts each is running now (the step_runs_worker index).
SELECT w.*,
       (SELECT count(*) FROM step_runs s WHERE s.worker_id = w.id AND s.status = 'running')
           AS running
FROM workers w WHERE w.expires_at > legato_now() ORDER BY w.started_at, w.id;

-- name: prune_workers
DELETE FROM workers WHERE expires_at < legato_now() - interval '1 day';

-- Runs tracked from outside (create_workflow_run) --------------------------------

-- A tracked run's status as its creator reports it, with its result, error,
-- times and task count. `allowed` lists the statuses it may move from (the
-- transition table's, and the target itself while unfinished: an update of
-- the other fields); a run driven by its steps is never touched.
-- name: set_tracked_status
UPDATE runs
SET status = %(status)s,
    outputs = COALESCE(%(outputs)s::json, outputs),
    error = COALESCE(%(error)s::json, error),
    started_at = COALESCE(to_timestamp(%(started_at)s::double precision), started_at,
                          CASE WHEN %(status)s IN ('running', 'paused') THEN legato_now() END),
    finished_at = CASE WHEN %(status)s IN ('completed', 'failed', 'cancelled')
                       THEN COALESCE(to_timestamp(%(finished_at)s::double precision),
                                     legato_now()) END,
    task_count = COALESCE(%(task_count)s, task_count),
    updated_at = legato_now()
WHERE id = %(id)s AND kind = 'external' AND status = ANY(%(allowed)s::text[])
RETURNING id, status;
-- Retention. Top-level runs that finished before the cutoff, oldest first:
-- each deleted with its tree (its child runs share its root_run_id). A row
-- another transaction holds is left for the next prune.
-- name: prune_candidates
SELECT id FROM runs
WHERE parent_run_id IS NULL
  AND finished_at < legato_now() - make_interval(secs => %(older_than)s)
  AND status IN ('completed', 'failed', 'cancelled')
  AND status = ANY(%(statuses)s::text[])
  AND (%(workflow)s::text IS NULL OR workflow_name = %(workflow)s::text)
ORDER BY finished_at
LIMIT {limit}
FOR UPDATE SKIP LOCKED;

-- The child runs of these trees, locked after their roots (children lock after
-- their parents), to see that every one has finished.
-- name: prune_children
SELECT id, root_run_id, status FROM runs
WHERE root_run_id = ANY(%(ids)s::uuid[]) AND parent_run_id IS NOT NULL
ORDER BY id
FOR UPDATE;

-- Steps, events, signals, counters and tags go with each run (ON DELETE CASCADE).
-- name: delete_child_runs
DELETE FROM runs
WHERE root_run_id = ANY(%(ids)s::uuid[]) AND parent_run_id IS NOT NULL
  AND status IN ('completed', 'failed', 'cancelled');

-- name: delete_runs
DELETE FROM runs
WHERE id = ANY(%(ids)s::uuid[]) AND parent_run_id IS NULL
  AND status IN ('completed', 'failed', 'cancelled');

-- What a prune would delete: the top-level runs, and their child runs.
-- name: prune_count
SELECT COUNT(*) AS runs, COALESCE(SUM(c.children), 0) AS child_runs
FROM runs AS r
CROSS JOIN LATERAL (
    SELECT COUNT(*) AS children,
           COUNT(*) FILTER (WHERE status NOT IN ('completed', 'failed', 'cancelled')) AS going
    FROM runs WHERE root_run_id = r.id AND parent_run_id IS NOT NULL) AS c
WHERE r.parent_run_id IS NULL
  AND r.finished_at < legato_now() - make_interval(secs => %(older_than)s)
  AND r.status IN ('completed', 'failed', 'cancelled')
  AND r.status = ANY(%(statuses)s::text[])
  AND (%(workflow)s::text IS NULL OR r.workflow_name = %(workflow)s::text)
  AND c.going = 0;

-- A periodic task's turn: taken (a row returned) by at most one caller per
-- interval, however many ask at once.
-- name: claim_maintenance
INSERT INTO maintenance (name, ran_at) VALUES (%(name)s, legato_now())
ON CONFLICT (name) DO UPDATE SET ran_at = excluded.ran_at
WHERE maintenance.ran_at <= legato_now() - make_interval(secs => %(every)s)
RETURNING name;

-- -- operations on runs (legato.store.operations, legato.store.repair) -------------------

-- name: pause_run
UPDATE runs SET status = 'paused', updated_at = legato_now()
WHERE id = %(id)s AND status IN ('pending', 'running')
RETURNING id;

-- name: resume_run
UPDATE runs
SET status = 'running', started_at = COALESCE(started_at, legato_now()), updated_at = legato_now()
WHERE id = %(id)s AND status = 'paused'
RETURNING id;

-- The queued steps of a paused run leave the claim indexes until it resumes.
-- name: hold_steps
UPDATE step_runs SET held = true
WHERE run_id = %(run_id)s AND status = 'queued' AND NOT held;

-- A step held while its run was paused has been queued since the run resumed
-- (its schedule-to-start timeout counts from then).
-- name: unhold_steps
UPDATE step_runs
SET held = false, queued_at = CASE WHEN finished_at IS NULL THEN legato_now() ELSE queued_at END
WHERE run_id = %(run_id)s AND held;

-- Ask the workers running these attempts to stop (they learn it by heartbeat).
-- name: request_stop
UPDATE step_runs SET stop_requested = true
WHERE run_id = %(run_id)s AND status = 'running' AND kind = 'task' AND NOT stop_requested
RETURNING key, attempt;

-- name: clear_stop
UPDATE step_runs SET stop_requested = false
WHERE run_id = %(run_id)s AND status = 'running' AND stop_requested;

-- A finished run set going again (retried, rerun, restarted): one attempt more,
-- with new params or another spec when given, its variables afresh when it
-- starts from the beginning.
-- name: reopen_run
UPDATE runs
SET status = 'running', outputs = NULL, error = NULL, finished_at = NULL,
    updated_at = legato_now(), attempt = attempt + 1,
    params = COALESCE(%(params)s::json, params),
    spec_hash = COALESCE(%(spec_hash)s, spec_hash),
    workflow_version = COALESCE(%(version)s, workflow_version),
    variables = CASE WHEN %(fresh)s THEN '{}'::json ELSE variables END,
    started_at = CASE WHEN %(fresh)s OR started_at IS NULL THEN legato_now() ELSE started_at END
WHERE id = %(id)s AND status IN ('completed', 'failed', 'cancelled')
RETURNING id, attempt;

-- An attempt that stopped when asked, in a run that has ended: cancelled,
-- whatever it returned kept as its output.
-- name: cancel_attempt
UPDATE step_runs
SET status = 'cancelled', error = %(error)s::json, output = COALESCE(%(output)s::json, output),
    inputs = COALESCE(%(inputs)s::json, inputs), finished_at = legato_now(),
    lease_expires_at = NULL, stop_requested = false
WHERE id = %(id)s AND attempt = %(attempt)s AND status = 'running'
RETURNING key, step_id, scope, kind, idx;

-- An attempt that stopped when asked, in a run that goes on (paused with
-- stop_now, or set going again): back to the queue, its retries not spent.
-- name: requeue_attempt
UPDATE step_runs
SET status = 'queued', available_at = legato_now(), queued_at = legato_now(), held = %(held)s,
    stop_requested = false, worker_id = NULL, lease_expires_at = NULL,
    history = history || jsonb_build_array(jsonb_build_object(
        'attempt', attempt, 'status', 'stopped', 'worker', worker_id,
        'started_at', extract(epoch FROM started_at),
        'finished_at', extract(epoch FROM legato_now())))
WHERE id = %(id)s AND attempt = %(attempt)s AND status = 'running';

-- A finished instance made to run again: back to waiting (or, for a compound
-- that keeps what its scope holds, running), its last attempt kept in its
-- history, its budgets afresh.
-- name: reset_instance
UPDATE step_runs
SET status = %(status)s, deps_remaining = %(deps_remaining)s, deps_failed = %(deps_failed)s,
    run_attempt = %(run_attempt)s, output = NULL, error = NULL, finished_at = NULL, wake_at = NULL, waiting_for = NULL,
    worker_id = NULL, lease_expires_at = NULL, failures = 0, lost = 0, stop_requested = false,
    held = false, progress = NULL, heartbeat_details = NULL,
    inputs = CASE WHEN %(keep_inputs)s THEN inputs END,
    started_at = CASE WHEN %(status)s = 'running' THEN started_at END,
    history = CASE WHEN kind = 'task' AND attempt > 0 THEN history || jsonb_build_array(
        jsonb_build_object('attempt', attempt, 'status', status, 'worker', worker_id,
                           'started_at', extract(epoch FROM started_at),
                           'finished_at', extract(epoch FROM finished_at),
                           'error', error::jsonb))
        ELSE history END
WHERE id = %(id)s AND status IN ('completed', 'failed', 'skipped', 'cancelled')
  AND %(status)s IN ('waiting', 'running');

-- A step marked done by request with the output given (Conductor's skip).
-- name: skip_step
UPDATE step_runs
SET status = 'completed', output = %(output)s::json, error = NULL, finished_at = legato_now(),
    wake_at = NULL, held = false, started_at = COALESCE(started_at, legato_now()),
    lease_expires_at = NULL,
    history = CASE WHEN status = 'failed' AND kind = 'task' AND attempt > 0 THEN
        history || jsonb_build_array(jsonb_build_object(
            'attempt', attempt, 'status', status, 'worker', worker_id,
            'started_at', extract(epoch FROM started_at),
            'finished_at', extract(epoch FROM finished_at), 'error', error::jsonb))
        ELSE history END
WHERE id = %(id)s AND status IN ('waiting', 'queued', 'suspended', 'failed')
RETURNING key, step_id, scope, kind, idx, child_run_id;

-- name: delete_instances
DELETE FROM step_runs WHERE run_id = %(run_id)s AND key = ANY(%(keys)s::text[]);

-- name: delete_counters
DELETE FROM scope_counters WHERE run_id = %(run_id)s AND scope = ANY(%(scopes)s::text[]);

-- name: delete_run_steps
DELETE FROM step_runs WHERE run_id = %(run_id)s;

-- name: delete_run_counters
DELETE FROM scope_counters WHERE run_id = %(run_id)s;

-- name: set_counter
UPDATE scope_counters SET remaining = %(remaining)s
WHERE run_id = %(run_id)s AND scope = %(scope)s AND shard = %(shard)s;

-- A line a task wrote during an attempt (store/logs.py); none for a step run
-- that no longer exists, none twice.
-- name: insert_log
INSERT INTO step_logs (run_id, step_run_id, attempt, seq, at, level, logger, message)
SELECT run_id, id, %(attempt)s::integer, %(seq)s::integer, to_timestamp(%(at)s::double precision),
       %(level)s::text, %(logger)s::text, %(message)s::text
FROM step_runs WHERE id = %(step_run_id)s::bigint
ON CONFLICT DO NOTHING;

-- name: run_logs
SELECT l.id, l.run_id, s.step_id, l.attempt, l.seq, l.at, l.level, l.logger, l.message
FROM step_logs AS l JOIN step_runs AS s ON s.id = l.step_run_id
WHERE l.run_id = %(run_id)s::uuid AND l.id > %(after)s::bigint
  AND (%(attempt)s::integer IS NULL OR l.attempt = %(attempt)s::integer)
ORDER BY l.id
LIMIT %(limit)s::integer;

-- name: find_step
SELECT id FROM step_runs WHERE run_id = %(run_id)s::uuid AND step_id = %(step_id)s::text;

-- name: step_logs
SELECT l.id, l.run_id, %(step_id)s::text AS step_id, l.attempt, l.seq, l.at, l.level, l.logger,
       l.message
FROM step_logs AS l
WHERE l.step_run_id = %(step_run_id)s::bigint AND l.id > %(after)s::bigint
  AND (%(attempt)s::integer IS NULL OR l.attempt = %(attempt)s::integer)
ORDER BY l.id
LIMIT %(limit)s::integer;

-- The lines of the runs of whole trees a prune deletes (before their rows).
-- name: delete_tree_logs
DELETE FROM step_logs
WHERE run_id IN (SELECT id FROM runs
                 WHERE (id = ANY(%(ids)s::uuid[]) AND parent_run_id IS NULL)
                    OR (root_run_id = ANY(%(ids)s::uuid[]) AND parent_run_id IS NOT NULL));

-- Flow control (legato/store/limits.py). A step's limits, set when its row
-- is made or first claimed.
-- name: mark_flow
UPDATE step_runs
SET flow_key = %(flow_key)s, flow_by = %(flow_by)s, flow_concurrency = %(concurrency)s,
    flow_rate = %(rate)s, flow_window = %(window)s
WHERE run_id = %(run_id)s AND key = %(key)s;

-- The slot's row, made on first use and locked (a no-op update) until the
-- claim commits: claimers of one slot take their turns, so each counts the
-- attempts the one before it started.
-- name: flow_lock
INSERT INTO flow_windows (key, window_start, started) VALUES (%(flow_key)s, legato_now(), 0)
ON CONFLICT (key) DO UPDATE SET started = flow_windows.started;

-- Take a slot for a claimed attempt (already running, its flow_key set):
-- its slot's running attempts, itself counted (not the attempts this claim
-- has yet to decide on), within the limit, and a start
-- left in the window (a window that has passed opens anew now). Run after
-- flow_lock, so its snapshot sees every attempt committed before the lock.
-- name: flow_take
UPDATE flow_windows
SET window_start = CASE WHEN %(rate)s::integer IS NULL THEN window_start
                        WHEN window_start <= legato_now()
                             - make_interval(secs => %(window)s::double precision)
                        THEN legato_now()
                        ELSE window_start END,
    started = CASE WHEN %(rate)s::integer IS NULL THEN started
                   WHEN window_start <= legato_now()
                        - make_interval(secs => %(window)s::double precision)
                   THEN 1
                   ELSE started + 1 END,
    rate = %(rate)s::integer, span = %(window)s::double precision
WHERE key = %(flow_key)s
  AND (%(concurrency)s::integer IS NULL
       OR (SELECT count(*) FROM step_runs
           WHERE flow_key = %(flow_key)s AND status = 'running'
             AND id <> ALL(%(undecided)s::bigint[])) <= %(concurrency)s::integer)
  AND (%(rate)s::integer IS NULL
       OR window_start <= legato_now() - make_interval(secs => %(window)s::double precision)
       OR started < %(rate)s::integer)
RETURNING key;

-- A claimed attempt its slot has no room for goes back to the queue as it
-- was, its slot now known (so claims pass it over until there is room).
-- name: unclaim_step
UPDATE step_runs
SET status = 'queued', attempt = attempt - 1, worker_id = NULL, lease_expires_at = NULL,
    started_at = NULL, flow_key = %(flow_key)s
WHERE id = %(id)s AND attempt = %(attempt)s AND status = 'running';

-- Slots whose last window (if they have a rate) ended over an hour ago and that
-- no claim holds: a slot with no row is a fresh window, made again on next use,
-- so the table holds the slots in use rather than every key ever limited.
-- name: prune_flow_windows
DELETE FROM flow_windows WHERE key IN (
    SELECT key FROM flow_windows
    WHERE window_start + make_interval(secs => COALESCE(span, 0))
          < legato_now() - interval '1 hour'
    LIMIT %(limit)s
    FOR UPDATE SKIP LOCKED
);

-- When the soonest full window opens (seconds from now).
-- name: flow_next_window
SELECT EXTRACT(EPOCH FROM MIN(window_start + make_interval(secs => span))
                          - legato_now()) AS due_in
FROM flow_windows
WHERE started >= rate AND window_start > legato_now() - make_interval(secs => span);

-- Queued steps that no worker claimed within their schedule-to-start timeout
-- (counted from when they became claimable; a paused run's wait). Candidates
-- only: each is locked, with its run, before it is touched.
-- name: unclaimed_steps
SELECT id, run_id, attempt FROM step_runs AS s
WHERE status = 'queued' AND schedule_timeout IS NOT NULL AND NOT held
  AND available_at + make_interval(secs => schedule_timeout) < legato_now()
  AND queued_at + make_interval(secs => schedule_timeout) < legato_now()
  AND NOT EXISTS (SELECT 1 FROM runs AS r WHERE r.id = s.run_id AND r.status = 'paused')
ORDER BY available_at
LIMIT %(limit)s;

-- name: unclaimed_step
SELECT id, run_id, key, step_id, scope, kind, idx, attempt, max_attempts, retry, failures, lost,
       schedule_timeout,
       EXTRACT(EPOCH FROM legato_now() - GREATEST(queued_at, available_at))::float8 AS waited
FROM step_runs
WHERE id = %(id)s AND attempt = %(attempt)s AND status = 'queued' AND NOT held
  AND available_at + make_interval(secs => schedule_timeout) < legato_now()
  AND queued_at + make_interval(secs => schedule_timeout) < legato_now()
FOR UPDATE;

-- An attempt that never started timed out in the queue, and is queued again:
-- it counts as a failed attempt (it is numbered, recorded and spends a retry).
-- name: retry_unclaimed
UPDATE step_runs
SET attempt = attempt + 1, available_at = legato_now() + make_interval(secs => %(delay)s),
    queued_at = legato_now(), failures = %(failures)s, error = %(error)s::json,
    history = history || jsonb_build_array(jsonb_build_object(
        'attempt', attempt + 1, 'status', 'failed', 'worker', NULL, 'started_at', NULL,
        'finished_at', extract(epoch FROM legato_now()), 'error', %(error)s::jsonb))
WHERE id = %(id)s AND attempt = %(attempt)s AND status = 'queued';

-- name: fail_unclaimed
UPDATE step_runs
SET status = 'failed', attempt = attempt + 1, error = %(error)s::json,
    finished_at = legato_now(), failures = %(failures)s,
    history = history || jsonb_build_array(jsonb_build_object(
        'attempt', attempt + 1, 'status', 'failed', 'worker', NULL, 'started_at', NULL,
        'finished_at', extract(epoch FROM legato_now()), 'error', %(error)s::jsonb))
WHERE id = %(id)s AND attempt = %(attempt)s AND status = 'queued'
RETURNING key, step_id, scope, kind, idx;

-- Running attempts whose task has not said it is alive within its heartbeat
-- timeout (its worker may still renew the lease). Candidates only.
-- name: silent_steps
SELECT id, run_id, attempt FROM step_runs
WHERE status = 'running' AND heartbeat_timeout IS NOT NULL
  AND last_heartbeat_at + make_interval(secs => heartbeat_timeout) < legato_now()
ORDER BY last_heartbeat_at
LIMIT %(limit)s;

-- name: silent_step
SELECT id, run_id, key, task, attempt, worker_id, retry, heartbeat_timeout,
       EXTRACT(EPOCH FROM legato_now() - last_heartbeat_at)::float8 AS silent_for
FROM step_runs
WHERE id = %(id)s AND attempt = %(attempt)s AND status = 'running'
  AND last_heartbeat_at + make_interval(secs => heartbeat_timeout) < legato_now()
FOR UPDATE;
