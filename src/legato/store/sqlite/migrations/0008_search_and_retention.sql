-- Searching runs and pruning them.
--
-- Every search lists runs newest (or oldest) first by (created_at, id), so a
-- page ends at a key the next page starts after: the run indexes end in both.
-- A run's tags are rows of their own (run_tags), kept in step with runs.tags
-- by triggers whoever writes them, so a tag filter reads an index in the
-- order of the listing. Text search reads an FTS5 index of the JSON text of
-- params, outputs and error with the trigram tokenizer: a term matches as a
-- case-insensitive substring, as PostgreSQL's trigram index does. FTS5 keys
-- rows by an integer that VACUUM must not renumber, so runs get their own
-- (seq). Prunes find old finished run trees by finished_at and delete a tree
-- (its child runs by root_run_id); signals are deleted with their run.
-- maintenance holds when each periodic task last ran, so of many workers
-- only one runs it per interval.

DROP INDEX runs_created;
DROP INDEX runs_status_created;
DROP INDEX runs_workflow_created;
CREATE INDEX runs_created ON runs (created_at DESC, id DESC);
CREATE INDEX runs_status_created ON runs (status, created_at DESC, id DESC);
CREATE INDEX runs_workflow_created ON runs (workflow_name, created_at DESC, id DESC);
CREATE INDEX runs_workflow_status ON runs (workflow_name, status, created_at DESC, id DESC);
CREATE INDEX runs_correlation ON runs (correlation_id, created_at DESC, id DESC)
WHERE correlation_id IS NOT NULL;
CREATE INDEX runs_root ON runs (root_run_id) WHERE parent_run_id IS NOT NULL;
CREATE INDEX runs_finished ON runs (finished_at) WHERE parent_run_id IS NULL;
CREATE INDEX signals_run ON signals (run_id);

CREATE TABLE run_tags (
    run_id      TEXT NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
    key         TEXT NOT NULL,
    value       TEXT NOT NULL,
    created_at  REAL NOT NULL,
    PRIMARY KEY (run_id, key)
);

CREATE INDEX run_tags_search ON run_tags (key, value, created_at DESC, run_id DESC);

INSERT INTO run_tags (run_id, key, value, created_at)
SELECT r.id, t.key, t.value, r.created_at FROM runs AS r, json_each(r.tags) AS t;

CREATE TRIGGER runs_tags_insert AFTER INSERT ON runs WHEN new.tags <> '{}'
BEGIN
    INSERT INTO run_tags (run_id, key, value, created_at)
    SELECT new.id, key, value, new.created_at FROM json_each(new.tags);
END;

CREATE TRIGGER runs_tags_update AFTER UPDATE OF tags ON runs
BEGIN
    DELETE FROM run_tags WHERE run_id = old.id;
    INSERT INTO run_tags (run_id, key, value, created_at)
    SELECT new.id, key, value, new.created_at FROM json_each(new.tags);
END;

ALTER TABLE runs ADD COLUMN seq INTEGER;
UPDATE runs SET seq = rowid;
CREATE UNIQUE INDEX runs_seq ON runs (seq);

CREATE VIRTUAL TABLE run_text USING fts5 (
    params, outputs, error, content = 'runs', content_rowid = 'seq', tokenize = 'trigram'
);

INSERT INTO run_text (run_text) VALUES ('rebuild');

CREATE TRIGGER runs_text_insert AFTER INSERT ON runs
BEGIN
    UPDATE runs SET seq = (SELECT COALESCE(MAX(seq), 0) + 1 FROM runs) WHERE rowid = new.rowid;
    INSERT INTO run_text (rowid, params, outputs, error)
    SELECT seq, params, outputs, error FROM runs WHERE rowid = new.rowid;
END;

CREATE TRIGGER runs_text_update AFTER UPDATE OF params, outputs, error ON runs
WHEN old.params IS NOT new.params OR old.outputs IS NOT new.outputs
  OR old.error IS NOT new.error
BEGIN
    INSERT INTO run_text (run_text, rowid, params, outputs, error)
    VALUES ('delete', old.seq, old.params, old.outputs, old.error);
    INSERT INTO run_text (rowid, params, outputs, error)
    VALUES (new.seq, new.params, new.outputs, new.error);
END;

CREATE TRIGGER runs_text_delete AFTER DELETE ON runs
BEGIN
    INSERT INTO run_text (run_text, rowid, params, outputs, error)
    VALUES ('delete', old.seq, old.params, old.outputs, old.error);
END;

CREATE TABLE maintenance (
    name    TEXT PRIMARY KEY,
    ran_at  REAL NOT NULL
);
