# make demo   create .venv, install, run the demo on the embedded default (tiny offline model, synthetic pairs)
# make test   create .venv, install, run the test suite
VENV ?= .venv
PYTHON ?= python3
BIN = $(VENV)/bin
export HF_HUB_OFFLINE = 1
export HF_HUB_DISABLE_TELEMETRY = 1

.PHONY: setup demo test lint bench clean

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml constraints-cpu.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	# torch first, pinned: an unpinned torch would pull the newest CUDA build (gigabytes)
	$(BIN)/pip install -q -c constraints-cpu.txt torch
	$(BIN)/pip install -q -c constraints-cpu.txt -e '.[train,serve,review,dev]'
	touch $@

demo: setup
	$(BIN)/qhawkeye demo --out runs/demo

test: setup
	$(BIN)/pytest -q

lint: setup
	$(BIN)/ruff check src tests benchmarks scripts
	$(BIN)/ruff format --check src tests benchmarks scripts

bench: setup
	$(BIN)/python benchmarks/train_step.py
	$(BIN)/python benchmarks/scoring.py
	$(BIN)/python benchmarks/degrade.py

clean:
	rm -rf $(VENV) runs .pytest_cache
