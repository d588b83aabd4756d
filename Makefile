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

# The adapters' and the Celery hooks' tests again on the oldest Django, Flask and Celery this
# package supports.
OLDEST ?= .venv-oldest
OLDEST_PINS = "django==4.2.*" "flask==2.3.*" "werkzeug==2.3.*" "celery[redis]==5.3.*" \
	"kombu==5.3.*"
OLDEST_TESTS = tests/test_django_middleware.py tests/test_django_settings.py \
	tests/test_flask_extension.py tests/test_coexistence.py tests/test_celery_worker.py \
	tests/test_celery_lifecycle.py

$(OLDEST)/.installed: pyproject.toml
	$(PYTHON) -m venv $(OLDEST)
	$(OLDEST)/bin/python -m pip install --quiet --upgrade pip
	$(OLDEST)/bin/python -m pip install --quiet -e ".[django,flask,celery]" $(OLDEST_PINS) \
		flask-login pytest pytest-timeout requests sentry-sdk \
		opentelemetry-instrumentation-django opentelemetry-instrumentation-flask \
		opentelemetry-instrumentation-celery
	touch $@

test: $(VENV)/.installed $(OLDEST)/.installed
	$(VENV)/bin/python -m pytest
	$(OLDEST)/bin/python -m pytest $(OLDEST_TESTS)

# Speed and cost measurements, printed as ratios; run on demand, never in CI.
bench: $(VENV)/.installed
	$(VENV)/bin/python -m pip install --quiet -e ".[bench]"
	$(VENV)/bin/python benchmarks/request_cost.py
	$(VENV)/bin/python benchmarks/celery_hooks.py
	$(VENV)/bin/python benchmarks/export_throughput.py
