-- Named queries of storage/job_failures.py.

-- insert_job_failure --
-- Records a failed run; a run recorded before keeps its first record.
INSERT INTO vigil.job_failure (run_id, job_name, message, failed_at)
VALUES (%(run_id)s, %(job_name)s, %(message)s, %(failed_at)s)
ON CONFLICT (run_id) DO NOTHING;

-- select_job_failures --
-- The newest failed runs first, at most %(limit)s.
SELECT run_id, job_name, message, failed_at
FROM vigil.job_failure
ORDER BY failed_at DESC, run_id
LIMIT %(limit)s;
