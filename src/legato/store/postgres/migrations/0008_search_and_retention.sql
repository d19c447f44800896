-- Searching runs and pruning them.
--
-- Every search lists runs newest (or oldest) first by (created_at, id), so a
-- page ends at a key the next page starts after: the run indexes end in both.
-- A run's tags are rows of their own (run_tags), kept in step with runs.tags
-- by a trigger whoever writes them, so a tag filter reads an index in the
-- order of the listing (a GIN index on the jsonb would leave the planner
-- guessing how many runs a tag has). Text search reads a trigram index
-- (pg_trgm, a trusted extension: the database's owner may create it) of the
-- JSON text of params, outputs and error: a term matches as a
-- case-insensitive substring (ILIKE), as SQLite's trigram FTS5 index does.
-- Prunes find old finished run trees by finished_at and delete a tree (its
-- child runs by root_run_id); signals are deleted with their run.
-- maintenance holds when each periodic task last ran, so of many workers
-- only one runs it per interval.

CREATE EXTENSION IF NOT EXISTS pg_trgm;

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

-- The text a search term is looked for in; a newline (which JSON text never
-- holds) between the parts, so no match spans two of them.
CREATE FUNCTION legato_run_text(params json, outputs json, error json) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT params::text || E'\n' || COALESCE(outputs::text, '') || E'\n'
           || COALESCE(error::text, '')
$$;

CREATE INDEX runs_text ON runs USING gin (legato_run_text(params, outputs, error) gin_trgm_ops);

CREATE TABLE run_tags (
    run_id      uuid NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
    key         text NOT NULL,
    value       text NOT NULL,
    created_at  timestamptz NOT NULL,
    PRIMARY KEY (run_id, key)
);

CREATE INDEX run_tags_search ON run_tags (key, value, created_at DESC, run_id DESC);

INSERT INTO run_tags (run_id, key, value, created_at)
SELECT r.id, t.key, t.value, r.created_at FROM runs AS r, jsonb_each_text(r.tags) AS t;

CREATE FUNCTION legato_run_tags() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'UPDATE' THEN
        DELETE FROM run_tags WHERE run_id = OLD.id;
    END IF;
    INSERT INTO run_tags (run_id, key, value, created_at)
    SELECT NEW.id, t.key, t.value, NEW.created_at FROM jsonb_each_text(NEW.tags) AS t;
    RETURN NULL;
END
$$;

CREATE TRIGGER runs_tags_insert AFTER INSERT ON runs
FOR EACH ROW WHEN (NEW.tags <> '{}'::jsonb) EXECUTE FUNCTION legato_run_tags();

CREATE TRIGGER runs_tags_update AFTER UPDATE OF tags ON runs
FOR EACH ROW WHEN (OLD.tags IS DISTINCT FROM NEW.tags) EXECUTE FUNCTION legato_run_tags();

CREATE TABLE maintenance (
    name    text PRIMARY KEY,
    ran_at  timestamptz NOT NULL
);
