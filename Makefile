# The two commands a newcomer types are `make lab` and `make test` (see README).
SHELL := /bin/bash
PYTHON := .venv/bin/python

# `$(or $(SIZES),1,10,50)` would split at the commas and keep only 1.
SIZES ?= 1,10,50
# Test files run side by side (pytest-xdist), each whole on one worker: an engine module's lab and stack are its own,
# and most of a test's time is waiting on Omni, the provider stand-in or the engine. 4 on 2 cores: measured in README.
TEST_WORKERS ?= 4

.PHONY: setup setup-lab lab lab-stop lab-pulumi drift survive adopt service-account-key backup bench test

# drift and adopt act on the lab stack unless STACK names another (e.g. STACK=prod).
STACK ?= lab
TOOLS_PATH := PATH="$(CURDIR)/.tools/bin:$(CURDIR)/.venv/bin:$$PATH"

setup:  ## venv + pinned toolchain, cached; with STACK=prod (any stack but lab) only what a real stack runs with
	@tools/bootstrap.sh $(if $(filter lab,$(STACK)),,--prod)

setup-lab:  ## venv + pinned toolchain + the lab's servers, whatever STACK says (the lab and the tests need them)
	@tools/bootstrap.sh

lab: setup-lab  ## start the lab, `pulumi up` the lab stack, print the outputs
	@$(PYTHON) -m lab.ctl up

lab-stop:
	@$(PYTHON) -m lab.ctl stop

lab-pulumi: setup-lab  ## any pulumi command on the lab stack: make lab-pulumi ARGS="preview --diff"
	@$(PYTHON) -m lab.ctl pulumi $(ARGS)

drift: setup  ## exit 0 no drift, 1 drift (summary + drift-report.json), 2 could not judge
ifeq ($(STACK),lab)
	@$(PYTHON) -m lab.ctl drift drift-report.json
else
	@$(TOOLS_PATH) $(PYTHON) -m components.cli.drift --stack $(STACK) --report drift-report.json
endif

survive: setup  ## per cluster: control planes per Proxmox node, and what losing each node leaves (exit 1: quorum lost)
ifeq ($(STACK),lab)
	@$(PYTHON) -m lab.ctl survive
else
	@$(TOOLS_PATH) $(PYTHON) -m components.proxmox.placement --stack $(STACK)
endif

adopt: setup  ## take over what already runs: the list, the plan, then (asked, or YES=1) one `up` in adoption mode
ifeq ($(STACK),lab)
	@$(PYTHON) -m lab.ctl adopt $(if $(YES),--yes)
else
	@$(TOOLS_PATH) $(PYTHON) -m components.cli.adoption --stack $(STACK) $(if $(YES),--yes)
endif

service-account-key: setup  ## a service account's key (specs/omni.yaml), once: NAME=drift [OUT=new file, made 0600]
ifeq ($(STACK),lab)
	@$(PYTHON) -m lab.ctl service-account-key $(NAME) $(if $(OUT),--out $(OUT))
else
	@$(TOOLS_PATH) $(PYTHON) -m components.cli.keys $(NAME) --stack $(STACK) $(if $(OUT),--out $(OUT))
endif

backup: setup  ## an etcd backup of a cluster now, waited for: CLUSTER=talos-prod-01 (fails with Omni's error when its backup does)
ifeq ($(STACK),lab)
	@$(PYTHON) -m lab.ctl backup $(CLUSTER)
else
	@$(TOOLS_PATH) $(PYTHON) -m components.cli.backup $(CLUSTER) --stack $(STACK)
endif

bench: setup-lab  ## wall time and call counts of up / preview / refresh on the lab, 1, 10 and 50 clusters
	@$(PYTHON) -m pip install --quiet -r requirements-bench.txt  # only the plot needs it
	@$(TOOLS_PATH) $(PYTHON) -m lab.bench --sizes $(SIZES) --out bench-results.md --plot docs/bench.png

test: setup-lab  ## every test: format, lint and types first, then unit, provider, tools, lab, engine
	@$(PYTHON) -m ruff format --check --quiet . && $(PYTHON) -m ruff check --quiet .
	@$(PYTHON) -m mypy
	@$(TOOLS_PATH) $(PYTHON) -m pytest -n $(TEST_WORKERS) --dist loadfile $(PYTEST_ARGS)
