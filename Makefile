# lightning_talos: `make help` lists the targets.
PY      ?= .venv/bin/python
VENV    := .venv/bin/activate
DATA    ?= synthetic
ROLE    ?= target
METHOD  ?= contrastive
# Presets are named after the dataset (the paper's recipe); synthetic runs the fast CPU preset.
EXP     ?= $(if $(filter synthetic,$(DATA)),synthetic_cpu,$(DATA))
MODEL   ?=
ARGS    ?=
SEEDS   ?= 1
# make demo SEEDS=3: seeds=[0,1,2] under runs/demo-3seeds, verdicts judged over the seeds.
DEMO    = $(if $(filter 1,$(SEEDS)),run.name=demo,run.name=demo-$(SEEDS)seeds seeds=[$(shell seq -s, 0 $$(($(SEEDS)-1)))])
RUN     = $(PY) -m lightning_talos
COMMON  = experiment=$(EXP) $(if $(MODEL),model=$(MODEL)) $(ARGS)

.DEFAULT_GOAL := help
.PHONY: help install test test-fast test-ddp lint format pretrain linear supervised talos attack aia audit report demo readme readme-runs bench slurm-up slurm-down clean

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*## "}; {printf "  %-12s %s\n", $$1, $$2}'
	@echo "  variables: DATA=$(DATA) EXP=$(EXP) MODEL= ROLE=$(ROLE) METHOD=$(METHOD) ARGS='key=value ...'"

.venv/.installed: pyproject.toml
	python3 -m venv .venv
	.venv/bin/pip install -q --upgrade pip
	# torch/torchvision first: on the project machines these two come from local disk.
	.venv/bin/pip install -q "torch==2.14.1" "torchvision==0.29.1" || .venv/bin/pip install -q torch torchvision
	.venv/bin/pip install -q -e ".[dev]"
	touch $@

install: .venv/.installed ## create .venv and install the project (editable, with dev extras)

test: .venv/.installed ## run the test suite (CPU, a few minutes)
	$(PY) -m pytest -q -x -p no:cacheprovider

test-fast: .venv/.installed ## unit tests only
	$(PY) -m pytest -q tests/unit

test-ddp: .venv/.installed ## two-process gloo DDP tests
	$(PY) -m pytest -q -m ddp

lint: .venv/.installed ## ruff check + format check
	.venv/bin/ruff check lightning_talos tests
	.venv/bin/ruff format --check lightning_talos tests

format: .venv/.installed ## ruff format + autofix
	.venv/bin/ruff format lightning_talos tests
	.venv/bin/ruff check --fix lightning_talos tests

pretrain: .venv/.installed ## SimCLR encoder: make pretrain DATA=cifar10 ROLE=target ARGS="data.root=..."
	$(RUN) pretrain role=$(ROLE) $(COMMON)

linear: .venv/.installed ## linear stage on a frozen encoder (METHOD=contrastive|talos)
	$(RUN) linear role=$(ROLE) method=$(METHOD) $(COMMON)

supervised: .venv/.installed ## supervised baseline for ROLE
	$(RUN) supervised role=$(ROLE) $(COMMON)

talos: .venv/.installed ## Talos encoder for ROLE (ARGS="talos.lambda=0.5")
	$(RUN) talos role=$(ROLE) $(COMMON)

attack: .venv/.installed ## membership inference on METHOD=supervised|contrastive|talos
	$(RUN) mia method=$(METHOD) $(COMMON)

aia: .venv/.installed ## attribute inference on METHOD
	$(RUN) aia method=$(METHOD) $(COMMON)

audit: .venv/.installed ## every stage + results.json + report.md for DATA
	$(RUN) audit $(COMMON)

report: .venv/.installed ## report.md from a run's results.json
	$(RUN) report $(COMMON)

demo: .venv/.installed ## the whole paper on the embedded synthetic dataset, CPU, < 10 min (SEEDS=3: three seeds)
	$(RUN) audit experiment=demo $(DEMO) $(ARGS)

readme: .venv/.installed ## rewrite every numbers table of README.md from its named run (runs/*, bench.json)
	$(RUN) readme

# The README's longer runs train two stages at a time (one thread each: see "Launchers").
PARALLEL = launcher=local launcher.parallel=2

readme-runs: .venv/.installed ## every run the README's tables are written from (~1.5 h on 2 cores; then make readme)
	$(RUN) audit experiment=demo run.name=demo
	$(RUN) audit experiment=demo run.name=demo-3seeds seeds=[0,1,2] $(PARALLEL)
	$(RUN) audit experiment=defences $(PARALLEL)
	$(RUN) bench
	$(RUN) audit experiment=synthetic_refs run.name=refs $(PARALLEL)
	$(RUN) sweep talos_settings $(PARALLEL)

bench: .venv/.installed ## throughput ratios -> bench.json
	$(RUN) bench $(ARGS)

slurm-up: ## (root) a single-node SLURM cluster on this machine: munged, slurmctld, slurmd
	scripts/slurm.sh up

slurm-down: ## (root) stop the cluster slurm-up started
	scripts/slurm.sh down

clean: ## remove caches (not runs/)
	rm -rf .pytest_cache .ruff_cache
