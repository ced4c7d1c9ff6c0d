# The two commands a newcomer needs: `make run` and `make test`. Both build .venv first.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-$(shell cksum < requirements.txt | cut -d' ' -f1)

.PHONY: install run test bench browser cluster postgres mutation docs

install: $(STAMP)

$(STAMP): requirements.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --disable-pip-version-check -q -r requirements.txt
	rm -f $(VENV)/.installed-* && touch $@

# Ctrl-C: honcho SIGTERMs every process and SIGKILLs what is left KILL_WAIT (5) s after the first one ended, with no
# option to change it; the worker needs longer to end its runs KILLED (up to its 30 s grace), so it gets 60 s here.
# Reading KILL_WAIT first makes this fail loudly if a honcho upgrade renames it.
run: install
	$(BIN)/python -c "import sys, honcho.manager as m; m.KILL_WAIT = max(m.KILL_WAIT, 60); \
	  from honcho.command import main; main(sys.argv[1:])" start -f Procfile --port $${RUNBOARD_PORT:-8501}

# Every test runs: browser and PostgreSQL are set up first; a skip is listed in the summary and fails under CI=true.
# Two xdist workers, a test file each at a time (its steps share its app); then the cluster files, which share
# one cluster (PostgreSQL, mlflow server, a Ray head), on their own. One OpenMP thread per process: the workers
# and the runs they start share two cores, and threads waiting on each other cost more than they bring
# (9 % of the wall time of the training test files, measured side by side; docs/testing.md).
# PYTEST_ARGS reaches both steps: `make test PYTEST_ARGS="-p randomly"` shuffles the order.
WORKERS ?= 2
test: install browser postgres
	OMP_NUM_THREADS=1 $(BIN)/python -m pytest tests -q -n $(WORKERS) --dist loadfile -m "not cluster" $(PYTEST_ARGS)
	OMP_NUM_THREADS=1 $(BIN)/python -m pytest tests -q -m cluster $(PYTEST_ARGS)

# The user guide: build it strictly into site/ (a broken link or missing page fails), then serve it on loopback.
DOCS_PORT ?= 8000
docs: install
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs serve --strict -a 127.0.0.1:$(DOCS_PORT)

# Debian's Chromium for tests/e2e (Playwright drives it; it never downloads a browser of its own).
browser:
	@command -v chromium >/dev/null 2>&1 || { apt-get update -qq && apt-get install -y -qq chromium >/dev/null; } \
	  || echo "chromium could not be installed: the browser tests will be skipped (a failure under CI=true)"

# The team setup on this machine: PostgreSQL, mlflow server, a Ray head, a worker on Ray, the dashboard.
cluster: install postgres
	$(BIN)/python -m pipeline.cluster

# Debian's PostgreSQL server for `make cluster` and tests/cluster (they start and stop their own); `make test` runs it.
postgres:
	@ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || { apt-get update -qq && apt-get install -y -qq postgresql >/dev/null \
	  && { pg_lsclusters -h 2>/dev/null | while read v c rest; do pg_ctlcluster "$$v" "$$c" stop 2>/dev/null; done; true; }; } \
	  || echo "PostgreSQL could not be installed: make cluster needs it, and tests/cluster will be skipped (a failure under CI=true)"

# Mutation testing (mutmut 3, set up in setup.cfg; a bench, not part of `make test`): each mutant of these modules
# against the fast tests that run its function, then the share killed per module. Narrow it with MUTATE=...
MUTATE ?= pipeline.training.state pipeline.runs.checkpoints pipeline.queue.jobs pipeline.runs.lifecycle \
          pipeline.training.engine pipeline.training.calibration pipeline.serving.paired
mutation: install
	$(BIN)/mutmut run --max-children $${RUNBOARD_MUTATION_JOBS:-1} $(foreach m,$(MUTATE),"$(m).*")
	$(BIN)/python bench/mutation_score.py $(MUTATE)

bench: install
	$(BIN)/python bench/train_throughput.py
	$(BIN)/python bench/logging_overhead.py
	$(BIN)/python bench/dashboard_queries.py
	$(BIN)/python bench/queue_latency.py
	$(BIN)/python bench/predict_latency.py
	$(BIN)/python bench/explain_checks.py
	$(BIN)/python bench/cluster_reads.py
	$(BIN)/python bench/compare_sampled.py
	$(BIN)/python bench/checkpoint_overhead.py
