-- The task defaults a run was started with (retry, timeout, queue, priority,
-- lost-worker budget per task), so the steps it creates later (map items, loop
-- iterations, branches) get the same policies in any process.
ALTER TABLE runs ADD COLUMN task_defaults json NOT NULL DEFAULT '{}';
