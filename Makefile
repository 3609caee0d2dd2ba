# framehub: `make run` starts the hub, `make test` runs every check. Both set up what they need.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test test-long lint contracts system-deps test-system-deps clean

$(STAMP): pyproject.toml
	$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 11), "framehub needs Python 3.11 or newer"'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

# command:package pairs the hub needs from the system, and what its tests need besides
# (Debian's Chromium for the console's browser test).
SYSTEM_PACKAGES := mosquitto:mosquitto
TEST_PACKAGES := $(SYSTEM_PACKAGES) chromium:chromium

system-deps:
	@sh scripts/system-deps.sh $(SYSTEM_PACKAGES)

test-system-deps:
	@sh scripts/system-deps.sh $(TEST_PACKAGES)

run: system-deps $(STAMP)
	$(BIN)/python run.py serve

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

# The generated contracts under docs/ (a test fails while they are stale).
contracts: $(STAMP)
	$(BIN)/python run.py contracts

# PYTEST_ARGS passes options through, e.g. `make test PYTEST_ARGS="--seed 42"`.
test: test-system-deps $(STAMP) lint
	$(BIN)/python -m pytest $(PYTEST_ARGS)

# The reliability suite at full length: every fault on its own, many kills, a longer soak.
test-long:
	$(MAKE) test PYTEST_ARGS="--long $(PYTEST_ARGS)"

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .hypothesis
