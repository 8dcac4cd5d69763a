# Two entry points on a fresh machine: `make demo` and `make test`.
# Each creates the stack's virtual environment when it is missing, installs
# tf_ardm in editable mode (with the [test] extra) and runs `pip check`, then
# runs. STACK picks the TensorFlow stack (setup.py pins each by Python version):
#   STACK=tf217 (default)  .venv,       Python 3.12, TF 2.17.1, tf-keras 2.17
#   STACK=tf214            .venv-tf214, Python 3.11, TF 2.14.1, Keras 2.14
# PYTHON=... overrides the interpreter the environment is created with.
# Targets: demo, test (the full suite, as CI runs it), test-fast (the fast
# tier, -m "not slow"), install, check (pip check), clean (this stack's venv).
# PYTEST_ARGS=... adds pytest arguments, e.g. PYTEST_ARGS=tests/coding.
# JOBS=N runs the tests in N worker processes (pytest-xdist, one test file per
# worker at a time, so module fixtures are built once); JOBS=0 runs them in
# this process.
STACK ?= tf217
ifeq ($(STACK),tf217)
VENV := .venv
PYTHON_VERSION := 3.12
else ifeq ($(STACK),tf214)
VENV := .venv-tf214
PYTHON_VERSION := 3.11
else
$(error STACK=$(STACK): choose tf217 or tf214)
endif
# The first python$(PYTHON_VERSION) that runs (a pyenv shim may not), else empty.
PYTHON ?= $(shell for p in python$(PYTHON_VERSION) \
  $$HOME/.pyenv/versions/$(PYTHON_VERSION).*/bin/python$(PYTHON_VERSION) \
  /usr/local/bin/python$(PYTHON_VERSION) /usr/bin/python$(PYTHON_VERSION); do \
  "$$p" -c 'import venv' 2>/dev/null && { echo "$$p"; break; }; done)
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
PYTEST_ARGS ?= tests
JOBS ?= 2
XDIST := -n $(JOBS) --dist loadfile

.PHONY: demo test test-fast install check clean

$(PY):
	@test -n "$(PYTHON)" || { echo "error: no working python$(PYTHON_VERSION) found" \
	  "(PATH, ~/.pyenv/versions, /usr/bin); install one or pass PYTHON=..." >&2; exit 1; }
	$(PYTHON) -m venv $(VENV)

# A venv of another Python (e.g. an old .venv of Python 3.11) would get the
# other stack's pins: refuse it rather than reinstall over it.
$(STAMP): setup.py | $(PY)
	@$(PY) -c 'import sys; sys.exit("%d.%d" % sys.version_info[:2] != "$(PYTHON_VERSION)")' \
	  || { echo "error: $(VENV) is Python $$($(PY) -c 'import platform; print(platform.python_version())')," \
	  "STACK=$(STACK) needs $(PYTHON_VERSION); remove it (make clean STACK=$(STACK))" >&2; exit 1; }
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	$(PY) -m pip check
	touch $(STAMP)

install: $(STAMP)

check: $(STAMP)
	$(PY) -m pip check

demo: $(STAMP)
	$(PY) -m tf_ardm.cli.demo

test: $(STAMP)
	$(PY) -m pytest -q $(XDIST) --durations=15 $(PYTEST_ARGS)

test-fast: $(STAMP)
	$(PY) -m pytest -q $(XDIST) -m "not slow" --durations=15 $(PYTEST_ARGS)

clean:
	rm -rf $(VENV) build *.egg-info
