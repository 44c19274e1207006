# Every target sets itself up on a fresh clone: only python3 (3.11+) and make are assumed.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
DEV_STAMP := $(VENV)/.kinformer-dev
RUN_STAMP := $(VENV)/.kinformer-run
E2E_STAMP := $(VENV)/.kinformer-e2e

.PHONY: test demo e2e bench soak lint typecheck unit clean pg-install

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip

# Stamps depend on this Makefile too, so that a change of how kinformer is installed reinstalls.
$(RUN_STAMP): pyproject.toml Makefile | $(PY)
	$(PY) -m pip install -q -e '.[demo]'
	touch $@

$(DEV_STAMP): pyproject.toml Makefile | $(PY)
	$(PY) -m pip install -q -e '.[dev]'
	touch $@ $(RUN_STAMP)

lint: $(DEV_STAMP)
	$(VENV)/bin/ruff check .

typecheck: $(DEV_STAMP)
	$(VENV)/bin/mypy --strict kinformer

unit: $(DEV_STAMP)
	$(VENV)/bin/pytest -q

# The mirror's PostgreSQL tests start their own server from Debian's postgresql package; the
# test session installs it when missing (as root), this installs it once for a machine or CI.
pg-install:
	@ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || \
		(apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q postgresql)

# pytest's exit code 5 (no tests collected) is non-zero, so make fails on it too.
test: lint typecheck unit

$(E2E_STAMP): pyproject.toml Makefile $(DEV_STAMP)
	$(PY) -m pip install -q -e '.[dev,e2e]'
	touch $@

# Builds kube-apiserver, etcd and kubectl from their Go modules once (cached in
# ~/.cache/kinformer-e2e; only Go is needed), starts the control plane on loopback and runs
# tests/e2e; KINFORMER_E2E_KUBECONFIG=path uses that cluster (then only kubectl is built).
e2e: $(E2E_STAMP)
	tests/e2e/controlplane/build.sh $(if $(KINFORMER_E2E_KUBECONFIG),kubectl) >/dev/null
	$(VENV)/bin/pytest -q tests/e2e

# Runs benchmarks/ (builds the client-go peer with Go), writes benchmarks/results/latest.json
# and benchmarks/RESULTS.md, prints the table. BENCH_ARGS="--runs 3" etc. to change it.
bench: $(DEV_STAMP)
	$(PY) -m benchmarks.run $(BENCH_ARGS)

demo: $(RUN_STAMP)
	$(VENV)/bin/kinformer demo $(DEMO_ARGS)

clean:
	rm -rf $(VENV) build dist *.egg-info

# The long chaos soak (tests/soak.py): a million writes with faults from a fake API server in its
# own process (restarted as a new process along the way); prints its report as JSON and fails on
# a failed checkpoint, a missed delete or a leaked task, socket or process. SOAK_ARGS="--events 200000" etc.
soak: $(DEV_STAMP)
	$(PY) -m tests.soak --out benchmarks/results/soak.json $(SOAK_ARGS)
