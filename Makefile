# camcount: `make demo` and `make test` work on a fresh clone; each installs
# what is missing first (a virtualenv in .venv, the package and its tools).

PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-$(shell cat pyproject.toml | cksum | cut -d' ' -f1)

.PHONY: install demo serve test lint typecheck bench bench-accuracy bench-deps models clean

install: $(STAMP)

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev,onnx]'
	@rm -f $(VENV)/.installed-*
	@touch $@

models: install
	$(PY) -m camcount.cli models fetch

demo: install models
	$(PY) -m camcount.cli demo

# The pipeline, API and dashboard on the sample videos, looped, until Ctrl-C
# (prints the dashboard's URL; docs/api.md).
serve: install models
	$(PY) -m serve_app.watch

test: install models
	$(PY) -m pytest

lint: install
	$(VENV)/bin/ruff check .

typecheck: install
	$(VENV)/bin/mypy

bench-deps: install
	$(PY) -m pip install --quiet -e '.[bench]'
	$(PY) -m pip install --quiet --no-deps 'trackers==2.6.1'

bench: bench-deps
	$(PY) bench/tracking.py

# Real clips with counted truth (tests/data/truth.yaml); runs the person
# detector once per clip (cached under /tmp/camcount-accuracy).
bench-accuracy: bench-deps models
	$(PY) bench/accuracy.py

clean:
	rm -rf var .pytest_cache .hypothesis
