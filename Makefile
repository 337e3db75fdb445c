# The two quickstart commands (`make reproduce`, `make test`) and their helpers.
# Every target creates the virtual environment first if it is missing.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
export PATH := $(abspath $(BIN)):$(PATH)
export DVC_NO_ANALYTICS := 1
export MLFLOW_ENABLE_SYSTEM_METRICS_LOGGING := false

.PHONY: install reproduce test test-fast lint dvc-repro dvc-sync why clean

$(STAMP): pyproject.toml requirements.lock setup.py $(shell find src -name "*.pyx" -o -name "*.pxi")
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements.lock
	$(BIN)/python -m pip install --quiet --no-build-isolation --no-deps -e .
	touch $(STAMP)

install: $(STAMP)  ## create .venv with the pinned dependencies and cimflow

reproduce: $(STAMP)  ## run the whole DAG on the embedded default data set
	CIMFLOW_PIPELINE_ID=make-$$(date +%Y%m%dT%H%M%S) snakemake --cores all

test: $(STAMP)  ## the full test suite (includes slow end-to-end tests)
	$(BIN)/python -m pytest

test-fast: $(STAMP)  ## unit tests only
	$(BIN)/python -m pytest -m "not slow"

lint: $(STAMP)  ## workflow lint and dvc.yaml staleness check
	snakemake --lint
	cimflow dvc-yaml --check

dvc-repro: $(STAMP)  ## the same DAG through DVC (serial, hash-based reruns)
	CIMFLOW_PIPELINE_ID=dvc-$$(date +%Y%m%dT%H%M%S) dvc repro

dvc-sync: $(STAMP)  ## after `dvc checkout`/`dvc pull`: mark restored files current for Snakemake
	snakemake --cores 1 --touch

why: $(STAMP)  ## what would rerun and why, in both front ends
	snakemake -n --quiet rules --rerun-triggers mtime params input code software-env
	dvc status

clean:  ## remove generated results (not the venv)
	rm -rf results logs reports/*.md reports/*.html reports/*.png .snakemake mlflow.db mlruns
