# Vigil's two set-up commands are `make demo` and `make test`; both install first.
VENV := .venv
BIN := $(VENV)/bin
# Tests use their own database on the local cluster, never the demo's.
TEST_DATABASE_URL ?= postgresql://vigil@127.0.0.1:55432/vigil_test

.PHONY: install demo test lint bench services-down

install:
	@ops/install

demo: install
	$(BIN)/vigil up

test: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	VIGIL_DATABASE_URL=$(TEST_DATABASE_URL) $(BIN)/pytest

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

bench: install
	$(BIN)/vigil services up
	$(BIN)/python bench/write_path.py

services-down:
	$(BIN)/vigil services down
