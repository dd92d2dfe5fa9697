# The only set-up a fresh machine needs: `make demo` and `make test` build .venv themselves.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

IMAGE ?= gen3wf-rotator:dev
BASE_IMAGE ?= python:3.11-slim
EXTRAS ?=

.PHONY: demo test bench lint clean venv wheels image

$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -c constraints.txt -e '.[dev,demo]'
	touch $@

venv: $(STAMP)

demo: $(STAMP)
	$(BIN)/rotator demo

lint: $(STAMP)
	$(BIN)/ruff check rotator tests bench

test: $(STAMP)
	$(BIN)/python -m pytest $(PYTEST_ARGS)

# The image installs these with --no-index: nothing is fetched during `docker build`.
wheels: $(STAMP)
	rm -rf dist/wheels
	$(BIN)/python -m pip wheel --quiet --disable-pip-version-check -c constraints.txt -w dist/wheels '.[demo]'

image: wheels
	docker build --build-arg BASE_IMAGE=$(BASE_IMAGE) --build-arg EXTRAS=$(EXTRAS) -t $(IMAGE) .

# Performance and memory targets (not part of `make test`).
bench: $(STAMP)
	$(BIN)/python bench/bench_rotator.py

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis *.egg-info dist build
