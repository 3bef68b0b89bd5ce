# dockyard: `make demo` and `make test` work on a fresh Debian machine, as root.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
APT_PACKAGES := iproute2 nftables iptables util-linux procps python3-venv iperf3 podman crun busybox-static containernetworking-plugins netavark tini iputils-ping docker-registry skopeo \
	etcd-server docker.io docker-compose containerd graphviz conntrack curl
# make bench only: the reference tools dockyard is measured against.
BENCH_PACKAGES := docker.io containernetworking-plugins netavark podman crun iperf3 busybox-static
STAMP_APT := $(VENV)/.apt-done
STAMP_PIP := $(VENV)/.pip-done
STAMP_BENCH := $(VENV)/.bench-apt-done
# Integration tests mostly wait on processes and the kernel: four workers on two cores keep
# make test under 10 minutes. Each test makes its own namespaces and $ROOT (the bench smoke
# test runs its scripts one after another). PYTEST_PARALLEL= runs the tests one by one.
PYTEST_PARALLEL ?= -n 4

.PHONY: all deps demo pictures test unit integration lint bench bench-smoke clean

all: test

# Docker's own clients (docker.io's CLI, docker-compose) and etcd-server are the tests' judges and
# their clusters' members: installing them must not leave a dockerd, containerd or etcd running in
# the root namespace, so a policy-rc.d forbids service starts for the length of the install.
# "installed", not just known to dpkg: a package removed but not purged is known, without binaries.
$(STAMP_APT): Makefile
	@missing=$$(for p in $(APT_PACKAGES); do \
	  dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q ' installed$$' || echo $$p; done); \
	if [ -n "$$missing" ]; then \
	  echo "installing system packages:" $$missing; \
	  guard=; if [ ! -e /usr/sbin/policy-rc.d ]; then \
	    printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d && guard=1; fi; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	  rc=$$?; [ -n "$$guard" ] && rm -f /usr/sbin/policy-rc.d; \
	  if command -v systemctl >/dev/null && [ -d /run/systemd/system ]; then \
	    systemctl disable --now docker.service docker.socket containerd.service etcd.service >/dev/null 2>&1 || true; fi; \
	  [ $$rc -eq 0 ]; \
	fi
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@touch $@

$(STAMP_PIP): $(STAMP_APT) pyproject.toml
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]' --config-settings editable_mode=compat
	@touch $@

deps: $(STAMP_PIP)
	@# Bytecode up front: clients pay every import, and PYTHONDONTWRITEBYTECODE may be set.
	@$(PY) -m compileall -q src >/dev/null
	@# The clients' scripts start isolated and without site (src/dockyard/clients/entry_scripts.py).
	@$(PY) -m dockyard.clients.entry_scripts $(VENV)/bin >/dev/null

demo: deps
	$(PY) demo/tour.py --pictures demo/pictures

# The pictures docs/usage.md and the README show: the tour's topology at each step.
pictures: deps
	$(PY) demo/tour.py --pictures docs/pictures

# Dead code fails the build: vulture_whitelist.py lists what is used where vulture cannot see.
VULTURE := $(VENV)/bin/vulture src vulture_whitelist.py --min-confidence 60

test: deps
	$(VENV)/bin/ruff check src tests bench demo
	$(VENV)/bin/ruff format --check src tests bench demo
	$(VULTURE)
	$(VENV)/bin/mypy src
	$(PY) -m pytest -q $(PYTEST_PARALLEL) tests

unit: deps
	$(PY) -m pytest -q tests/unit

integration: deps
	$(PY) -m pytest -q $(PYTEST_PARALLEL) tests/integration

lint: deps
	$(VENV)/bin/ruff check src tests bench demo
	$(VENV)/bin/ruff format --check src tests bench demo
	$(VULTURE)
	$(VENV)/bin/mypy src

# Installing docker.io must not start a dockerd in the root namespace: where no
# policy-rc.d forbids it already, one does for the length of the install.
$(STAMP_BENCH): $(STAMP_APT) Makefile
	@missing=$$(for p in $(BENCH_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || echo $$p; done); \
	if [ -n "$$missing" ]; then \
	  echo "installing reference tools:" $$missing; \
	  guard=; if [ ! -e /usr/sbin/policy-rc.d ]; then \
	    printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d && guard=1; fi; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	  rc=$$?; [ -n "$$guard" ] && rm -f /usr/sbin/policy-rc.d; \
	  if command -v systemctl >/dev/null && [ -d /run/systemd/system ]; then \
	    systemctl disable --now docker.service docker.socket containerd.service >/dev/null 2>&1 || true; fi; \
	  [ $$rc -eq 0 ]; \
	fi
	@touch $@

# Every comparison side by side with Docker, the CNI reference plugins, netavark and
# Podman: bench/results/<timestamp>.json and docs/benchmarks.md. Never part of CI.
bench: deps $(STAMP_BENCH)
	$(PY) bench/suite.py

# Each benchmark once with tiny counts and no reference tools (also part of make test).
bench-smoke: deps
	$(PY) -m pytest -q tests/integration/test_bench_smoke.py

clean:
	rm -rf $(VENV) build src/*.egg-info .pytest_cache .ruff_cache
