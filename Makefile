# Two commands do all the set-up on a fresh machine: `make demo` and `make test`.
# The pinned CPU torch (constraints.txt, the one place the pin is written) is installed before the
# project, and every install is constrained by it, so pip never resolves torch from the registry
# (which would pull several GB of CUDA wheels).

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.ckptspec-installed
export OMP_NUM_THREADS ?= 1

# $(call timed,NAME,COMMAND): run a tier, then print its wall time and the load average.
timed = start=$$(date +%s); $(2); rc=$$?; echo "tier $(1): $$(( $$(date +%s) - start )) s (load $$(cut -d' ' -f1-3 /proc/loadavg))"; exit $$rc

.PHONY: demo lint test test-fast test-core test-frameworks test-catch node-deps frameworks mutants mutation mutation-ci bench bench-record schema matrix clean

$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q -c constraints.txt torch
	$(BIN)/python -m pip install -q -c constraints.txt -e '.[test]'
	touch $@

# The third-party trainers of conformance/adapters/ (pyproject's `frameworks` extra), which
# `make test` runs through the suite; the constraints keep the pinned CPU torch.
FRAMEWORKS_STAMP := $(VENV)/.ckptspec-frameworks-installed
$(FRAMEWORKS_STAMP): $(STAMP)
	$(BIN)/python -m pip install -q -c constraints.txt -e '.[test,frameworks]'
	touch $@

frameworks: $(FRAMEWORKS_STAMP)

# Mutation testing with the suite as oracle (tools/mutation/mutation.py, docs/mutation.md): judges
# the pending mutants of the committed stratified sample for at most MUTATION_BUDGET minutes
# (resumable: run again to continue), recording the coverage map first when it is stale, then
# regenerates docs/mutation.md. `mutation-ci` re-judges, within 5 minutes, the killed sampled
# mutants of the modules a change touches and fails when one now survives. pyproject's `mutation`
# extra is installed with --no-deps so that pip resolves nothing (torch stays the pinned CPU build).
# `mutation` fails only if it could not run (exit 2).
MUTATION_BUDGET ?= 90
MUTATION_STAMP := $(VENV)/.ckptspec-mutation-installed
$(MUTATION_STAMP): $(STAMP)
	$(BIN)/python -m pip install -q --no-deps $$($(BIN)/python -c "import tomllib; \
		print(' '.join(tomllib.load(open('pyproject.toml', 'rb'))['project']['optional-dependencies']['mutation']))")
	touch $@

demo: $(STAMP)
	$(BIN)/ckptspec demo

# The tiers, each timed: core (everything but the two below), the third-party trainers through
# the suite, the mutant catch matrix; then the interpreter matrix (noxfile.py): the core of the
# suite on every other Python 3.11 on the machine (e.g. /usr/bin/python3), the torch-free tests on
# 3.10 and 3.13.
test: test-core test-frameworks test-catch
	@$(call timed,interpreters,$(BIN)/python -m nox)

# ajv (Node.js), the second JSON Schema validator of tests/spec/test_ajv_agreement.py, pinned, in
# .node/; without npm this does nothing and that test is skipped, saying so.
AJV_PACKAGES := ajv@8.20.0 ajv-formats@3.0.1
node-deps:
	@if ! command -v npm >/dev/null 2>&1; then echo "npm not found: the ajv agreement test will be skipped"; \
	elif [ "$$(cat .node/.installed 2>/dev/null)" != "$(AJV_PACKAGES)" ]; then \
		npm install --prefix .node --save-exact --no-audit --no-fund --loglevel=error $(AJV_PACKAGES) && \
		echo "$(AJV_PACKAGES)" > .node/.installed; fi

# ruff, configured in pyproject.toml (also the repo's own .pre-commit-config.yaml).
lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

# Everything that starts no process group or torch process (marker `slow` on the rest).
test-fast: $(STAMP)
	$(BIN)/python -m pytest -n 2 -q -m "not slow"

CORE := not frameworks and not catch_matrix
test-core: $(STAMP) $(MUTATION_STAMP) node-deps lint
	$(BIN)/ckptspec schema --check
	@$(call timed,core,$(BIN)/python -m pytest -n 2 -q -m "$(CORE)")

test-frameworks: $(FRAMEWORKS_STAMP)
	@$(call timed,frameworks,$(BIN)/python -m pytest -n 2 -q -m frameworks)

# The suite's self-test: every hand-written mutant must be caught (fast form; see `mutants`).
test-catch: $(STAMP)
	@$(call timed,catch matrix,$(BIN)/python -m pytest -n 2 -q -m catch_matrix)

# The suite's self-test against every mutant trainer (fast form: each mutant runs only the tests
# of its requirements; `catch_matrix.py --full` runs the whole suite per mutant, ~30 min).
mutants: $(STAMP)
	$(BIN)/python tests/mutants/catch_matrix.py -n 2

mutation: $(MUTATION_STAMP)
	rc=0; $(BIN)/python tools/mutation/mutation.py run --refresh-map --budget-minutes $(MUTATION_BUDGET) || rc=$$?; \
		$(BIN)/python tools/mutation/mutation.py report && test $$rc -ne 2

mutation-ci: $(MUTATION_STAMP)
	$(BIN)/python tools/mutation/mutation.py ci --budget-minutes 5

bench: $(STAMP)
	$(BIN)/python benchmarks/bench_validate.py
	$(BIN)/python benchmarks/bench_checkpoint.py
	$(BIN)/python benchmarks/bench_conformance.py

# Every benchmark, then the figures table of docs/benchmarks.md rewritten from what they printed (benchmarks/record.py).
bench-record: $(STAMP)
	$(BIN)/python benchmarks/record.py

schema: $(STAMP)
	$(BIN)/ckptspec schema

# docs/matrix.md and docs/matrix.html from the stored suite reports docs/matrix/*.json (refresh a report with the
# command in docs/conformance.md, then regenerate; tests/conformance/test_matrix.py checks it).
matrix: $(STAMP)
	$(BIN)/python -m ckptspec.conformance.matrix
	$(BIN)/python -m ckptspec.html_report docs/matrix docs/matrix.html

clean:
	rm -rf $(VENV) .nox .node build *.egg-info
