# fmtc: the two commands of a fresh machine are `make book` and `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.fmtc-installed
# The committed book was executed on `preview`. `make book` never re-executes a committed page: it
# executes the pages that have no executed copy (with PROFILE), builds the book strictly and lists
# the stale pages. Re-executing is `fmtc reproduce --profile quick` (~2.5 h on 2 cores, projected).
PROFILE ?= preview

.PHONY: install book test test-full lint benchmark clean-book

# Create the virtual environment if missing and install fmtc (editable) with the test tools.
$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

# Run every notebook on the embedded simulated cohort, then build the book strictly.
book: $(STAMP)
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/fmtc reproduce --missing-only --profile $(PROFILE)

# The default suite (about 10 minutes on 2 cores): every test but those marked slow, on two
# worker processes. test-full adds the slow end-to-end ones (the smoke book, long pretrainings).
PYTEST := PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/python -m pytest -n 2 --dist loadfile

test: $(STAMP)
	$(PYTEST) -m "not slow" --durations=20

test-full: $(STAMP)
	$(PYTEST) --durations=30

lint: $(STAMP)
	$(BIN)/ruff check fmtc tests benchmarks

benchmark: $(STAMP)
	$(BIN)/python benchmarks/bench_brainlm_forward.py
	$(BIN)/python benchmarks/bench_training_epoch.py
	$(BIN)/python benchmarks/bench_parallel.py
	$(BIN)/python benchmarks/bench_dask_allocator.py
	$(BIN)/python benchmarks/bench_pretraining.py

clean-book:
	rm -rf book/_build
