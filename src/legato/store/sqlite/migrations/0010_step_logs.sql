-- What tasks wrote while their attempts ran (logging records and prints), a
-- line a row, written by their worker's heartbeats and reports. A line is
-- keyed by its attempt and its place in it, so a write repeated after its
-- commit's answer was lost stores nothing twice; ``id`` orders the lines as
-- they were stored and is the cursor readers page and follow with. Lines go
-- with their run when it is pruned (store/retention.py). No foreign keys: a
-- heartbeat writing lines never waits for the locks of a run or its steps.
CREATE TABLE step_logs (
    id          INTEGER PRIMARY KEY,
    run_id      TEXT NOT NULL,
    step_run_id INTEGER NOT NULL,
    attempt     INTEGER NOT NULL,
    seq         INTEGER NOT NULL,
    at          REAL NOT NULL,
    level       TEXT NOT NULL,
    logger      TEXT,
    message     TEXT NOT NULL,
    UNIQUE (step_run_id, attempt, seq)
);

CREATE INDEX step_logs_run ON step_logs (run_id, id);
