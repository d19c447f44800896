-- Operating runs. A run's attempt counts how often it was set going again
-- (retried, rerun, restarted); a step row keeps the run's attempt it was made
-- or reset at, so a process that claims it knows whether its cached copy of
-- the run's params and spec is still the run's.
-- A step's stop_requested asks the worker running it to stop (the run was
-- cancelled, or paused with stop_now); held keeps the queued steps of a
-- paused run out of the claim indexes, so they cost other runs' claims
-- nothing. progress and heartbeat_details are what the task last reported
-- through its context.
ALTER TABLE runs ADD COLUMN attempt integer NOT NULL DEFAULT 1;
ALTER TABLE step_runs ADD COLUMN run_attempt integer NOT NULL DEFAULT 1;
ALTER TABLE step_runs ADD COLUMN stop_requested boolean NOT NULL DEFAULT false;
ALTER TABLE step_runs ADD COLUMN held boolean NOT NULL DEFAULT false;
ALTER TABLE step_runs ADD COLUMN progress json;
ALTER TABLE step_runs ADD COLUMN heartbeat_details json;

DROP INDEX step_runs_claim;
DROP INDEX step_runs_claim_tree;
CREATE INDEX step_runs_claim ON step_runs (queue, priority DESC, id)
WHERE status = 'queued' AND NOT held;
CREATE INDEX step_runs_claim_tree ON step_runs (root_run_id, priority DESC, id)
WHERE status = 'queued' AND NOT held;
