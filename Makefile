# The only set-up a fresh machine needs: `make demo` and `make test` build .venv themselves.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

# Image name: the chart's and the sidecar's default (gen3wf-rotator:<appVersion>); with
# REGISTRY=<registry> (e.g. 123456789012.dkr.ecr.us-east-1.amazonaws.com) it is prefixed.
VERSION := $(shell sed -n 's/^appVersion: *"*\([^"]*\)"*$$/\1/p' helm/rotator/Chart.yaml)
REGISTRY ?=
IMAGE ?= $(if $(REGISTRY),$(patsubst %/,%,$(REGISTRY))/)gen3wf-rotator:$(VERSION)
BASE_IMAGE ?= python:3.11-slim
EXTRAS ?=

.PHONY: demo test bench chaos lint clean venv wheels image push

$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -c constraints.txt -e '.[dev,demo]'
	touch $@

venv: $(STAMP)

# The demo needs only the runtime and the emulator, not the development tools.
DEMO_STAMP := $(VENV)/.installed-demo
$(DEMO_STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --disable-pip-version-check --progress-bar on -c constraints.txt -e '.[demo]'
	touch $@

# make demo DEMO_ARGS="--store gen3workflow-db": the service's own table as the store (needs PostgreSQL's binaries).
DEMO_ARGS ?=
demo: $(DEMO_STAMP)
	$(BIN)/rotator demo $(DEMO_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check rotator tests bench scripts chaos

test: $(STAMP)
	$(BIN)/python -m pytest $(PYTEST_ARGS)

# The image installs these with --no-index: nothing is fetched during `docker build`. The
# demo extra's wheels are built too, so one set serves the production and the demo image.
wheels: $(STAMP)
	rm -rf dist/wheels
	$(BIN)/python -m pip wheel --quiet --disable-pip-version-check -c constraints.txt -w dist/wheels '.[demo]'

# Production image (no extra) unless EXTRAS=demo.
image: wheels
	docker build --build-arg BASE_IMAGE=$(BASE_IMAGE) --build-arg EXTRAS=$(EXTRAS) -t $(IMAGE) .

# make push REGISTRY=<registry>: build and push <registry>/gen3wf-rotator:<version>, the image
# to set as the chart's image.repository (tag: the chart's appVersion) and in the sidecar.
push:
	@test -n "$(REGISTRY)" || { echo "make push needs REGISTRY=<registry>, e.g. REGISTRY=123456789012.dkr.ecr.us-east-1.amazonaws.com"; exit 2; }
	@test -z "$(EXTRAS)" || { echo "make push pushes the production image: leave EXTRAS empty"; exit 2; }
	$(MAKE) image IMAGE=$(IMAGE)
	docker push $(IMAGE)

# The fault-injection suite (not part of `make test`): the full sets; CI runs CHAOS_ARGS=--quick.
CHAOS_ARGS ?=
chaos: $(STAMP)
	$(BIN)/python chaos/run.py $(CHAOS_ARGS)

# Performance and memory targets (not part of `make test`).
bench: $(STAMP)
	$(BIN)/python bench/bench_rotator.py

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis *.egg-info dist build
