# The two entry points of the README:
#   make demo   set up .venv (if needed), make the synthetic ADE20K set, train, test, print mIoU
#   make test   set up .venv (if needed) and run the test suite
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.clusterseg-installed
DEMO_CONFIG ?= configs/demo/segformer_mit-b0_1xb8-300it_synthetic-ade20k-128x128.py
DEMO_DIR ?= work_dirs/demo
PYTEST_ARGS ?=

.PHONY: install demo test clean-venv

install: $(STAMP)

$(STAMP): setup.py requirements/runtime.txt requirements/mminstall.txt requirements/tests.txt requirements/nodeps.txt tools/install/setup_env.sh tools/install/build_mmcv.sh
	@bash tools/install/setup_env.sh

demo: $(STAMP)
	@bash tools/misc/demo.sh "$(PY)" "$(DEMO_CONFIG)" "$(DEMO_DIR)"

test: $(STAMP)
	$(PY) -m pytest tests $(PYTEST_ARGS)

clean-venv:
	rm -rf $(VENV)
