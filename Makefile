# make serve: set up and serve ./data (the examples, copied on first run)
# make test:  set up and run every test

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: serve test test-tools lint fix ui bench bench-memory soak clean

# The Debian packages the tests drive: curl (the original curl commands), Node.js and npm
# (tus-js-client, axe-core), strace (the sendfile and fsync checks), chromium (the web UI's
# tests, through Playwright), nginx (several instances behind a proxy), systemd-analyze (checks
# deploy/filedock.service). Installed when missing.
TEST_TOOLS := curl npm strace chromium nginx systemd-analyze
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

$(STAMP): pyproject.toml
	test -d $(VENV) || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $(STAMP)

data:
	cp -r examples data

serve: $(STAMP) data
	$(BIN)/filedock serve $(ARGS)

test: $(STAMP) test-tools tests/js/node_modules
	$(BIN)/pytest $(PYTEST_ARGS)

test-tools:
	@missing=""; for tool in $(TEST_TOOLS); do command -v $$tool >/dev/null || missing="$$missing $$tool"; done; \
	if [ -n "$$missing" ]; then \
	  packages=$$(echo $$missing | sed 's/\bnpm\b/nodejs npm/; s/\bsystemd-analyze\b/systemd/'); \
	  echo "installing the Debian packages the tests use: $$packages"; \
	  $(SUDO) apt-get update -qq && \
	  $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$packages; \
	fi

tests/js/node_modules: tests/js/package-lock.json | test-tools
	cd tests/js && npm ci --no-audit --no-fund && touch node_modules

# make ui: refresh the web UI's vendored tus-js-client from the version locked in
# tests/js/package-lock.json (the page itself needs no build, and serving it no npm)
TUS_JS := tests/js/node_modules/tus-js-client
ui: tests/js/node_modules
	cp $(TUS_JS)/dist/tus.min.js src/filedock/static/ui/vendor/tus.min.js
	cp $(TUS_JS)/LICENSE src/filedock/static/ui/vendor/tus-js-client.LICENSE
	version=$$(node -p 'require("./$(TUS_JS)/package.json").version') && \
	  sed -i "s/tus-js-client [0-9][0-9.]* as published/tus-js-client $$version as published/" \
	  src/filedock/static/ui/vendor/README.md

lint: $(STAMP)
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench
	$(BIN)/mypy
	$(BIN)/hadolint deploy/Dockerfile

fix: $(STAMP)
	$(BIN)/ruff check --fix src tests bench
	$(BIN)/ruff format src tests bench

BENCH_STAMP := $(VENV)/.bench-installed
$(BENCH_STAMP): $(STAMP)
	$(BIN)/pip install --quiet -e '.[test,bench]'
	touch $(BENCH_STAMP)

# make bench: the full side-by-side run (writes docs/benchmarks-results.md, .json and .png);
# make bench QUICK=1: every workload at small sizes, in under two minutes
# (both also run bench/s3.py: filedock on S3 against boto3 on the same SeaweedFS, and listing
# times by number of objects; the full run writes docs/benchmarks-s3.json and -s3-listing.png)
bench: $(BENCH_STAMP)
	@command -v nginx >/dev/null && command -v wrk >/dev/null && command -v curl >/dev/null || \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nginx wrk curl)
	$(BIN)/python bench/run.py $(if $(QUICK),--quick,) $(BENCH_ARGS)
	$(BIN)/python bench/s3.py $(if $(QUICK),--quick,--json docs/benchmarks-s3.json)

# make bench-memory: peak RSS of the server during a 2 GiB upload and download, and sendfile use
bench-memory: $(STAMP)
	$(BIN)/python bench/memory.py $(ARGS)

# make soak: a mixed load through nginx on three instances of one store, one restarted every
# minute; reports requests, errors, acknowledged writes lost (must be 0) and memory. Not in CI.
# SOAK_STORE=s3: the instances share a bucket of a SeaweedFS started for the run instead.
SOAK_SECONDS ?= 300
SOAK_STORE ?= local
soak: $(STAMP) test-tools
	$(BIN)/python bench/soak.py --seconds $(SOAK_SECONDS) --store $(SOAK_STORE) $(SOAK_ARGS)

clean:
	rm -rf $(VENV) build src/*.egg-info
