# Both targets bootstrap .venv on a fresh machine. CUDA users: make demo TORCH_SPEC="torch==2.13.0 --index-url https://download.pytorch.org/whl/cu128"
PYTHON ?= python3
TORCH_SPEC ?= torch==2.13.0
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# the venv's tools first: DeepSpeed builds its CPU ops with whichever ninja is on PATH
export PATH := $(abspath $(BIN)):$(PATH)

.PHONY: demo test venv clean

venv: $(STAMP)

$(STAMP): setup.py
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q $(TORCH_SPEC)
	$(BIN)/pip install -q -e ".[dev]"
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/xrobust demo

test: $(STAMP)
	$(BIN)/python -m pytest -ra tests

clean:
	rm -rf $(VENV) runs
