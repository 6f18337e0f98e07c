# Entry points for people and CI. `make help` lists them.
SHELL := /bin/bash
.DEFAULT_GOAL := help

VENV      ?= .venv
BIN       := $(VENV)/bin
export PATH := $(CURDIR)/$(BIN):$(PATH)
export ANSIBLE_CONFIG := $(CURDIR)/ansible.cfg

VERSION   ?= 1.0.0
LAB       ?= local
LABCTL    := python3 lab/labctl.py
# The local demo lab: two registry hosts behind a load balancer, one data host,
# one monitoring host that also runs the scheduled benchmarks.
LAB_HOSTS ?= --host registry1:registry --host registry2:registry --host data1:db,cache \
             --host lb1:lb --host mon1:monitoring,bench
# Longest first, so the lanes (MOLECULE_JOBS at a time) finish together.
SCENARIOS ?= release disaster_recovery all_in_one multi_host monitoring data_stores lab_smoke
MOLECULE_JOBS ?= 3
RUN_MOLECULE = bash tests/run_molecule.sh $(MOLECULE_JOBS) $(SCENARIOS)

APT_PACKAGES := systemd-container debootstrap iptables iproute2 openssh-client rsync \
                postgresql redis-server redis-sentinel haproxy prometheus prometheus-alertmanager \
                prometheus-pushgateway wrk python3-venv git make testssl.sh

.PHONY: help deps venv service-venv lab-up lab-down artifact deploy status demo \
        test lint sanity units unit lab-test service-test molecule rules-test clean

help: ## List the targets
	@grep -hE '^[a-zA-Z_-]+:.*## ' $(MAKEFILE_LIST) \
	  | sed -e 's/$$(MOLECULE_JOBS)/$(MOLECULE_JOBS)/g' -e 's/$$(VERSION)/$(VERSION)/g' -e 's/$$(LAB)/$(LAB)/g' \
	  | awk -F':.*## ' '{printf "  %-14s %s\n", $$1, $$2}'

deps: ## Install the Debian packages the lab and the tests need (root)
	apt-get update -q
	DEBIAN_FRONTEND=noninteractive apt-get install -y -q -o DPkg::Lock::Timeout=600 $(APT_PACKAGES)

$(BIN)/ansible-playbook: pyproject.toml
	python3 -m venv $(VENV)
	$(BIN)/pip install -q -U 'pip>=25.1'
	$(BIN)/pip install -q --group dev
	touch $@

venv: $(BIN)/ansible-playbook ## Create .venv with the pinned controller tools

service-venv: ## Create service/.venv for the registry service's own tests
	bash service/scripts/dev-venv.sh

lab-up: venv ## Boot the local lab hosts and write inventories/local/hosts.yml
	$(LABCTL) up --lab $(LAB) $(LAB_HOSTS)
	cp /var/lib/llmops-lab/labs/$(LAB)/inventory.yml inventories/local/hosts.yml
	ansible-playbook playbooks/lab_secrets.yml

lab-down: ## Stop the local lab and remove everything it made
	@echo "lab-down: stopping lab '$(LAB)' and removing its hosts, bridge and files (takes about a minute)..."
	@start=$$SECONDS; $(LABCTL) down --lab $(LAB) && rm -f inventories/local/hosts.yml \
	  && echo "lab-down: lab '$(LAB)' removed in $$((SECONDS - start)) s"

dist/schema-registry-$(VERSION).tar.gz:
	python3 service/build_artifact.py --version $(VERSION) --out dist/

artifact: dist/schema-registry-$(VERSION).tar.gz ## Build the service release artifact VERSION

deploy: venv artifact ## Deploy the whole stack (ansible-playbook playbooks/deploy.yml)
	ansible-playbook playbooks/deploy.yml

status: venv ## Show what every host serves, its health, disk and last backup
	ansible-playbook playbooks/status.yml

# Each phase is announced with the time so far and timed (about 11 minutes in all).
DEMO_PHASES ?= deps venv lab-up deploy
demo: ## From nothing: install, boot the lab, deploy, print the addresses
	@start=$$SECONDS; n=0; total=$(words $(DEMO_PHASES)); \
	for phase in $(DEMO_PHASES); do \
	  n=$$((n + 1)); t=$$SECONDS; \
	  echo "=== demo [$$n/$$total] $$phase: starting at +$$((SECONDS - start)) s"; \
	  $(MAKE) --no-print-directory $$phase || { echo "=== demo: $$phase FAILED after $$((SECONDS - t)) s"; exit 1; }; \
	  echo "=== demo [$$n/$$total] $$phase: done in $$((SECONDS - t)) s"; \
	done; \
	echo "=== demo: done in $$((SECONDS - start)) s"

lint: venv ## yamllint, ansible-lint (production), ruff, ansible-doc of every module, workflows, ansible-test sanity
	yamllint -s .
	ansible-lint
	ruff check .
	ruff format --check .
	bash tests/check_docs.sh
	check-jsonschema --builtin-schema vendor.github-workflows .github/workflows/*.yml
	$(MAKE) --no-print-directory sanity

sanity: venv ## ansible-test sanity on a copy under .cache/ansible-test/sanity/ansible_collections (tests/ansible_test.sh)
	bash tests/ansible_test.sh sanity

units: venv ## ansible-test units (tests/unit, run the way ansible-test runs a collection's unit tests)
	bash tests/ansible_test.sh units

unit: venv ## Unit tests of modules, module_utils and the lab tool
	pytest -q -n 2 tests/unit

lab-test: venv ## The lab tool's own end-to-end tests (boots and removes real hosts)
	pytest -q -p no:cacheprovider lab/tests

rules-test: ## promtool unit tests of every alert rule
	promtool test rules tests/prometheus_rules/*.yml

service-test: ## The registry service's tests against real PostgreSQL and Redis
	bash service/scripts/dev-venv.sh
	bash service/scripts/test-services.sh start
	service/.venv/bin/pytest -q service/tests

molecule: venv ## Every Molecule scenario on lab hosts ($(MOLECULE_JOBS) at a time, logs in .cache/molecule-logs)
	@$(RUN_MOLECULE)

# The tests with timeouts in them (unit, lab, service) run first on a quiet machine; lint
# has none, so it runs beside the Molecule scenarios (their ansible runs leave a core
# idle now and then). Molecule's summary, with any failures, comes last.
test: deps venv unit rules-test lab-test service-test ## Everything CI runs (installs what it needs first)
	@mkdir -p .cache; $(RUN_MOLECULE) >.cache/molecule.out 2>&1 & molecule=$$!; \
	$(MAKE) --no-print-directory -o $(BIN)/ansible-playbook lint; lint=$$?; \
	echo "=== lint done (exit $$lint), waiting for the Molecule scenarios"; \
	wait $$molecule; scenarios=$$?; cat .cache/molecule.out; \
	[ $$lint -eq 0 ] || echo "=== make test: lint FAILED (its output is above the Molecule summary)"; \
	[ $$lint -eq 0 ] && [ $$scenarios -eq 0 ]

clean: ## Remove build outputs (not the lab)
	rm -rf dist build .cache
