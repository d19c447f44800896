-- Two timeouts of a task call beyond its running time (timeout): how long an
-- attempt may stay queued without a worker claiming it (schedule_timeout),
-- and how long a running task may go without a heartbeat of its own
-- (heartbeat_timeout), judged from last_heartbeat_at: set when the attempt is
-- claimed and whenever its worker writes what the task reported.
ALTER TABLE step_runs ADD COLUMN schedule_timeout REAL;
ALTER TABLE step_runs ADD COLUMN heartbeat_timeout REAL;
ALTER TABLE step_runs ADD COLUMN last_heartbeat_at REAL;
ALTER TABLE task_defaults ADD COLUMN schedule_timeout REAL;
ALTER TABLE task_defaults ADD COLUMN heartbeat_timeout REAL;
-- The sweep reads only the steps that have such a timeout.
CREATE INDEX step_runs_schedule_timeout ON step_runs (available_at)
    WHERE status = 'queued' AND schedule_timeout IS NOT NULL;
CREATE INDEX step_runs_heartbeat_timeout ON step_runs (last_heartbeat_at)
    WHERE status = 'running' AND heartbeat_timeout IS NOT NULL;
