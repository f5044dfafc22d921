# Two commands do all the set-up: `make demo` and `make test`.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cat requirements.txt requirements-dev.txt | cksum | cut -d' ' -f1)
AZURITE := node_modules/.bin/azurite
PYTEST_WORKERS ?= 2
CHECKOV_VERSION := 3.3.30
CHECKOV_VENV := .venv-checkov
CHECKOV_STAMP := $(CHECKOV_VENV)/.installed-checkov-$(CHECKOV_VERSION)

.PHONY: setup demo up down reset test lint bench infra-check package clean

setup: $(STAMP) $(AZURITE)

$(STAMP): requirements.txt requirements-dev.txt
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	rm -f $(VENV)/.installed-*
	touch $@

$(AZURITE): package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	touch $@

# The demo starts from fresh data in .run/local each time; the commands it prints work after it.
demo: setup
	$(BIN)/python -m responders stack reset
	$(BIN)/python -m responders replay samples/events --execute

# The same stand-ins kept running in the background (for `func start`, `replay --target`), their
# endpoints in .run/local.env; `make down` stops them, `make reset` also wipes their data.
up: setup
	$(BIN)/python -m responders stack up

down:
	$(BIN)/python -m responders stack down

reset:
	$(BIN)/python -m responders stack reset

lint: setup
	$(BIN)/ruff check .

test: setup lint infra-check
	$(BIN)/python -m pytest -q -n $(PYTEST_WORKERS) tests

# checkov pins conflict with the app's, so it lives in its own virtual environment.
$(CHECKOV_STAMP):
	rm -rf $(CHECKOV_VENV)
	$(PY) -m venv $(CHECKOV_VENV)
	$(CHECKOV_VENV)/bin/python -m pip install --quiet --disable-pip-version-check checkov==$(CHECKOV_VERSION)
	touch $@

infra-check: $(CHECKOV_STAMP)
	mkdir -p .run
	$(CHECKOV_VENV)/bin/checkov -d infra --framework bicep --quiet --compact --skip-download \
		-o cli -o json --output-file-path console,.run/checkov.json
	$(CHECKOV_VENV)/bin/python infra/checkov_gate.py .run/checkov.json

# The Function app zip exactly as `azd deploy` builds it (honouring .funcignore); standard library only.
package:
	$(PY) infra/package.py --out .run/package.zip

bench: setup
	$(BIN)/python -m bench

clean:
	rm -rf $(VENV) node_modules .run .pytest_cache .ruff_cache
