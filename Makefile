# Both targets bootstrap .venv on a fresh machine. CUDA users: make demo TORCH_SPEC="torch==2.13.0 --index-url https://download.pytorch.org/whl/cu128"
PYTHON ?= python3
TORCH_SPEC ?= torch==2.13.0
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# the venv's tools first: DeepSpeed builds its CPU ops with whichever ninja is on PATH
export PATH := $(abspath $(BIN)):$(PATH)

.PHONY: demo test test-large bench-gpu venv clean

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

# XLM-R Large at full size on 2 CPU ranks (~20 min, ~16 GiB); `make test` skips it
test-large: $(STAMP)
	XROBUST_LARGE=1 $(BIN)/python -m pytest -ra -s tests/test_xlmr_large.py

# on a GPU machine: XLM-R Large ZeRO-3 bf16 step time, MFU, memory, kernel bandwidth (docs/BENCHMARKS.md)
bench-gpu: $(STAMP)
	$(BIN)/xrobust bench gpu --json bench-gpu.json

clean:
	rm -rf $(VENV) runs
