# Two commands a new user needs (see README.md):
#   make demo   set up (virtual environment + install) and run the main job on the bundled sample
#   make test   set up and run the test suite
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python

.PHONY: setup demo test bench clean

$(VENV)/.installed: setup.py
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[cpu,test]"
	touch $@

setup: $(VENV)/.installed

demo: setup
	$(PY) -m tools.demo

# one test process per core (TEST_WORKERS=0: one process); a file's tests stay in one process,
# so its module fixtures are built once; files start in collection order, the long ones first
# (tests/conftest.py, LONG_FILES)
TEST_WORKERS ?= auto

test: setup
	$(PY) -m pytest -q -n $(TEST_WORKERS) --dist loadfile --no-loadscope-reorder tests

bench: setup
	$(PY) bench/run_all.py

clean:
	rm -rf $(VENV) build *.egg-info
