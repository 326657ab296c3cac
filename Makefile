# make serve: set up and serve ./data (the examples, copied on first run)
# make test:  set up and run every test
# make bench: memory of `filedock serve` while it streams a 2 GiB file in and out
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: serve test lint fix bench clean

$(STAMP): pyproject.toml
	test -d $(VENV) || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $(STAMP)

data:
	cp -r examples data

serve: $(STAMP) data
	$(BIN)/filedock serve $(ARGS)

test: $(STAMP)
	$(BIN)/pytest $(PYTEST_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check src tests
	$(BIN)/ruff format --check src tests
	$(BIN)/mypy

fix: $(STAMP)
	$(BIN)/ruff check --fix src tests
	$(BIN)/ruff format src tests

bench: $(STAMP)
	$(BIN)/python bench/memory.py $(ARGS)

clean:
	rm -rf $(VENV) build src/*.egg-info
