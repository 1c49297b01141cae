# lhpipe: the two set-up commands are `make demo` and `make test`.
SHELL := /bin/bash
PY ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp

.PHONY: test demo install check unit integration stack-up stack-down stack-status graphviz clean bench mutation

# The editable install leaves lhpipe's own modules uncompiled, and with PYTHONDONTWRITEBYTECODE
# set (as on the project's machines) every `lhpipe` start would compile them all again (a third
# of `lhpipe run`'s start-up): compile them once here, as pip does for a regular install.
install: $(STAMP) graphviz
	@$(BIN)/python -m compileall -q lhpipe

$(STAMP): pyproject.toml
	@command -v $(PY) >/dev/null || { echo "error: $(PY) not found"; exit 2; }
	$(PY) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	@touch $(STAMP)

# `lhpipe graph --format svg|png` needs Graphviz's `dot`, from Debian.
graphviz:
	@command -v dot >/dev/null || { \
	  echo "installing graphviz from Debian"; \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq graphviz >/dev/null; }

check: install
	$(BIN)/ruff check lhpipe tests bench
	$(BIN)/ruff format --check lhpipe tests bench
	$(BIN)/mypy
	$(BIN)/lint-imports
# deploy/kubernetes, offline, against the Kubernetes 1.33 schemas kubernetes-validate ships (not
# kustomization.yaml, which is no Kubernetes object); a kind it has no schema for is only a WARN
# there (exit 0), so it fails the check here.
	@out=$$($(BIN)/kubernetes-validate --strict --kubernetes-version 1.33.0 $(filter-out %/kustomization.yaml,$(sort $(wildcard deploy/kubernetes/*.yaml))) 2>&1); \
	  rc=$$?; echo "$$out"; if grep -q '^WARN' <<<"$$out"; then rc=1; fi; exit $$rc

unit: install
	$(BIN)/pytest -m "not integration"

stack-up: install
	$(BIN)/lhpipe stack up

stack-down:
	@if [ -x $(BIN)/lhpipe ]; then $(BIN)/lhpipe stack down; fi

stack-status: install
	$(BIN)/lhpipe stack status

# Starts the stack (with Kafka Connect, for `connector` sources) once, runs the whole suite,
# stops the stack whatever the outcome.
test: check
	$(BIN)/lhpipe stack up --secure --with connect
	@rc=0; $(BIN)/pytest || rc=$$?; $(BIN)/lhpipe stack down || true; \
	  if [ $$rc -eq 5 ]; then echo "error: pytest collected no tests"; fi; exit $$rc

demo: install
	$(BIN)/lhpipe stack up --with connect
	$(BIN)/lhpipe demo pipelines/ --watch --port $(or $(DEMO_PORT),8080)

# The benchmarks that need no services, then those against the local stack (wrk from Debian
# is the load generator of bench/webhook.py).
bench: install
	@command -v wrk >/dev/null || { \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq wrk >/dev/null; }
	$(BIN)/python bench/lint.py
	$(BIN)/python bench/evaluate.py
	$(BIN)/python bench/lh_output.py
	$(BIN)/python bench/auth.py
	$(BIN)/lhpipe stack up
	$(BIN)/python bench/kafka_to_lh.py
	$(BIN)/python bench/idle_memory.py
	$(BIN)/python bench/webhook.py
	$(BIN)/python bench/scale.py

# Not part of `make test`: mutation testing of the modules listed under [tool.mutmut] in
# pyproject.toml, then the score per module (goal 90 %; docs/testing.md lists the survivors).
# MUTANTS narrows the run, e.g. MUTANTS='lhpipe.runtime.commit.*'.
mutation: install
	rm -rf mutants
	$(BIN)/mutmut run --max-children $(or $(JOBS),2) $(MUTANTS)
	$(BIN)/python tests/mutation_score.py

clean:
	rm -rf mutants $(VENV) .mypy_cache .ruff_cache .pytest_cache
