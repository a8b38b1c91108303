# jexida-cluster: `make demo` and `make test` install what they need, then run.
SHELL := /bin/bash
.DEFAULT_GOAL := help
BIN := $(CURDIR)/.venv/bin
export PATH := $(BIN):$(PATH)
export CONTAINERS_CONF := $(CURDIR)/jexida_lab/containers.conf
PYTEST_ARGS ?=
# The tests' own home for everything Ansible, molecule, ansible-lint and jexida write, so a
# test run never touches the real ~/.ansible, ~/.config or ~/.local/state.
TEST_HOME := $(CURDIR)/.cache/test-home
# Ansible keeps folders under ~ whatever ANSIBLE_HOME says: the ssh plugin's control_path_dir
# (~/.ansible/cp), and remote_tmp for tasks on the controller, which Ansible expands as
# ~<user> (the passwd entry's home, not HOME). '$$HOME/.ansible/tmp' is expanded by the
# target's shell and by the module: the same folder as the default on every node, and the
# HOME below on the controller.
TEST_ENV := ANSIBLE_HOME=$(TEST_HOME)/ansible ANSIBLE_SSH_CONTROL_PATH_DIR=$(TEST_HOME)/ansible/cp \
	ANSIBLE_REMOTE_TMP='$$HOME/.ansible/tmp' \
	XDG_CONFIG_HOME=$(TEST_HOME)/config XDG_STATE_HOME=$(TEST_HOME)/state XDG_CACHE_HOME=$(TEST_HOME)/cache \
	JEXIDA_HOME=$(TEST_HOME)/state/jexida
# Molecule and pytest get a HOME of their own too: molecule's podman driver sets async_dir to
# $$HOME/.ansible_async itself, and the tests' runs on the controller put remote_tmp under it.
# Rootless podman keeps its image store, which follows XDG_DATA_HOME, else HOME.
OWN_HOME := HOME=$(TEST_HOME)/home XDG_DATA_HOME=$${XDG_DATA_HOME:-$(HOME)/.local/share}

.PHONY: help setup image demo test lint sanity molecule pytest bench clean-labs clean-check

help:
	@echo "make demo    set up (packages, venv, node image) and run the main job on a 3-node lab"
	@echo "make test    set up and run every test: lint, sanity, molecule, pytest (unit + real nodes)"
	@echo "make bench   measure the suite against the baselines (QUICK=1 for a short run)"
	@echo "make sanity  ansible-test sanity on the built and installed collection (needs python3.11)"

setup:
	@./scripts/setup.sh

# Importing Ansible makes a temporary folder under ANSIBLE_HOME: these one-liners get their own,
# so neither `make test` nor `make demo` touches ~/.ansible just to name the image.
LAB_PY := ANSIBLE_HOME=$(CURDIR)/.cache/make-ansible-home $(BIN)/python

image: setup
	@$(LAB_PY) -c 'import jexida_lab; print("node image:", jexida_lab.ensure_image())'

demo: image
	@./scripts/check-clean.sh start demo
	$(BIN)/python scripts/demo.py
	@./scripts/check-clean.sh end demo

lint: setup
	$(BIN)/ruff check .
	$(BIN)/yamllint -s .
	$(TEST_ENV) $(BIN)/ansible-lint

# ansible-test sanity on the collection as ansible-galaxy builds and installs it. Needs only
# python3.11 and PyPI: the script makes its own venv under .cache/sanity (not `setup`'s).
sanity:
	@./scripts/sanity.sh

# The scenarios run on the lab's node image (its tag follows the image recipe).
molecule: image
	@mkdir -p $(TEST_HOME)/home
	$(TEST_ENV) $(OWN_HOME) JEXIDA_NODE_IMAGE=$$($(LAB_PY) -c 'import jexida_lab; print(jexida_lab.image_ref())') \
		$(BIN)/molecule test --all

# pytest exits 5 when a selection holds no test: that is not a failure here.
pytest: image
	@mkdir -p $(TEST_HOME)/home
	$(TEST_ENV) $(OWN_HOME) $(BIN)/pytest --durations=12 $(PYTEST_ARGS); rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "pytest: no tests selected"; rc=0; fi; exit $$rc

# Every test step, then a check that none of them changed a tracked file or wrote into the
# person's own ~/.ansible or ~/.config/jexida.
test: setup
	@./scripts/check-clean.sh start test
	$(MAKE) lint sanity molecule pytest
	@./scripts/check-clean.sh end test

bench: image
	$(BIN)/python -m bench $(if $(QUICK),--quick,) $(BENCH_ARGS)

clean-labs: setup
	@for lab in $$($(LAB_PY) -c 'import jexida_lab; print(" ".join(jexida_lab.list_labs()))'); do \
		$(BIN)/jexida lab down --name $$lab; done
