# Two commands do all set-up on a fresh machine: `make demo` and `make test`.
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

$(STAMP): pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	# The CPU build of torch that lies on local disk (an unpinned torch pulls a CUDA build).
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e ".[dev]"
	touch $(STAMP)

.PHONY: install demo test lint fast
install: $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/reverie demo

lint: $(STAMP)
	$(VENV)/bin/ruff check src tests
	$(VENV)/bin/mypy src/reverie

test: lint
	$(PY) -m pytest -q --durations=10

fast: $(STAMP)
	$(PY) -m pytest -q -m "not slow"
