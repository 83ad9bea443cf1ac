# Compiler fixture pairs, read by tests/querylang/test_compiler.py.
#
# Each pair: an input line `<kind>[(args)] <selector>;` naming the compile function
# (see KINDS there: tenant 00000000-…-00000000000a, an hour's grid at 1m steps from
# 2023-11-14T22:13:20Z, lookback 5m, at most 10001 series), then the statement it
# compiles to, pretty-printed by sqlglot and ending in `;` (or `!! Error: message`),
# then its bind parameters as `-- name = value` lines. Lines starting with "#" are
# comments. Regex matchers are resolved to value sets first, against the test's
# CATALOG (job: api db web; path: /health /v1/orders /v1/users /v2/users; env: dev
# prod; names: http_requests_total node_cpu_seconds_total up).
#
# VIGIL_REGENERATE_FIXTURES=1 rewrites every expected side from the compiler's output.

## instant: the latest sample of each step interval, per series

# A metric name alone: the name compares the metric column.
instant up;
WITH selected AS (
  SELECT
    id,
    metric,
    labels
  FROM vigil.series
  WHERE
    tenant_id = %(tenant)s AND metric = %(m0v)s
  LIMIT %(max_series)s
)
SELECT
  selected.metric,
  selected.labels,
  points.times,
  points.vals
FROM selected
CROSS JOIN LATERAL (
  SELECT
    STRING_AGG(TIMESTAMPTZ_SEND(b.t), '') AS times,
    STRING_AGG(FLOAT8SEND(b.v), '') AS vals
  FROM (
    SELECT
      MAX(s.time) AS t,
      LAST(s.value, s.time) AS v
    FROM vigil.samples AS s
    WHERE
      s.series_id = selected.id AND s.time >= %(low)s AND s.time <= %(high)s
    GROUP BY
      DATE_BIN(%(step)s, s.time, %(origin)s)
  ) AS b
) AS points
WHERE
  points.times IS NOT NULL;
-- high = 2023-11-14T23:13:20+00:00
-- low = 2023-11-14T22:08:20+00:00
-- m0v = 'up'
-- max_series = 10001
-- origin = 2023-11-14T22:13:20.000001+00:00
-- step = interval '60 seconds'
-- tenant = '00000000-0000-4000-8000-00000000000a'

# A non-empty equality compares the raw label; an empty one, like !=, the label
# coalesced to "" (a missing label equals "").
instant http_requests_total{job="api", env=""};
WITH selected AS (
  SELECT
    id,
    metric,
    labels
  FROM vigil.series
  WHERE
    tenant_id = %(tenant)s
    AND metric = %(m0v)s
    AND labels ->> %(m1n)s = %(m1v)s
    AND COALESCE(labels ->> %(m2n)s, '') = %(m2v)s
  LIMIT %(max_series)s
)
SELECT
  selected.metric,
  selected.labels,
  points.times,
  points.vals
FROM selected
CROSS JOIN LATERAL (
  SELECT
    STRING_AGG(TIMESTAMPTZ_SEND(b.t), '') AS times,
    STRING_AGG(FLOAT8SEND(b.v), '') AS vals
  FROM (
    SELECT
      MAX(s.time) AS t,
      LAST(s.value, s.time) AS v
    FROM vigil.samples AS s
    WHERE
      s.series_id = selected.id AND s.time >= %(low)s AND s.time <= %(high)s
    GROUP BY
      DATE_BIN(%(step)s, s.time, %(origin)s)
  ) AS b
) AS points
WHERE
  points.times IS NOT NULL;
-- high = 2023-11-14T23:13:20+00:00
-- low = 2023-11-14T22:08:20+00:00
-- m0v = 'http_requests_total'
-- m1n = 'job'
-- m1v = 'api'
-- m2n = 'env'
-- m2v = ''
-- max_series = 10001
-- origin = 2023-11-14T22:13:20.000001+00:00
-- step = interval '60 seconds'
-- tenant = '00000000-0000-4000-8000-00000000000a'

instant http_requests_total{job!="api", env!=""};
WITH selected AS (
  SELECT
    id,
    metric,
    labels
  FROM vigil.series
  WHERE
    tenant_id = %(tenant)s
    AND metric = %(m0v)s
    AND COALESCE(labels ->> %(m1n)s, '') <> %(m1v)s
    AND COALESCE(labels ->> %(m2n)s, '') <> %(m2v)s
  LIMIT %(max_series)s
)
SELECT
  selected.metric,
  selected.labels,
  points.times,
  points.vals
FROM selected
CROSS JOIN LATERAL (
  SELECT
    STRING_AGG(TIMESTAMPTZ_SEND(b.t), '') AS times,
    STRING_AGG(FLOAT8SEND(b.v), '') AS vals
  FROM (
    SELECT
      MAX(s.time) AS t,
      LAST(s.value, s.time) AS v
    FROM vigil.samples AS s
    WHERE
      s.series_id = selected.id AND s.time >= %(low)s AND s.time <= %(high)s
    GROUP BY
      DATE_BIN(%(step)s, s.time, %(origin)s)
  ) AS b
) AS points
WHERE
  points.times IS NOT NULL;
-- high = 2023-11-14T23:13:20+00:00
-- low = 2023-11-14T22:08:20+00:00
-- m0v = 'http_requests_total'
-- m1n = 'job'
-- m1v = 'api'
-- m2n = 'env'
-- m2v = ''
-- max_series = 10001
-- origin = 2023-11-14T22:13:20.000001+00:00
-- step = interval '60 seconds'
-- tenant = '00000000-0000-4000-8000-00000000000a'

# Regex matchers become value sets: = ANY for =~, NOT (= ANY) for !~.
instant http_requests_total{path=~"/v1/.*"};
WITH selected AS (
  SELECT
    id,
    metric,
    labels
  FROM vigil.series
  WHERE
    tenant_id = %(tenant)s
    AND metric = %(m0v)s
    AND COALESCE(labels ->> %(m1n)s, '') = ANY(
      %(m1v)s
    )
  LIMIT %(max_series)s
)
SELECT
  selected.metric,
  selected.labels,
  points.times,
  points.vals
FROM selected
CROSS JOIN LATERAL (
  SELECT
    STRING_AGG(TIMESTAMPTZ_SEND(b.t), '') AS times,
    STRING_AGG(FLOAT8SEND(b.v), '') AS vals
  FROM (
    SELECT
      MAX(s.time) AS t,
      LAST(s.value, s.time) AS v
    FROM vigil.samples AS s
    WHERE
      s.series_id = selected.id AND s.time >= %(low)s AND s.time <= %(high)s
    GROUP BY
      DATE_BIN(%(step)s, s.time, %(origin)s)
  ) AS b
) AS points
WHERE
  points.times IS NOT NULL;
-- high = 2023-11-14T23:13:20+00:00
-- low = 2023-11-14T22:08:20+00:00
-- m0v = 'http_requests_total'
-- m1n = 'path'
-- m1v = ['/v1/orders', '/v1/users']
-- max_series = 10001
-- origin = 2023-11-14T22:13:20.000001+00:00
-- step = interval '60 seconds'
-- tenant = '00000000-0000-4000-8000-00000000000a'

instant http_requests_total{path!~"/v1/.*"};
WITH selected AS (
  SELECT
    id,
    metric,
    labels
  FROM vigil.series
  WHERE
    tenant_id = %(tenant)s
    AND metric = %(m0v)s
    AND NOT (
      COALESCE(labels ->> %(m1n)s, '') = ANY(
        %(m1v)s
      )
    )
  LIMIT %(max_series)s
)
SELECT
  selected.metric,
  selected.labels,
  points.times,
  points.vals
FROM selected
CROSS JOIN LATERAL (
  SELECT
    STRING_AGG(TIMESTAMPTZ_SEND(b.t), '') AS times,
    STRING_AGG(FLOAT8SEND(b.v), '') AS vals
  FROM (
    SELECT
      MAX(s.time) AS t,
      LAST(s.value, s.time) AS v
    FROM vigil.samples AS s
    WHERE
      s.series_id = selected.id AND s.time >= %(low)s AND s.time <= %(high)s
    GROUP BY
      DATE_BIN(%(step)s, s.time, %(origin)s)
  ) AS b
) AS points
WHERE
  points.times IS NOT NULL;
-- high = 2023-11-14T23:13:20+00:00
-- low = 2023-11-14T22:08:20+00:00
-- m0v = 'http_requests_total'
-- m1n = 'path'
-- m1v = ['/v1/orders', '/v1/users']
-- max_series = 10001
-- origin = 2023-11-14T22:13:20.000001+00:00
-- step = interval '60 seconds'
-- tenant = '00000000-0000-4000-8000-00000000000a'

# A regex that matches "" keeps series without the label: "" joins the value set.
instant http_requests_total{env=~"prod|"};
WITH selected AS (
  SELECT
    id,
    metric,
    labels
  FROM vigil.series
  WHERE
    tenant_id = %(tenant)s
    AND metric = %(m0v)s
    AND COALESCE(labels ->> %(m1n)s, '') = ANY(
      %(m1v)s
    )
  LIMIT %(max_series)s
)
SELECT
  selected.metric,
  selected.labels,
  points.times,
  points.vals
FROM selected
CROSS JOIN LATERAL (
  SELECT
    STRING_AGG(TIMESTAMPTZ_SEND(b.t), '') AS times,
    STRING_AGG(FLOAT8SEND(b.v), '') AS vals
  FROM (
    SELECT
      MAX(s.time) AS t,
      LAST(s.value, s.time) AS v
    FROM vigil.samples AS s
    WHERE
      s.series_id = selected.id AND s.time >= %(low)s AND s.time <= %(high)s
    GROUP BY
      DATE_BIN(%(step)s, s.time, %(origin)s)
  ) AS b
) AS points
WHERE
  points.times IS NOT NULL;
-- high = 2023-11-14T23:13:20+00:00
-- low = 2023-11-14T22:08:20+00:00
-- m0v = 'http_requests_total'
-- m1n = 'env'
-- m1v = ['', 'prod']
-- max_series = 10001
-- origin = 2023-11-14T22:13:20.000001+00:00
-- step = interval '60 seconds'
-- tenant = '00000000-0000-4000-8000-00000000000a'

instant http_requests_total{env=~".*"};
WITH selected AS (
  SELECT
    id,
    metric,
    labels
  FROM vigil.series
  WHERE
    tenant_id = %(tenant)s
    AND metric = %(m0v)s
    AND COALESCE(labels ->> %(m1n)s, '') = ANY(
      %(m1v)s
    )
  LIMIT %(max_series)s
)
SELECT
  selected.metric,
  selected.labels,
  points.times,
  points.vals
FROM selected
CROSS JOIN LATERAL (
  SELECT
    STRING_AGG(TIMESTAMPTZ_SEND(b.t), '') AS times,
    STRING_AGG(FLOAT8SEND(b.v), '') AS vals
  FROM (
    SELECT
      MAX(s.time) AS t,
      LAST(s.value, s.time) AS v
    FROM vigil.samples AS s
    WHERE
      s.series_id = selected.id AND s.time >= %(low)s AND s.time <= %(high)s
    GROUP BY
      DATE_BIN(%(step)s, s.time, %(origin)s)
  ) AS b
) AS points
WHERE
  points.times IS NOT NULL;
-- high = 2023-11-14T23:13:20+00:00
-- low = 2023-11-14T22:08:20+00:00
-- m0v = 'http_requests_total'
-- m1n = 'env'
-- m1v = ['', 'dev', 'prod']
-- max_series = 10001
-- origin = 2023-11-14T22:13:20.000001+00:00
-- step = interval '60 seconds'
-- tenant = '00000000-0000-4000-8000-00000000000a'

# An alternation of literals is its own value set (no catalog statement).
instant http_requests_total{job=~"api|db"};
WITH selected AS (
  SELECT
    id,
    metric,
    labels
  FROM vigil.series
  WHERE
    tenant_id = %(tenant)s
    AND metric = %(m0v)s
    AND COALESCE(labels ->> %(m1n)s, '') = ANY(
      %(m1v)s
    )
  LIMIT %(max_series)s
)
SELECT
  selected.metric,
  selected.labels,
  points.times,
  points.vals
FROM selected
CROSS JOIN LATERAL (
  SELECT
    STRING_AGG(TIMESTAMPTZ_SEND(b.t), '') AS times,
    STRING_AGG(FLOAT8SEND(b.v), '') AS vals
  FROM (
    SELECT
      MAX(s.time) AS t,
      LAST(s.value, s.time) AS v
    FROM vigil.samples AS s
    WHERE
      s.series_id = selected.id AND s.time >= %(low)s AND s.time <= %(high)s
    GROUP BY
      DATE_BIN(%(step)s, s.time, %(origin)s)
  ) AS b
) AS points
WHERE
  points.times IS NOT NULL;
-- high = 2023-11-14T23:13:20+00:00
-- low = 2023-11-14T22:08:20+00:00
-- m0v = 'http_requests_total'
-- m1n = 'job'
-- m1v = ['api', 'db']
-- max_series = 10001
-- origin = 2023-11-14T22:13:20.000001+00:00
-- step = interval '60 seconds'
-- tenant = '00000000-0000-4000-8000-00000000000a'

# Case-insensitive: every catalog value that matches, as RE2 folds case.
instant http_requests_total{job=~"(?i)API|WEB"};
WITH selected AS (
  SELECT
    id,
    metric,
    labels
  FROM vigil.series
  WHERE
    tenant_id = %(tenant)s
    AND metric = %(m0v)s
    AND COALESCE(labels ->> %(m1n)s, '') = ANY(
      %(m1v)s
    )
  LIMIT %(max_series)s
)
SELECT
  selected.metric,
  selected.labels,
  points.times,
  points.vals
FROM selected
CROSS JOIN LATERAL (
  SELECT
    STRING_AGG(TIMESTAMPTZ_SEND(b.t), '') AS times,
    STRING_AGG(FLOAT8SEND(b.v), '') AS vals
  FROM (
    SELECT
      MAX(s.time) AS t,
      LAST(s.value, s.time) AS v
    FROM vigil.samples AS s
    WHERE
      s.series_id = selected.id AND s.time >= %(low)s AND s.time <= %(high)s
    GROUP BY
      DATE_BIN(%(step)s, s.time, %(origin)s)
  ) AS b
) AS points
WHERE
  points.times IS NOT NULL;
-- high = 2023-11-14T23:13:20+00:00
-- low = 2023-11-14T22:08:20+00:00
-- m0v = 'http_requests_total'
-- m1n = 'job'
-- m1v = ['api', 'web']
-- max_series = 10001
-- origin = 2023-11-14T22:13:20.000001+00:00
-- step = interval '60 seconds'
-- tenant = '00000000-0000-4000-8000-00000000000a'

# A regex on the name resolves against metric names.
instant {__name__=~"http_.*|up", job="api"};
WITH selected AS (
  SELECT
    id,
    metric,
    labels
  FROM vigil.series
  WHERE
    tenant_id = %(tenant)s
    AND metric = ANY(
      %(m0v)s
    )
    AND labels ->> %(m1n)s = %(m1v)s
  LIMIT %(max_series)s
)
SELECT
  selected.metric,
  selected.labels,
  points.times,
  points.vals
FROM selected
CROSS JOIN LATERAL (
  SELECT
    STRING_AGG(TIMESTAMPTZ_SEND(b.t), '') AS times,
    STRING_AGG(FLOAT8SEND(b.v), '') AS vals
  FROM (
    SELECT
      MAX(s.time) AS t,
      LAST(s.value, s.time) AS v
    FROM vigil.samples AS s
    WHERE
      s.series_id = selected.id AND s.time >= %(low)s AND s.time <= %(high)s
    GROUP BY
      DATE_BIN(%(step)s, s.time, %(origin)s)
  ) AS b
) AS points
WHERE
  points.times IS NOT NULL;
-- high = 2023-11-14T23:13:20+00:00
-- low = 2023-11-14T22:08:20+00:00
-- m0v = ['http_requests_total', 'up']
-- m1n = 'job'
-- m1v = 'api'
-- max_series = 10001
-- origin = 2023-11-14T22:13:20.000001+00:00
-- step = interval '60 seconds'
-- tenant = '00000000-0000-4000-8000-00000000000a'

instant {__name__!~"up", job=~"a.*"};
WITH selected AS (
  SELECT
    id,
    metric,
    labels
  FROM vigil.series
  WHERE
    tenant_id = %(tenant)s
    AND NOT (
      metric = ANY(
        %(m0v)s
      )
    )
    AND COALESCE(labels ->> %(m1n)s, '') = ANY(
      %(m1v)s
    )
  LIMIT %(max_series)s
)
SELECT
  selected.metric,
  selected.labels,
  points.times,
  points.vals
FROM selected
CROSS JOIN LATERAL (
  SELECT
    STRING_AGG(TIMESTAMPTZ_SEND(b.t), '') AS times,
    STRING_AGG(FLOAT8SEND(b.v), '') AS vals
  FROM (
    SELECT
      MAX(s.time) AS t,
      LAST(s.value, s.time) AS v
    FROM vigil.samples AS s
    WHERE
      s.series_id = selected.id AND s.time >= %(low)s AND s.time <= %(high)s
    GROUP BY
      DATE_BIN(%(step)s, s.time, %(origin)s)
  ) AS b
) AS points
WHERE
  points.times IS NOT NULL;
-- high = 2023-11-14T23:13:20+00:00
-- low = 2023-11-14T22:08:20+00:00
-- m0v = ['up']
-- m1n = 'job'
-- m1v = ['api']
-- max_series = 10001
-- origin = 2023-11-14T22:13:20.000001+00:00
-- step = interval '60 seconds'
-- tenant = '00000000-0000-4000-8000-00000000000a'

# A regex no value matches: the empty set, which selects nothing.
instant up{job=~"nomatch.*"};
WITH selected AS (
  SELECT
    id,
    metric,
    labels
  FROM vigil.series
  WHERE
    tenant_id = %(tenant)s
    AND metric = %(m0v)s
    AND COALESCE(labels ->> %(m1n)s, '') = ANY(
      %(m1v)s
    )
  LIMIT %(max_series)s
)
SELECT
  selected.metric,
  selected.labels,
  points.times,
  points.vals
FROM selected
CROSS JOIN LATERAL (
  SELECT
    STRING_AGG(TIMESTAMPTZ_SEND(b.t), '') AS times,
    STRING_AGG(FLOAT8SEND(b.v), '') AS vals
  FROM (
    SELECT
      MAX(s.time) AS t,
      LAST(s.value, s.time) AS v
    FROM vigil.samples AS s
    WHERE
      s.series_id = selected.id AND s.time >= %(low)s AND s.time <= %(high)s
    GROUP BY
      DATE_BIN(%(step)s, s.time, %(origin)s)
  ) AS b
) AS points
WHERE
  points.times IS NOT NULL;
-- high = 2023-11-14T23:13:20+00:00
-- low = 2023-11-14T22:08:20+00:00
-- m0v = 'up'
-- m1n = 'job'
-- m1v = []
-- max_series = 10001
-- origin = 2023-11-14T22:13:20.000001+00:00
-- step = interval '60 seconds'
-- tenant = '00000000-0000-4000-8000-00000000000a'

# One step: a single date_bin bucket, lookback + 1 µs wide.
instant_at up{job="api"};
WITH selected AS (
  SELECT
    id,
    metric,
    labels
  FROM vigil.series
  WHERE
    tenant_id = %(tenant)s AND metric = %(m0v)s AND labels ->> %(m1n)s = %(m1v)s
  LIMIT %(max_series)s
)
SELECT
  selected.metric,
  selected.labels,
  points.times,
  points.vals
FROM selected
CROSS JOIN LATERAL (
  SELECT
    STRING_AGG(TIMESTAMPTZ_SEND(b.t), '') AS times,
    STRING_AGG(FLOAT8SEND(b.v), '') AS vals
  FROM (
    SELECT
      MAX(s.time) AS t,
      LAST(s.value, s.time) AS v
    FROM vigil.samples AS s
    WHERE
      s.series_id = selected.id AND s.time >= %(low)s AND s.time <= %(high)s
    GROUP BY
      DATE_BIN(%(step)s, s.time, %(origin)s)
  ) AS b
) AS points
WHERE
  points.times IS NOT NULL;
-- high = 2023-11-14T23:13:20+00:00
-- low = 2023-11-14T23:08:20+00:00
-- m0v = 'up'
-- m1n = 'job'
-- m1v = 'api'
-- max_series = 10001
-- origin = 2023-11-14T23:13:20.000001+00:00
-- step = interval '300 seconds'
-- tenant = '00000000-0000-4000-8000-00000000000a'

## range: every raw sample of the windows
range(5m) http_requests_total{job="api"};
WITH selected AS (
  SELECT
    id,
    metric,
    labels
  FROM vigil.series
  WHERE
    tenant_id = %(tenant)s AND metric = %(m0v)s AND labels ->> %(m1n)s = %(m1v)s
  LIMIT %(max_series)s
)
SELECT
  selected.metric,
  selected.labels,
  points.times,
  points.vals
FROM selected
CROSS JOIN LATERAL (
  SELECT
    STRING_AGG(TIMESTAMPTZ_SEND(s.time), '') AS times,
    STRING_AGG(FLOAT8SEND(s.value), '') AS vals
  FROM vigil.samples AS s
  WHERE
    s.series_id = selected.id AND s.time >= %(low)s AND s.time <= %(high)s
) AS points
WHERE
  points.times IS NOT NULL;
-- high = 2023-11-14T23:13:20+00:00
-- low = 2023-11-14T22:08:20+00:00
-- m0v = 'http_requests_total'
-- m1n = 'job'
-- m1v = 'api'
-- max_series = 10001
-- tenant = '00000000-0000-4000-8000-00000000000a'

range(1h) http_requests_total{path=~"/v2/.*", job!="web"};
WITH selected AS (
  SELECT
    id,
    metric,
    labels
  FROM vigil.series
  WHERE
    tenant_id = %(tenant)s
    AND metric = %(m0v)s
    AND COALESCE(labels ->> %(m1n)s, '') = ANY(
      %(m1v)s
    )
    AND COALESCE(labels ->> %(m2n)s, '') <> %(m2v)s
  LIMIT %(max_series)s
)
SELECT
  selected.metric,
  selected.labels,
  points.times,
  points.vals
FROM selected
CROSS JOIN LATERAL (
  SELECT
    STRING_AGG(TIMESTAMPTZ_SEND(s.time), '') AS times,
    STRING_AGG(FLOAT8SEND(s.value), '') AS vals
  FROM vigil.samples AS s
  WHERE
    s.series_id = selected.id AND s.time >= %(low)s AND s.time <= %(high)s
) AS points
WHERE
  points.times IS NOT NULL;
-- high = 2023-11-14T23:13:20+00:00
-- low = 2023-11-14T21:13:20+00:00
-- m0v = 'http_requests_total'
-- m1n = 'path'
-- m1v = ['/v2/users']
-- m2n = 'job'
-- m2v = 'web'
-- max_series = 10001
-- tenant = '00000000-0000-4000-8000-00000000000a'

## rollup: bucket columns of a tier's view, buckets in (low, high]
rollup(1m, sum, samples) up{job="api"};
WITH selected AS (
  SELECT
    id,
    metric,
    labels
  FROM vigil.series
  WHERE
    tenant_id = %(tenant)s AND metric = %(m0v)s AND labels ->> %(m1n)s = %(m1v)s
  LIMIT %(max_series)s
)
SELECT
  selected.metric,
  selected.labels,
  points.c0,
  points.c1,
  points.c2
FROM selected
CROSS JOIN LATERAL (
  SELECT
    STRING_AGG(TIMESTAMPTZ_SEND(r.bucket), '') AS c0,
    STRING_AGG(FLOAT8SEND(r.sum), '') AS c1,
    STRING_AGG(FLOAT8SEND(CAST(r.samples AS DOUBLE PRECISION)), '') AS c2
  FROM vigil.rollups_1m AS r
  WHERE
    r.series_id = selected.id AND r.bucket > %(low)s AND r.bucket <= %(high)s
) AS points
WHERE
  points.c0 IS NOT NULL;
-- high = 2023-11-14T23:13:20+00:00
-- low = 2023-11-14T22:13:20+00:00
-- m0v = 'up'
-- m1n = 'job'
-- m1v = 'api'
-- max_series = 10001
-- tenant = '00000000-0000-4000-8000-00000000000a'

rollup(1h, first_time, first_value, last_time, last_value, reset_correction, samples) http_requests_total{job=~"api|web"};
WITH selected AS (
  SELECT
    id,
    metric,
    labels
  FROM vigil.series
  WHERE
    tenant_id = %(tenant)s
    AND metric = %(m0v)s
    AND COALESCE(labels ->> %(m1n)s, '') = ANY(
      %(m1v)s
    )
  LIMIT %(max_series)s
)
SELECT
  selected.metric,
  selected.labels,
  points.c0,
  points.c1,
  points.c2,
  points.c3,
  points.c4,
  points.c5,
  points.c6
FROM selected
CROSS JOIN LATERAL (
  SELECT
    STRING_AGG(TIMESTAMPTZ_SEND(r.bucket), '') AS c0,
    STRING_AGG(TIMESTAMPTZ_SEND(r.first_time), '') AS c1,
    STRING_AGG(FLOAT8SEND(r.first_value), '') AS c2,
    STRING_AGG(TIMESTAMPTZ_SEND(r.last_time), '') AS c3,
    STRING_AGG(FLOAT8SEND(r.last_value), '') AS c4,
    STRING_AGG(FLOAT8SEND(r.reset_correction), '') AS c5,
    STRING_AGG(FLOAT8SEND(CAST(r.samples AS DOUBLE PRECISION)), '') AS c6
  FROM vigil.rollups_1h AS r
  WHERE
    r.series_id = selected.id AND r.bucket > %(low)s AND r.bucket <= %(high)s
) AS points
WHERE
  points.c0 IS NOT NULL;
-- high = 2023-11-14T23:13:20+00:00
-- low = 2023-11-14T22:13:20+00:00
-- m0v = 'http_requests_total'
-- m1n = 'job'
-- m1v = ['api', 'web']
-- max_series = 10001
-- tenant = '00000000-0000-4000-8000-00000000000a'

rollup(1d, min, max) up;
WITH selected AS (
  SELECT
    id,
    metric,
    labels
  FROM vigil.series
  WHERE
    tenant_id = %(tenant)s AND metric = %(m0v)s
  LIMIT %(max_series)s
)
SELECT
  selected.metric,
  selected.labels,
  points.c0,
  points.c1,
  points.c2
FROM selected
CROSS JOIN LATERAL (
  SELECT
    STRING_AGG(TIMESTAMPTZ_SEND(r.bucket), '') AS c0,
    STRING_AGG(FLOAT8SEND(r.min), '') AS c1,
    STRING_AGG(FLOAT8SEND(r.max), '') AS c2
  FROM vigil.rollups_1d AS r
  WHERE
    r.series_id = selected.id AND r.bucket > %(low)s AND r.bucket <= %(high)s
) AS points
WHERE
  points.c0 IS NOT NULL;
-- high = 2023-11-14T23:13:20+00:00
-- low = 2023-11-14T22:13:20+00:00
-- m0v = 'up'
-- max_series = 10001
-- tenant = '00000000-0000-4000-8000-00000000000a'

rollup(1m, median) up;
!! ValueError: not rollup columns: ['median']

rollup_view(samples, sum) up;
!! ValueError: not a rollup view: 'samples'

rollup_view(rollups_1m; DROP TABLE x, sum) up;
!! ValueError: not a rollup view: 'rollups_1m; DROP TABLE x'

## metadata: series, label names and values, seen in [start - 10m, end]
series up{job="api"};
SELECT
  metric,
  labels
FROM vigil.series
WHERE
  (
    tenant_id = %(tenant)s AND first_seen <= %(high)s AND last_seen >= %(low)s
  )
  AND metric = %(m0v)s
  AND labels ->> %(m1n)s = %(m1v)s
LIMIT %(max_series)s;
-- high = 2023-11-14T23:13:20+00:00
-- low = 2023-11-14T22:03:20+00:00
-- m0v = 'up'
-- m1n = 'job'
-- m1v = 'api'
-- max_series = 10001
-- tenant = '00000000-0000-4000-8000-00000000000a'

series {__name__=~"node_.*", env!="dev"};
SELECT
  metric,
  labels
FROM vigil.series
WHERE
  (
    tenant_id = %(tenant)s AND first_seen <= %(high)s AND last_seen >= %(low)s
  )
  AND metric = ANY(
    %(m0v)s
  )
  AND COALESCE(labels ->> %(m1n)s, '') <> %(m1v)s
LIMIT %(max_series)s;
-- high = 2023-11-14T23:13:20+00:00
-- low = 2023-11-14T22:03:20+00:00
-- m0v = ['node_cpu_seconds_total']
-- m1n = 'env'
-- m1v = 'dev'
-- max_series = 10001
-- tenant = '00000000-0000-4000-8000-00000000000a'

series_count(500) http_requests_total{job=~"api|db"};
SELECT
  COUNT(*)
FROM (
  SELECT
    1
  FROM vigil.series
  WHERE
    (
      tenant_id = %(tenant)s AND first_seen <= %(high)s AND last_seen >= %(low)s
    )
    AND metric = %(m0v)s
    AND COALESCE(labels ->> %(m1n)s, '') = ANY(
      %(m1v)s
    )
  LIMIT %(cap)s
) AS matching;
-- cap = 500
-- high = 2023-11-14T23:13:20+00:00
-- low = 2023-11-14T22:03:20+00:00
-- m0v = 'http_requests_total'
-- m1n = 'job'
-- m1v = ['api', 'db']
-- tenant = '00000000-0000-4000-8000-00000000000a'

label_names up;
SELECT DISTINCT
  JSONB_OBJECT_KEYS(labels)
FROM vigil.series
WHERE
  (
    tenant_id = %(tenant)s AND first_seen <= %(high)s AND last_seen >= %(low)s
  )
  AND metric = %(m0v)s;
-- high = 2023-11-14T23:13:20+00:00
-- low = 2023-11-14T22:03:20+00:00
-- m0v = 'up'
-- tenant = '00000000-0000-4000-8000-00000000000a'

label_values(job) http_requests_total{env="prod"};
SELECT DISTINCT
  labels ->> %(label)s
FROM vigil.series
WHERE
  (
    tenant_id = %(tenant)s
    AND first_seen <= %(high)s
    AND last_seen >= %(low)s
    AND labels ->> %(label)s IS NOT NULL
  )
  AND metric = %(m0v)s
  AND labels ->> %(m1n)s = %(m1v)s;
-- high = 2023-11-14T23:13:20+00:00
-- label = 'job'
-- low = 2023-11-14T22:03:20+00:00
-- m0v = 'http_requests_total'
-- m1n = 'env'
-- m1v = 'prod'
-- tenant = '00000000-0000-4000-8000-00000000000a'

label_values(__name__) {job="api"};
SELECT DISTINCT
  metric
FROM vigil.series
WHERE
  (
    tenant_id = %(tenant)s AND first_seen <= %(high)s AND last_seen >= %(low)s
  )
  AND labels ->> %(m0n)s = %(m0v)s;
-- high = 2023-11-14T23:13:20+00:00
-- label = '__name__'
-- low = 2023-11-14T22:03:20+00:00
-- m0n = 'job'
-- m0v = 'api'
-- tenant = '00000000-0000-4000-8000-00000000000a'

## matcher_values: the candidate values a regex matcher is tested against
matcher_values(path) http_requests_total{job="api"};
SELECT DISTINCT
  labels ->> %(label)s
FROM vigil.series
WHERE
  (
    tenant_id = %(tenant)s AND labels ->> %(label)s IS NOT NULL
  )
  AND metric = %(m0v)s
  AND labels ->> %(m1n)s = %(m1v)s
LIMIT %(max_values)s;
-- label = 'path'
-- m0v = 'http_requests_total'
-- m1n = 'job'
-- m1v = 'api'
-- max_values = 10001
-- tenant = '00000000-0000-4000-8000-00000000000a'

matcher_values(__name__) {job="api"};
WITH RECURSIVE names(metric) AS (
  (
    SELECT
      metric
    FROM vigil.series
    WHERE
      tenant_id = %(tenant)s AND labels ->> %(m0n)s = %(m0v)s
    ORDER BY
      metric
    LIMIT 1
  )
  UNION ALL
  SELECT
    (
      SELECT
        series.metric
      FROM vigil.series
      WHERE
        (
          tenant_id = %(tenant)s AND series.metric > names.metric
        )
        AND labels ->> %(m0n)s = %(m0v)s
      ORDER BY
        series.metric
      LIMIT 1
    )
  FROM names
  WHERE
    names.metric IS NOT NULL
)
SELECT
  metric
FROM names
WHERE
  metric IS NOT NULL
LIMIT %(max_values)s;
-- m0n = 'job'
-- m0v = 'api'
-- max_values = 10001
-- tenant = '00000000-0000-4000-8000-00000000000a'
