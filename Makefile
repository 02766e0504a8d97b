# Two commands on a fresh machine with Python 3.11+:  `make serve`  and  `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin

.PHONY: serve test test-fast agents lint format bench coldstart invoke clean browser openapi

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	touch $@

serve: $(VENV)/.installed  ## the whole gateway on 127.0.0.1:8000, DynamoDB emulated in a child process, a key printed
	$(BIN)/gateway-local

# The playground's browser test drives Debian's Chromium; where apt-get may run (CI, root), install it.
browser:
	@command -v chromium >/dev/null 2>&1 && command -v chromedriver >/dev/null 2>&1 || \
	  { [ "$$(id -u)" = 0 ] && apt-get update -qq && apt-get install -y -qq chromium chromium-driver >/dev/null; } || \
	  echo "chromium not installed: the browser test will be skipped (it fails under CI=true)"

# The tiers are folders of tests/: unit, e2e (real servers on 127.0.0.1), lambda (sam build and the built
# functions run as Lambda runs them), docs (the deploy guide, the template, the OpenAPI document), browser, agents.
# `make test` runs them in two pytest processes at once, one a core: the unit and e2e tiers in front, and
# beside them the tiers that spend their time waiting on child processes (sam build, the emulator, Chromium,
# the agents' CLIs), whose report follows (build/test-tiers.log). Each process starts what its tiers use.
SIDE_TIERS  := tests/lambda tests/docs tests/browser tests/agents
FRONT_TIERS := tests $(SIDE_TIERS:%=--ignore=%)  # tests/unit, tests/e2e, and any module not yet in a tier
test: $(VENV)/.installed browser  ## lint, then every tier
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	@mkdir -p build; start=$$(date +%s); \
	  $(BIN)/pytest -o cache_dir=build/.pytest_cache_side $(SIDE_TIERS) > build/test-tiers.log 2>&1 & side=$$!; \
	  trap 'kill $$side 2>/dev/null' INT TERM; \
	  echo "pytest tests/unit tests/e2e (and $(SIDE_TIERS) beside it: build/test-tiers.log)"; \
	  $(BIN)/pytest $(FRONT_TIERS); front=$$?; wait $$side; beside=$$?; \
	  echo; echo "pytest $(SIDE_TIERS)"; cat build/test-tiers.log; \
	  echo "make test: $$(( $$(date +%s) - start )) s of pytest"; \
	  [ $$front -eq 0 ] && [ $$beside -eq 0 ]

test-fast: $(VENV)/.installed  ## the unit tier alone (no servers, builds or browser): under a minute
	@start=$$(date +%s); $(BIN)/pytest -q tests/unit; status=$$?; \
	  echo "make test-fast: $$(( $$(date +%s) - start )) s"; exit $$status

# The real coding agents (Claude Code and Codex from npm, the openai-agents SDK from PyPI, each pinned in
# tests/agents/ and installed into build/ on first use) through the local gateway onto a scripted upstream.
# Skipped without Node.js and npm, except under CI=true, where that fails.
agents: $(VENV)/.installed  ## the coding-agent tier alone: Claude Code, Codex and the openai-agents SDK end to end
	$(BIN)/pytest tests/agents

bench: $(VENV)/.installed  ## CPU/request vs a direct call and LiteLLM (installed into build/ on first use), memory sizing, overhead (≈5 minutes)
	$(BIN)/python -m bench.run

coldstart: $(VENV)/.installed  ## each function's init time and unzipped size, from a real sam build
	$(BIN)/python -m bench.coldstart

# One built function under the Lambda Runtime Interface Emulator with awslambdaric, as Lambda runs it,
# against moto: `make invoke FUNCTION=ModelsFunction EVENT=events/models-list.json` (lambdas/invoke.py).
# ChatFunction has no Python handler: its run.sh starts as the Web Adapter starts it, and EVENT is
# replayed to it as the adapter forwards it. `make invoke` alone lists the functions and their events.
# Needs python3.12 (pyenv's is found); SAM CLI and awslambdaric install themselves on first use.
invoke: $(VENV)/.installed  ## run a built function as Lambda would: FUNCTION=... EVENT=events/....json
	$(BIN)/python -m lambdas.invoke $(if $(FUNCTION),--function '$(FUNCTION)') $(if $(EVENT),--event '$(EVENT)')

openapi: $(VENV)/.installed  ## rewrite layers/gateway/gateway/openapi.json from the routers (a test fails while it differs)
	$(BIN)/python -c 'from gateway.api.app import write_openapi_document; write_openapi_document()'

lint: $(VENV)/.installed
	$(BIN)/ruff check .

format: $(VENV)/.installed
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

clean:
	rm -rf $(VENV) .venv-sam .aws-sam .pytest_cache .ruff_cache
