# Convenience targets. The README's two commands need nothing but Python and git; these are for
# people with Docker (images, kind) and for the longer runs.
PYTHON ?= .venv/bin/python
IMAGE ?= taskqueue:dev
WORKER_IMAGE ?= taskqueue-worker:dev
CLUSTER ?= taskqueue

.PHONY: venv run test lint images images-test kind-e2e crd-sync bench

venv:
	python3 -m venv .venv && .venv/bin/pip install -q -c constraints.txt -e '.[test]'

# The broker (REST :8080, gRPC :9090, metrics :9091) on the embedded PostgreSQL, with a demo worker.
run:
	python3 -m venv .venv && .venv/bin/pip install -q -c constraints.txt -e . && .venv/bin/tq-broker --demo-worker

test: venv
	.venv/bin/ruff check . && .venv/bin/mypy && $(PYTHON) -m pytest

lint:
	.venv/bin/ruff check . && .venv/bin/ruff format --check . && .venv/bin/mypy

# The chart ships a copy of the CRD (charts cannot read files outside themselves).
crd-sync:
	cp crds/workerpool.yaml charts/taskqueue/files/workerpool.yaml

# Docker when it runs here, else podman with a stand-in base (scripts/build-images.sh says how).
images:
	IMAGE=$(IMAGE) WORKER_IMAGE=$(WORKER_IMAGE) bash scripts/build-images.sh

# Build the images with podman and run the images tier against them (what CI runs).
images-test: venv
	$(PYTHON) -m pytest tests/images -rA

# Needs Docker, kind, kubectl and helm: a whole install from images to a completed task.
kind-e2e: images
	IMAGE=$(IMAGE) CLUSTER=$(CLUSTER) bash scripts/kind-e2e.sh

bench:
	$(PYTHON) bench/bench_submit.py && $(PYTHON) bench/bench_drain.py && $(PYTHON) bench/bench_events.py

# ~45 min: 30 min steady load, then a transaction held open elsewhere for 10 min, 3 min recovery.
# Samples (not in git), summary and plot in bench/results/soak.{json,summary.json,png};
# see bench/README.md.
.PHONY: soak
soak:
	$(PYTHON) bench/bench_soak.py --minutes 30 --hold-minutes 10 --recovery-minutes 3 --name soak

# The long chaos profile: faults drawn from a seed for CHAOS_MINUTES (a third of them paired),
# then heal, drain and check the whole history. Summary printed; history kept in artifacts/.
# Replay a run with CHAOS_SEED=<the printed seed>.
CHAOS_MINUTES ?= 15
.PHONY: chaos
chaos: venv
	TQ_CHAOS_PROFILE=long TQ_CHAOS_MINUTES=$(CHAOS_MINUTES) $(if $(CHAOS_SEED),TQ_CHAOS_SEED=$(CHAOS_SEED)) \
		$(PYTHON) -m pytest tests/chaos -p no:cacheprovider -rA
