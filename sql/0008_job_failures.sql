-- Failed Dagster runs (dagster_project/ run-failure sensor, storage/job_failures.py):
-- a record in the metrics database itself, beside the data the jobs maintain, so a
-- failure stays visible when Dagster's own instance storage is reset or moved. The
-- meta-monitoring channel reads from here. `run_id` is the key: the sensor may see a
-- failure again after a daemon restart, and recording it twice keeps one row.
CREATE TABLE vigil.job_failure (
    run_id    text PRIMARY KEY,
    job_name  text NOT NULL,
    message   text NOT NULL,
    failed_at timestamptz NOT NULL
);

CREATE INDEX job_failure_failed_at ON vigil.job_failure (failed_at DESC);
