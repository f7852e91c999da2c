# kefu: `make run` starts a demo server, `make test` runs the tests but those marked
# slow (chaos, fuzz, conformance at short sizes); `KEFU_SLOW_TESTS=1 make test` runs all.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-dev

.PHONY: run test lint bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/kefu db upgrade
	$(BIN)/kefu demo
	$(BIN)/kefu serve

test: $(STAMP)
	bash scripts/browser-deps.sh
	$(BIN)/pytest -q -rs -n 2
	# the chat sockets on the plain transport (KEFU_TRANSPORT=plain; tests/support/servers.py)
	KEFU_TEST_TRANSPORT=plain $(BIN)/pytest -q -rs -n 2 tests/server/test_chat.py \
		tests/server/test_queue.py tests/server/test_lifecycle.py tests/server/test_errors.py \
		tests/reliability/test_resume.py tests/reliability/test_slow_reader.py -k "not idle"

lint: $(STAMP)
	$(BIN)/ruff check src tests bench
	$(BIN)/mypy

# The benchmark (bench/README.md): its own venv for picows, Django Channels and
# daphne; kefu itself runs from $(VENV). `make bench BENCH_ARGS=--quick` for ~2 min.
bench: $(STAMP)
	test -x bench/.venv/bin/python || $(PYTHON) -m venv bench/.venv
	bench/.venv/bin/pip install -q -r bench/requirements.txt
	bench/.venv/bin/python bench/run.py $(BENCH_ARGS)

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
