# The two commands a newcomer types are `make lab` and `make test` (see README).
SHELL := /bin/bash
PYTHON := .venv/bin/python

.PHONY: setup lab lab-stop lab-pulumi test

setup:  ## venv + pinned pulumi, language host and omnictl (built from Go modules, cached)
	@tools/bootstrap.sh

lab: setup  ## start the lab, `pulumi up` the lab stack, print the outputs
	@$(PYTHON) -m lab.ctl up

lab-stop:
	@$(PYTHON) -m lab.ctl stop

lab-pulumi: setup  ## any pulumi command on the lab stack: make lab-pulumi ARGS="preview --diff"
	@$(PYTHON) -m lab.ctl pulumi $(ARGS)

test: setup  ## every test: unit, provider, lab, engine
	@PATH="$(CURDIR)/.tools/bin:$(CURDIR)/.venv/bin:$$PATH" $(PYTHON) -m pytest $(PYTEST_ARGS)
