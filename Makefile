# Two commands on a fresh clone:
#   make demo   set up everything, run the main job (notebook 01) headless, print its result
#   make test   set up everything, run the whole test suite (tests + notebooks under nbval)

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
CONSTRAINTS ?= .ci/constraints-cpu.txt

.PHONY: setup demo test bench clean

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml $(CONSTRAINTS)
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -c $(CONSTRAINTS) -e ".[torch,sklearn,tune,test]"
	touch $@

demo: setup
	$(PY) notebooks/run_notebook.py notebooks/01_distributed_training.ipynb

test: setup
	$(PY) -m pytest --nbval tests notebooks

bench: setup
	$(PY) -m pip install -q -c $(CONSTRAINTS) -e ".[bench]"
	$(PY) bench/launch.py
	$(PY) bench/tune.py

clean:
	rm -rf $(VENV) build dist *.egg-info
