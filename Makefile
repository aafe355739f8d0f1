# The two entry points of the README:
#   make demo   set up .venv (if needed), make the synthetic ADE20K set, train, test, print mIoU
#   make test   set up .venv (if needed) and run the test suite (CI: all of it)
#   make test-fast  the unit tier only (no tool-level e2e runs; tests/conftest.py E2E_MODULES)
#   make docs   set up .venv (if needed) and build the user guide into docs/en/_build/html
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.clusterseg-installed
DEMO_CONFIG ?= configs/demo/pacahead_pacavit-demo_1xb8-300it_synthetic-ade20k-128x128.py
DEMO_DIR ?= work_dirs/demo
PYTEST_ARGS ?=
# pytest-xdist workers (one per core; tests/conftest.py gives each worker its share of the threads);
# PYTEST_WORKERS=0 runs the suite in one process. Tests go to whichever worker is free.
PYTEST_WORKERS ?= auto
XDIST = $(if $(filter 0,$(PYTEST_WORKERS)),-p no:xdist,-n $(PYTEST_WORKERS) --dist load)

.PHONY: install demo test test-fast docs clean-venv

install: $(STAMP)

$(STAMP): setup.py requirements/runtime.txt requirements/mminstall.txt requirements/tests.txt requirements/deploy.txt requirements/docs.txt requirements/nodeps.txt tools/install/setup_env.sh tools/install/build_mmcv.sh
	@bash tools/install/setup_env.sh

demo: $(STAMP)
	@bash tools/misc/demo.sh "$(PY)" "$(DEMO_CONFIG)" "$(DEMO_DIR)"

test: $(STAMP)
	$(PY) -m pytest tests $(XDIST) $(PYTEST_ARGS)

test-fast: $(STAMP)
	$(PY) -m pytest tests -m "not e2e" $(XDIST) $(PYTEST_ARGS)

# -W: a warning (broken link, page outside the toctree, bad markup) fails the build
docs: $(STAMP)
	$(PY) -m sphinx -W --keep-going -b html docs/en docs/en/_build/html
	@echo "open docs/en/_build/html/index.html"

clean-venv:
	rm -rf $(VENV)
