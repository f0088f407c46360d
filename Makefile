# sutazai.ops — developer and operator entry points.
#   make stable   set up and run playbooks/stable.yml against the local inventory
#   make test     the whole suite (test bed, set-up, unit, integration, sanity, lint, molecule)
SHELL := /bin/bash
.DEFAULT_GOAL := help

ROOT := $(CURDIR)
VENV := $(ROOT)/.venv
PYTHON := $(VENV)/bin/python
SYSTEM_PYTHON ?= python3
COLLECTION_LINK := $(ROOT)/.collections/ansible_collections/sutazai/ops
SETUP_STAMP := $(VENV)/.stamp-$(shell cat requirements.txt | sha256sum | cut -c1-12)

export PATH := $(VENV)/bin:$(PATH)
export ANSIBLE_CONFIG := $(ROOT)/ansible.cfg
export PYTHONPATH := $(ROOT)/.collections
export PYTHONDONTWRITEBYTECODE := 1
export MOLECULE_NO_LOG := false

.PHONY: help setup testbed stable emergency dev remove test unit integration sanity lint molecule vm bench build clean

help:
	@echo "make stable     set up, then run playbooks/stable.yml on the local inventory"
	@echo "make remove     undo make stable (playbooks/remove.yml): monitor, stack and swap file removed, volumes kept"
	@echo "make test       the whole suite: testbed, setup, unit, integration, sanity, lint, molecule"
	@echo "make setup      .venv with the Python dependencies; the checkout importable as sutazai.ops"
	@echo "make testbed    Docker engine, Compose v2 and the local test images (idempotent)"
	@echo "make unit | integration | sanity | lint | molecule | bench | build"
	@echo "make vm         the cgroup v2 lane: a QEMU guest (systemd, Docker systemd driver), built once and cached"

$(SETUP_STAMP): requirements.txt
	@bash scripts/python-env.sh $(SYSTEM_PYTHON) $(VENV)
	$(PYTHON) -m pip install -q --disable-pip-version-check -r requirements.txt
	@rm -f $(VENV)/.stamp-* && touch $@

$(COLLECTION_LINK):
	@mkdir -p $(dir $@)
	@ln -sfn ../../.. $@

setup: $(SETUP_STAMP) $(COLLECTION_LINK)

testbed:
	@bash testbed/testbed.sh

# stable and dev first make sure of Docker, Compose v2 and the local image set (testbed/testbed.sh: idempotent,
# nothing is fetched from a registry); emergency sets up nothing: it is for a host going down now.
stable dev: setup
	@bash testbed/testbed.sh
	ansible-playbook playbooks/$@.yml

emergency: setup
	ansible-playbook playbooks/emergency.yml

# undo make stable: monitor, stack (volumes kept) and swap file removed
remove: setup
	ansible-playbook playbooks/remove.yml

unit: setup
	$(PYTHON) -m pytest -q tests/unit

integration: setup
	$(PYTHON) -m pytest -q --durations=25 tests/integration

sanity: setup
	@bash testbed/sanity.sh

lint: setup
	yamllint -s .
	ansible-lint --profile production

molecule: setup
	@bash testbed/molecule.sh

vm: setup
	@bash testbed/vm/lane.sh $(VM_ARGS)

bench: setup
	@set -e; for b in bench/*/bench.py; do echo "== $$b"; $(PYTHON) $$b; done

build: setup
	ansible-galaxy collection build --force --output-path .build

test:
	@bash testbed/suite.sh

clean:
	rm -rf .build tests/output .pytest_cache
