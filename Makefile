# The index of what a developer can do. Every target installs what it needs.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
CHROMIUM := /usr/bin/chromium

.PHONY: demo local test pytest faults lint types openapi lock clean synth layer bench-planner \
	console-screenshots bench-planner-shipped

# The client (client/pyproject.toml) is installed editable beside the server's package, and its
# wheels (its dependencies at the lock's pins, and its build backend, which pip freeze leaves out
# of the lock) are kept in $(WHEELS) so that tests/client/test_package.py can install it into a
# clean venv offline, as a customer would with `pip install ./client`.
WHEELS := build/wheels
CLIENT_BACKEND := setuptools==84.2.1
$(STAMP): requirements-lock.txt requirements.txt requirements-dev.txt pyproject.toml client/pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -r requirements-lock.txt
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --no-deps -e . -e ./client
	$(BIN)/python -m pip download --quiet --disable-pip-version-check --dest $(WHEELS) \
	  --only-binary :all: -c requirements-lock.txt ./client $(CLIENT_BACKEND)
	touch $(STAMP)

## make demo: the founding example on the local stack (quote, order, render, download).
demo: $(STAMP)
	$(BIN)/python -m infra.local.demo $(DEMO_ARGS)

## make local: run the local stack until Ctrl-C (prints the API URL and a key for `subconscious`).
## Orders, images, queued work and the key are kept in LOCAL_STATE across restarts
## (`make local LOCAL_STATE=` starts a fresh account; `rm -rf .local-state` forgets it all).
LOCAL_STATE ?= .local-state
local: $(STAMP)
	$(BIN)/python -m infra.local.stack $(if $(LOCAL_STATE),--state-dir $(LOCAL_STATE))

## make test: lint and format check, then types and the tests side by side (mypy is one process
## on one core for about 90 s, cold; the tests keep the other busy), the tests with branch
## coverage in PYTEST_WORKERS pytest-xdist processes. Four on two cores: half the suite waits on
## local-stack processes and deadlines, not on the CPU; worksteal keeps the long e2e tests from
## queueing behind one worker. Every test that binds a port asks for a free one.
PYTEST_WORKERS ?= 4
test: lint
	$(MAKE) --no-print-directory -j2 types pytest

pytest: $(STAMP) $(CHROMIUM)
	$(BIN)/python -m pytest -n $(PYTEST_WORKERS) --dist worksteal --cov --cov-report=term $(PYTEST_ARGS)

## The web console's browser test (tests/e2e/test_console.py) drives Debian's Chromium through
## Playwright (never `playwright install`: no browser download); apt-get runs only when it is missing.
$(CHROMIUM):
	@if command -v apt-get >/dev/null; then \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; \
	else echo "no apt-get here: install Chromium at $(CHROMIUM), or the browser test is skipped"; fi

## make console-screenshots: the browser test alone, its screenshots into docs/console/.
console-screenshots: $(STAMP) $(CHROMIUM)
	SUBC_CONSOLE_SCREENSHOTS=docs/console $(BIN)/python -m pytest -n 0 -p no:cacheprovider tests/e2e/test_console.py

## make faults: only the fault suite (one local stack per failure scenario, also part of
## make test), then its table of scenarios → figures (FAULTS_ARGS="--update docs/reliability.md"
## rewrites the published one).
FAULT_RESULTS := build/fault-results.jsonl
faults: $(STAMP)
	rm -f $(FAULT_RESULTS)
	SUBC_FAULT_RESULTS=$(FAULT_RESULTS) $(BIN)/python -m pytest -m faults -n $(PYTEST_WORKERS) $(PYTEST_ARGS)
	$(BIN)/python -m tests.e2e.fault_report $(FAULT_RESULTS) $(FAULTS_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

types: $(STAMP)
	$(BIN)/mypy

## make synth: the AWS stack into cdk.out/ offline (builds the Lambda layer first), checked by
## cdk-nag (AwsSolutions: every finding fixed or acknowledged with a reason) and cfn-lint.
## W3005: CDK makes each function depend on its role's policy explicitly; cfn-lint calls that
## redundant. Errors fail the target.
synth: $(STAMP)
	rm -rf cdk.out
	$(BIN)/python -m infra.cdk.app
	$(BIN)/cfn-lint --non-zero-exit-code error --ignore-checks W3005 -- cdk.out/*.template.json
	@echo "synth: cdk-nag and cfn-lint clean; template in cdk.out/"

## make layer: (re)build the Lambda layer alone (pip wheels for Lambda's platform) and print its size.
layer: $(STAMP)
	$(BIN)/python -m infra.cdk.assets build/layer

## make openapi: rewrite docs/openapi.json from the API's routes.
openapi: $(STAMP)
	$(BIN)/python -m functions.api.openapi > docs/openapi.json

## make bench-planner: the planner benchmark over MARKETS generated markets of the REPORT
## split plus the shipped spot traces, every workload: the distribution (median, worst) against
## the targets, a plot per workload (docs/planner-markets-*.png), 2 processes, < 15 min.
## make bench-planner-shipped: the detailed report on the shipped traces alone (cost vs slack
## plot, late / over-quote orders). Results in docs/planner-benchmark.md; BENCH_ARGS="--seed 2"
## etc. are passed on.
TRACES ?= ../shared/data/spot-traces
MARKETS ?= 20
bench-planner: $(STAMP)
	$(BIN)/python -m bench.planner --traces $(TRACES) --markets $(MARKETS) --split report \
	  --dist-plot docs/planner-markets.png --example $(BENCH_ARGS)

bench-planner-shipped: $(STAMP)
	$(BIN)/python -m bench.planner --traces $(TRACES) --plot docs/planner-cost-vs-slack.png \
	  --example --diagnose $(BENCH_ARGS)

## make lock: re-pin the whole environment after changing requirements*.txt.
lock:
	rm -rf /tmp/subconscious-lock && $(PY) -m venv /tmp/subconscious-lock
	/tmp/subconscious-lock/bin/pip install --quiet -r requirements-dev.txt
	( echo "# Every package of the development environment, pinned (pip freeze of requirements-dev.txt)."; \
	  echo "# Regenerate: make lock"; /tmp/subconscious-lock/bin/pip freeze ) > requirements-lock.txt

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .coverage demo-output cdk.out build
