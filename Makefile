# Two commands do all the set-up on a fresh machine: `make demo` and `make test`.
# The pinned CPU torch is installed before the project so that pip never resolves torch
# from the registry (which would pull several GB of CUDA wheels).

PYTHON ?= python3
VENV ?= .venv
TORCH_VERSION ?= 2.13.0
BIN := $(VENV)/bin
STAMP := $(VENV)/.ckptspec-installed
export OMP_NUM_THREADS ?= 1

.PHONY: demo test test-fast test-core node-deps frameworks mutants bench schema matrix clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q torch==$(TORCH_VERSION)
	$(BIN)/python -m pip install -q torch==$(TORCH_VERSION) -e '.[test]'
	touch $@

# The third-party trainers of conformance/adapters/ (pyproject's `frameworks` extra), which
# `make test` runs through the suite; torch is named again so that pip keeps the pinned CPU build.
FRAMEWORKS_STAMP := $(VENV)/.ckptspec-frameworks-installed
$(FRAMEWORKS_STAMP): $(STAMP)
	$(BIN)/python -m pip install -q torch==$(TORCH_VERSION) -e '.[test,frameworks]'
	touch $@

frameworks: $(FRAMEWORKS_STAMP)

demo: $(STAMP)
	$(BIN)/ckptspec demo

# The whole suite in .venv, then the interpreter matrix (noxfile.py): the suite again on every
# other Python 3.11 on the machine (e.g. /usr/bin/python3), the torch-free tests on 3.10/3.12/3.13.
test: test-core
	$(BIN)/python -m nox

# ajv (Node.js), the second JSON Schema validator of tests/spec/test_ajv_agreement.py, pinned, in
# .node/; without npm this does nothing and that test is skipped, saying so.
AJV_PACKAGES := ajv@8.20.0 ajv-formats@3.0.1
node-deps:
	@if ! command -v npm >/dev/null 2>&1; then echo "npm not found: the ajv agreement test will be skipped"; \
	elif [ "$$(cat .node/.installed 2>/dev/null)" != "$(AJV_PACKAGES)" ]; then \
		npm install --prefix .node --save-exact --no-audit --no-fund --loglevel=error $(AJV_PACKAGES) && \
		echo "$(AJV_PACKAGES)" > .node/.installed; fi

# Everything that starts no process group or torch process (marker `slow` on the rest).
test-fast: $(STAMP)
	$(BIN)/python -m pytest -n 2 -q -m "not slow"

test-core: $(FRAMEWORKS_STAMP) node-deps
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

# docs/matrix.md from the stored suite reports docs/matrix/*.json (refresh a report with the
# command in docs/conformance.md, then regenerate; tests/conformance/test_matrix.py checks it).
matrix: $(STAMP)
	$(BIN)/python -m ckptspec.conformance.matrix

clean:
	rm -rf $(VENV) .nox .node build *.egg-info
