# Two commands do all the set-up on a fresh machine: `make demo` and `make test`.
# The pinned CPU torch is installed before the project so that pip never resolves torch
# from the registry (which would pull several GB of CUDA wheels).

PYTHON ?= python3
VENV ?= .venv
TORCH_VERSION ?= 2.13.0
BIN := $(VENV)/bin
STAMP := $(VENV)/.ckptspec-installed
export OMP_NUM_THREADS ?= 1

.PHONY: demo test mutants bench schema clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q torch==$(TORCH_VERSION)
	$(BIN)/python -m pip install -q -e '.[test]'
	touch $@

demo: $(STAMP)
	$(BIN)/ckptspec demo

test: $(STAMP)
	$(BIN)/ckptspec schema --check
	$(BIN)/python -m pytest -n 2 -q

# The suite's self-test against every mutant trainer (fast form: each mutant runs only the tests
# of its requirements; `catch_matrix.py --full` runs the whole suite per mutant, ~30 min).
mutants: $(STAMP)
	$(BIN)/python tests/mutants/catch_matrix.py -n 2

bench: $(STAMP)
	$(BIN)/python benchmarks/bench_validate.py
	$(BIN)/python benchmarks/bench_checkpoint.py
	$(BIN)/python benchmarks/bench_conformance.py

schema: $(STAMP)
	$(BIN)/ckptspec schema

clean:
	rm -rf $(VENV) build *.egg-info
