# `make demo` and `make test` install everything into .venv first.
VENV ?= .venv
PYTHON ?= python3
export LITELLM_LOCAL_MODEL_COST_MAP = True

.PHONY: demo test bench

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/python -m pip install --quiet --upgrade pip
	$(VENV)/bin/python -m pip install --quiet -e ".[test]"
	touch $@

# make demo FRAMEWORK=flask runs the Flask example instead of the Django one.
FRAMEWORK ?= django

demo: $(VENV)/.installed
	$(VENV)/bin/python example_projects/demo.py --framework $(FRAMEWORK)

test: $(VENV)/.installed
	$(VENV)/bin/python -m pytest

# Speed and cost measurements, printed as ratios; run on demand, never in CI.
bench: $(VENV)/.installed
	$(VENV)/bin/python -m pip install --quiet -e ".[bench]"
	$(VENV)/bin/python benchmarks/request_cost.py
	$(VENV)/bin/python benchmarks/celery_hooks.py
	$(VENV)/bin/python benchmarks/export_throughput.py
