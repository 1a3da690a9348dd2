# One-command set-up: every target installs what it needs first.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
CONFIG ?= demo/cdn.toml
# Debian packages the demo and the tests need (installed only when missing): Redis for the
# control plane's tests, Chromium for the browser tests, iproute2 for the geography's namespaces.
DEBIAN_PKGS ?= redis-server chromium iproute2 srt-tools ffmpeg
# What only `make bench` needs: the caches the edge is measured against and the load generator.
BENCH_PKGS ?= nginx varnish wrk
NPM_STAMP := node_modules/.installed
export PIP_DISABLE_PIP_VERSION_CHECK := 1

.PHONY: run test bench lint deps debian bench-debian apt geo-demo clean help shell

help:
	@echo "make run    - install what is missing, start the demo CDN on loopback"
	@echo "make shell  - a shell with .venv/bin on PATH, so \`cdn ...\` runs (or type .venv/bin/cdn)"
	@echo "make test   - install what is missing, run the whole test suite"
	@echo "make bench  - benchmarks that print their figures"
	@echo "make lint   - ruff, mypy and the import contracts"

$(STAMP): pyproject.toml constraints.txt
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q -c constraints.txt -e '.[test]'
	@touch $@

# Player pages' browser libraries (hls.js, dash.js), pinned in package.json / package-lock.json.
$(NPM_STAMP): package.json package-lock.json
	@command -v npm >/dev/null || $(MAKE) --no-print-directory apt PKGS="nodejs npm"
	npm ci --no-audit --no-fund --loglevel=error
	@touch $@

deps: debian $(STAMP) $(NPM_STAMP)

debian:
	@$(MAKE) --no-print-directory apt PKGS="$(DEBIAN_PKGS)"

bench-debian:
	@$(MAKE) --no-print-directory apt PKGS="$(BENCH_PKGS)"

apt:
	@missing=""; for p in $(PKGS); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages:$$missing"; \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -q && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -q --no-install-recommends $$missing; \
	fi

run: deps
	$(BIN)/python demo/make_assets.py demo/site
	@echo "in another shell, from here: $(BIN)/cdn COMMAND (or \`make shell\`, then cdn COMMAND)"
	$(BIN)/cdn up --config $(CONFIG)

# `cdn` itself is .venv/bin/cdn; this shell has it (and the venv's python) on PATH.
shell: deps
	@echo "cdn is on PATH in this shell (exit to leave); try: cdn invalidate site /index.html --wait"
	@PATH="$(CURDIR)/$(BIN):$$PATH" VIRTUAL_ENV="$(CURDIR)/$(VENV)" $${SHELL:-/bin/bash} -i

test: deps
	$(BIN)/lint-imports --no-cache
	$(BIN)/python -m pytest -q

lint: deps
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/lint-imports --no-cache

bench: deps bench-debian
	$(BIN)/pip install -q -c constraints.txt -e '.[test,bench]'
	$(BIN)/python -m bench

geo-demo: deps
	$(BIN)/python -m web_dist.geo demo

clean:
	rm -rf $(VENV) *.egg-info .pytest_cache .mypy_cache var
