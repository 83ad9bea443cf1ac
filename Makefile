# Vigil's two set-up commands are `make demo` and `make test`; both install first.
VENV := .venv
BIN := $(VENV)/bin
# Tests use their own database on the local cluster, never the demo's.
TEST_DATABASE_URL ?= postgresql://vigil@127.0.0.1:55432/vigil_test

.PHONY: install demo test fuzz lint bench bench-ingest bench-query bench-rollup services-down proto

install:
	@ops/install

demo: install
	$(BIN)/vigil up

test: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	VIGIL_DATABASE_URL=$(TEST_DATABASE_URL) $(BIN)/pytest

# The property-based tests (Hypothesis marks them `hypothesis`) with random seeds and
# many more examples than `make test`'s fixed ones; pin what it finds with @example.
# Failures are kept in .hypothesis/ and replayed first on the next run.
fuzz: install
	$(BIN)/vigil services up
	HYPOTHESIS_PROFILE=fuzz VIGIL_DATABASE_URL=$(TEST_DATABASE_URL) $(BIN)/pytest -m hypothesis --timeout=0

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

bench: install
	$(BIN)/vigil services up
	$(BIN)/python bench/write_path.py

bench-ingest: install
	$(BIN)/vigil services up
	$(BIN)/python bench/ingest.py --api-workers 2

# Loads its data set once (about 10 minutes at full size here, plus about 10 for the
# rollup tiers: 1m/1h/1d of the raw day, 29 days of 1h/1d synthesised) and reuses it.
bench-query: install
	$(BIN)/vigil services up
	$(BIN)/python bench/query.py

# Rollup and repair jobs on 10k series, and the repair of a 30-minute backfill of 100k
# series (18 M samples) beside its plain INSERT ... SELECT ceiling and the ingest rate;
# its own database, recreated each run (~8 minutes; --backfill-hosts 0: ~3 minutes).
bench-rollup: install
	$(BIN)/vigil services up
	$(BIN)/python bench/rollup.py

services-down:
	$(BIN)/vigil services down

# Regenerates ingest/wire/*_pb2.py(i) from proto/; the generated files are committed.
PROTOS := proto/vigil/ingest/v1/ingest.proto proto/vigil/bus/v1/bus.proto proto/prometheus/remote.proto
proto: install
	for file in $(PROTOS); do \
		PATH=$(BIN):$$PATH $(BIN)/python -m grpc_tools.protoc -I $$(dirname $$file) --python_out=ingest/wire \
			--mypy_out=ingest/wire $$file || exit 1; \
	done
