# The two README commands: `make run` and `make test`. Both work from a clean clone.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.stamp-install

.PHONY: run test install browser model bench clean

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev,rasa]'
	@touch $(STAMP)

install: $(STAMP)

# Debian's Chromium for the Playwright browser test (no browser download).
browser:
	@{ command -v chromium >/dev/null 2>&1 && fc-list 2>/dev/null | grep -qi "wenquanyi\|noto sans cjk"; } || { \
	  echo "installing Debian chromium and a Chinese font for the browser test"; \
	  (apt-get update -qq || true) && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium fonts-wqy-microhei >/dev/null; }

model: $(STAMP)
	$(BIN)/powerbot nlu train

run: $(STAMP)
	$(BIN)/powerbot db upgrade
	$(BIN)/powerbot nlu train
	$(BIN)/powerbot run

test: $(STAMP) browser
	$(BIN)/python -m pytest -q -p no:cacheprovider $(PYTEST_ARGS)

bench: $(STAMP)
	$(BIN)/python benchmarks/run_all.py

clean:
	rm -rf $(VENV) var models reports test-artifacts
