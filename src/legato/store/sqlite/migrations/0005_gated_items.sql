-- The items of a map that wait for a slot under max_parallel, in item order:
-- releasing the next one reads the first entry here instead of stepping over
-- every item already started, so a finished item costs the same whatever the
-- size of its map.
CREATE INDEX step_runs_gated ON step_runs (run_id, scope, idx)
WHERE status = 'waiting' AND deps_remaining > 0 AND idx IS NOT NULL;
