# Two commands on a fresh machine with Python 3.11+:  `make serve`  and  `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin

.PHONY: serve test lint format bench coldstart clean browser

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	touch $@

serve: $(VENV)/.installed  ## the whole gateway on 127.0.0.1:8000, DynamoDB emulated, a key printed
	$(BIN)/gateway-local

# The playground's browser test drives Debian's Chromium; where apt-get may run (CI, root), install it.
browser:
	@command -v chromium >/dev/null 2>&1 && command -v chromedriver >/dev/null 2>&1 || \
	  { [ "$$(id -u)" = 0 ] && apt-get update -qq && apt-get install -y -qq chromium chromium-driver >/dev/null; } || \
	  echo "chromium not installed: the browser test will be skipped (it fails under CI=true)"

test: $(VENV)/.installed browser  ## lint, then every test
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/pytest

bench: $(VENV)/.installed  ## the gateway's overhead against direct-to-upstream (≈5 minutes)
	$(BIN)/python -m bench.run

coldstart: $(VENV)/.installed  ## each function's init time and unzipped size, from a real sam build
	$(BIN)/python -m bench.coldstart

lint: $(VENV)/.installed
	$(BIN)/ruff check .

format: $(VENV)/.installed
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

clean:
	rm -rf $(VENV) .venv-sam .aws-sam .pytest_cache .ruff_cache
