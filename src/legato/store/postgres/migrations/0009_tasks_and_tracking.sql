-- Runs of three kinds: a workflow's, driven by its steps; a standalone task's
-- (client.enqueue: a one-step run of a spec made for the call); and a run
-- tracked from outside (create_workflow_run), which has no steps of its own:
-- its status, result, times and task count are set by its creator.
ALTER TABLE runs ADD COLUMN kind text NOT NULL DEFAULT 'workflow';
-- The hash a tracked run's creator gave for its definition, which legato
-- does not hold; other runs' hash is their spec's.
ALTER TABLE runs ADD COLUMN workflow_hash text;
-- The number of tasks a tracked run's creator reported; other runs count
-- their steps.
ALTER TABLE runs ADD COLUMN task_count integer;
