# The two commands a newcomer needs: `make run` and `make test`. Both build .venv first.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-$(shell cksum < requirements.txt | cut -d' ' -f1)

.PHONY: install run test bench browser

install: $(STAMP)

$(STAMP): requirements.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --disable-pip-version-check -q -r requirements.txt
	rm -f $(VENV)/.installed-* && touch $@

run: install
	$(BIN)/honcho start -f Procfile --port $${RUNBOARD_PORT:-8501}

test: install browser
	$(BIN)/python -m pytest tests -q

# Debian's Chromium for tests/e2e (Playwright drives it; it never downloads a browser of its own).
browser:
	@command -v chromium >/dev/null 2>&1 || { apt-get update -qq && apt-get install -y -qq chromium >/dev/null; } \
	  || echo "chromium could not be installed: the browser tests will be skipped"

bench: install
	$(BIN)/python bench/train_throughput.py
	$(BIN)/python bench/logging_overhead.py
	$(BIN)/python bench/dashboard_queries.py
	$(BIN)/python bench/queue_latency.py
	$(BIN)/python bench/predict_latency.py
	$(BIN)/python bench/checkpoint_overhead.py
