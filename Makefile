# Two commands on a fresh clone:
#   make demo   set up everything, run the main job (notebook 01) headless, print its result
#   make test   set up everything, run the whole test suite (tests + notebooks under nbval)

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
CONSTRAINTS ?= .ci/constraints-cpu.txt
# TensorFlow for CPU machines: the CPU build, and the tf_keras of the same release. tf_keras goes in
# without its dependencies: it declares `tensorflow`, which would pull the full build next to the CPU one.
TF_CPU ?= tensorflow-cpu==2.21.0
TF_KERAS ?= tf_keras==2.21.0

.PHONY: setup demo test bench clean

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml $(CONSTRAINTS) Makefile labextension/package.json labextension/package-lock.json
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -c $(CONSTRAINTS) -e ".[torch,sklearn,tune,test]"
	$(PY) -m pip install -q -c $(CONSTRAINTS) "$(TF_CPU)"
	$(PY) -m pip install -q --no-deps "$(TF_KERAS)"
	PATH="$(abspath $(VENV))/bin:$$PATH" $(VENV)/bin/jupyter labextension develop --overwrite . >/dev/null  # Lab loads the build in place
	touch $@

demo: setup
	$(PY) notebooks/run_notebook.py notebooks/01_distributed_training.ipynb

test: setup
	$(PY) -m pytest --nbval --nbval-sanitize-with trainorch_jupyter/nbval_sanitize.cfg tests notebooks

bench: setup
	$(PY) -m pip install -q -c $(CONSTRAINTS) -e ".[bench]"
	$(PY) bench/launch.py
	$(PY) bench/monitoring.py
	$(PY) bench/frameworks.py
	$(PY) bench/tune.py
	$(PY) bench/validate.py

clean:
	rm -rf $(VENV) build dist *.egg-info
