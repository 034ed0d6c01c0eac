# Trapwise. `make demo` sets everything up and serves the app; `make test` runs the tests.
SHELL := /bin/bash
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
HOST ?= 127.0.0.1
PORT ?= 8000

.PHONY: venv demo serve test bench lint clean

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -e '.[dev]'
	@touch $(STAMP)

venv: $(STAMP)

demo: venv
	$(PY) manage.py migrate --noinput
	$(PY) manage.py demo_setup
	@$(MAKE) --no-print-directory serve

# A real Celery worker in the background and the web server in the foreground; Ctrl-C stops both.
serve: venv
	@mkdir -p var/log
	@$(VENV)/bin/celery -A annotator worker --pool=solo --loglevel=INFO \
	    --logfile=var/log/celery.log --pidfile=var/celery-worker.pid & \
	  worker=$$!; \
	  trap 'kill $$worker 2>/dev/null; wait $$worker 2>/dev/null' EXIT INT TERM; \
	  echo ""; \
	  echo "Trapwise is running at http://$(HOST):$(PORT)/  (log in with a user from var/demo-credentials.txt)"; \
	  echo "Celery worker log: var/log/celery.log. Press Ctrl-C to stop the server and the worker."; \
	  echo ""; \
	  $(PY) manage.py runserver --noreload $(HOST):$(PORT)

test: venv
	$(PY) -m pytest

bench: venv
	$(PY) -m benchmarks

lint: venv
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy .

clean:
	rm -rf var
