# fmtc: the two commands of a fresh machine are `make book` and `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.fmtc-installed
# `make book` never re-executes a committed page: it executes the pages that have no executed
# copy (with PROFILE), builds the book strictly and lists the stale pages. Re-executing is
# `fmtc reproduce --profile quick` (README: its measured time).
PROFILE ?= quick

.PHONY: install book test test-full lint benchmark clean-book screenshots

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

# Screenshots of the built book for the README (headless Chromium: `apt install chromium`):
# the intro, the claims page and the main comparison, at 1400 px and on a 420 px phone.
SHOTS := intro 08_claims 02_main_comparison
CHROMIUM ?= chromium
screenshots:
	for page in $(SHOTS); do \
	  for width in 1400 420; do \
	    $(CHROMIUM) --headless --no-sandbox --disable-gpu --hide-scrollbars --force-device-scale-factor=1 \
	      --window-size=$$width,1600 --screenshot=book/_static/screenshot_$${page}_$$width.png \
	      book/_build/html/$$page.html; \
	  done; \
	done
