# Every target installs what it needs on first use: a fresh clone needs no manual step.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
# A CPU build of torch by default (fast to install here). A GPU user overrides TORCH_SPEC / TORCH_PIP_ARGS,
# see README "Installing a CUDA build of torch".
TORCH_SPEC     ?= torch==2.13.0
TORCH_PIP_ARGS ?=
STAMP  := $(VENV)/.installed

STUDY  ?= studies/breast_cancer.yaml
SUITE  ?= studies/suite.yaml
PORT   ?= 5000
ARGS   ?=

.PHONY: install study suite ui export report screenshot perf perf-server test test-fast lint lock clean

# torch first (TORCH_SPEC), then lrbench with every other package at the version constraints.txt pins.
$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet $(TORCH_PIP_ARGS) "$(TORCH_SPEC)"
	$(BIN)/pip install --quiet -c constraints.txt -e ".[dev]"
	@touch $(STAMP)

install: $(STAMP)

study: $(STAMP)
	$(BIN)/lrbench study $(STUDY) $(ARGS)

# Every task of a suite (a study each), then the ranking across tasks: results/<suite>/suite.html.
suite: $(STAMP)
	$(BIN)/lrbench suite $(SUITE) $(ARGS)

ui: $(STAMP)
	$(BIN)/lrbench ui --study $(STUDY) --port $(PORT) $(ARGS)

export: $(STAMP)
	$(BIN)/lrbench export $(STUDY) $(ARGS)

report: $(STAMP)
	$(BIN)/lrbench report $(STUDY) $(ARGS)

# The README's picture of the report's first screen, from the default study's stores (run `make study`
# first); needs Chromium (Debian: apt-get install chromium).
screenshot: $(STAMP)
	$(BIN)/lrbench report $(STUDY) $(ARGS)
	$(BIN)/python tests/browser.py results/$(basename $(notdir $(STUDY)))/report.html docs/report.png

# Benchmarks beside the package (perf/), side by side in one run; see docs/performance.md.
perf: $(STAMP)
	$(BIN)/python -m perf storage
	$(BIN)/python -m perf $(ARGS)

perf-server: $(STAMP)
	$(BIN)/python -m perf server $(ARGS)

test: $(STAMP)
	$(BIN)/python -m pytest -q $(ARGS)

# The edit-run loop: everything but the tests marked slow (long training, servers, several processes).
test-fast: $(STAMP)
	$(BIN)/python -m pytest -q -m "not slow" $(ARGS)

lint: $(STAMP)
	$(BIN)/ruff check bench tests perf data
	$(BIN)/ruff format --check bench tests perf data
	$(BIN)/mypy

# Re-pin constraints.txt to the newest releases pyproject.toml admits, resolved in a new virtual environment
# beside TORCH_SPEC's torch (which stays out of the file). Run `make test` after it.
lock:
	rm -rf .lock-venv build
	$(PYTHON) -m venv .lock-venv
	.lock-venv/bin/pip install --quiet --upgrade pip
	.lock-venv/bin/pip install --quiet $(TORCH_PIP_ARGS) "$(TORCH_SPEC)"
	.lock-venv/bin/pip install --quiet ".[dev]"
	{ grep '^#' constraints.txt; .lock-venv/bin/pip freeze --exclude lrbench --exclude torch; } > constraints.txt.new
	mv constraints.txt.new constraints.txt
	rm -rf .lock-venv build

clean:
	rm -rf $(VENV) .lock-venv results .pytest_cache .mypy_cache .ruff_cache *.egg-info
