# dockyard: `make demo` and `make test` work on a fresh Debian machine, as root.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
APT_PACKAGES := iproute2 nftables iptables util-linux procps python3-venv iperf3 podman crun busybox-static containernetworking-plugins netavark
STAMP_APT := $(VENV)/.apt-done
STAMP_PIP := $(VENV)/.pip-done

.PHONY: all deps demo test unit integration lint bench bench-smoke clean

all: test

$(STAMP_APT): Makefile
	@missing=$$(for p in $(APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || echo $$p; done); \
	if [ -n "$$missing" ]; then \
	  echo "installing system packages:" $$missing; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
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

demo: deps
	$(PY) demo/tour.py

test: deps
	$(VENV)/bin/ruff check src tests bench demo
	$(PY) -m pytest -q tests

unit: deps
	$(PY) -m pytest -q tests/unit

integration: deps
	$(PY) -m pytest -q tests/integration

lint: deps
	$(VENV)/bin/ruff check src tests bench demo

bench: deps
	$(PY) bench/run_latency.py

bench-smoke: deps
	$(PY) -m pytest -q tests/integration/test_bench_smoke.py

clean:
	rm -rf $(VENV) build src/*.egg-info .pytest_cache .ruff_cache
