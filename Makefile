# Tuning Desk: `make run` (demo on this machine) and `make test` (the whole suite).
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: run test install system-deps lint migrate demo clean

$(STAMP): requirements.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --upgrade pip
	$(VENV)/bin/pip install --quiet -r requirements.txt
	touch $(STAMP)

install: $(STAMP)

# Debian Chromium drives the browser tests (Playwright never downloads a browser here).
system-deps:
	@test -x /usr/bin/chromium || { \
	  echo "Installing Debian chromium for the browser tests..."; \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -qq && apt-get install -y -qq chromium; \
	  else sudo apt-get update -qq && sudo apt-get install -y -qq chromium; fi; }

migrate: install
	DEBUG=1 $(PY) manage.py migrate --noinput

# scripts/demo_env.sh keeps the demo's output quiet: no progress bars or FutureWarning lines.
demo: migrate
	@. scripts/demo_env.sh && DEBUG=1 $(PY) manage.py seed_demo

run: demo
	@DEBUG=1 exec scripts/run_demo.sh

test: install system-deps
	$(VENV)/bin/pytest

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

clean:
	rm -rf var/test var/broker var/cache
