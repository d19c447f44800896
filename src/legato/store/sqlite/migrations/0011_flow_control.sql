-- Flow control. Claims order a queue's steps by priority, then by stage
-- (how far into its workflow a step is, later first: runs under way finish
-- before new ones start; legato/engine/planner.py's stages), then first
-- queued first; the claim index follows that order.
-- A step's flow limits (its task's, or its own) ride on its row: flow_key is
-- the slot it counts against (its task, and the value of its flow_by
-- argument once known), flow_concurrency the most attempts of that slot
-- running at once, flow_rate and flow_window the most started per window.
-- Running attempts are counted from the rows themselves (the partial index
-- step_runs_flow), so every way an attempt ends frees its slot; starts are
-- counted per fixed window in flow_windows.
ALTER TABLE step_runs ADD COLUMN stage INTEGER NOT NULL DEFAULT 0;
ALTER TABLE step_runs ADD COLUMN flow_key TEXT;
ALTER TABLE step_runs ADD COLUMN flow_by TEXT;
ALTER TABLE step_runs ADD COLUMN flow_concurrency INTEGER;
ALTER TABLE step_runs ADD COLUMN flow_rate INTEGER;
ALTER TABLE step_runs ADD COLUMN flow_window REAL;

DROP INDEX step_runs_claim;
DROP INDEX step_runs_claim_tree;
CREATE INDEX step_runs_claim ON step_runs (queue, priority DESC, stage DESC, queued_at, id)
WHERE status = 'queued' AND held = 0;
CREATE INDEX step_runs_claim_tree
ON step_runs (root_run_id, priority DESC, stage DESC, queued_at, id)
WHERE status = 'queued' AND held = 0;
CREATE INDEX step_runs_flow ON step_runs (flow_key)
WHERE status = 'running' AND flow_key IS NOT NULL;

CREATE TABLE flow_windows (
    key           TEXT PRIMARY KEY,
    window_start  REAL NOT NULL,
    started       INTEGER NOT NULL,
    -- the limit last taken under: for when a full window opens
    rate          INTEGER,
    span          REAL
);
