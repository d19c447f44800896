-- The items of a map that wait for a slot under max_parallel, in item order:
-- releasing the next one reads the first entry here instead of stepping over
-- every item already started, so a finished item costs the same whatever the
-- size of its map.
CREATE INDEX step_runs_gated ON step_runs (run_id, scope, idx)
WHERE status = 'waiting' AND deps_remaining > 0 AND idx IS NOT NULL;

-- How many of a step's dependencies finished without completing (failed,
-- skipped, cancelled), counted as they finish, so a step whose condition is
-- the default (every dependency completed) is decided from its own row; and
-- whether it is a task with that condition (queue_on_release), which the
-- statement that releases its last dependency queues at once.
ALTER TABLE step_runs ADD COLUMN deps_failed INTEGER NOT NULL DEFAULT 0;
ALTER TABLE step_runs ADD COLUMN queue_on_release INTEGER NOT NULL DEFAULT 0;
