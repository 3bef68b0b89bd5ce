# dockyard: `make demo` and `make test` work on a fresh Debian machine, as root.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
APT_PACKAGES := iproute2 nftables iptables util-linux procps python3-venv
STAMP_APT := $(VENV)/.apt-done
STAMP_PIP := $(VENV)/.pip-done

.PHONY: all deps demo test unit integration lint bench bench-smoke clean

all: test

$(STAMP_APT):
	@if ! command -v nft >/dev/null || ! command -v ip >/dev/null || ! command -v iptables >/dev/null \
	   || ! ldconfig -p | grep -q libnftables.so.1; then \
	  echo "installing system packages: $(APT_PACKAGES)"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $(APT_PACKAGES) >/dev/null; \
	fi
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@touch $@

$(STAMP_PIP): $(STAMP_APT) pyproject.toml
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]' --config-settings editable_mode=compat
	@touch $@

deps: $(STAMP_PIP)

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
	$(PY) bench/run_latency.py --smoke

clean:
	rm -rf $(VENV) build src/*.egg-info .pytest_cache .ruff_cache
