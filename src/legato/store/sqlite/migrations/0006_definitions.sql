-- Deployed definitions: a workflow's name and version name one spec for
-- good (deploying other content under them is refused), so a process with
-- neither the file nor the code can start the workflow by name, and
-- sub-workflows named by a step find it. The newest is the one deployed last
-- (deployed_at, then seq: the order of deploys, even within one transaction).
CREATE TABLE definitions (
    name         TEXT NOT NULL,
    version      TEXT NOT NULL,
    hash         TEXT NOT NULL REFERENCES workflow_specs (hash),
    source       TEXT,
    deployed_at  REAL NOT NULL,
    deployed_by  TEXT,
    seq          INTEGER NOT NULL,
    PRIMARY KEY (name, version)
);

CREATE INDEX definitions_newest ON definitions (name, deployed_at DESC, seq DESC);

-- The time a run is for (a day's batch, a schedule's slot), as expressions
-- read it (run.logical_date); by default the time it was created. Runs
-- created before this migration have none and read their created time.
ALTER TABLE runs ADD COLUMN logical_date REAL;
