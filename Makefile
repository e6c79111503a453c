# Set-up and everyday commands. Each target installs what it needs into .venv.
PY ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install serve test lint bench clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $(STAMP)

install: $(STAMP)

serve: $(STAMP)
	$(BIN)/raincheck serve $(SERVE_ARGS)

# the suite in two parts: the tests that do not drive a browser on both cores (pytest-xdist), then
# the browser tests alone (they wait on pages with timeouts: they get the machine to themselves).
# Both parts always run; the target fails if either does.
test: $(STAMP)
	rc=0; $(BIN)/python -m pytest -n 2 --dist loadscope -m 'not browser' --durations=15 || rc=$$?; \
	$(BIN)/python -m pytest -m browser --durations=10 || rc=$$?; exit $$rc

lint: $(STAMP)
	$(BIN)/ruff check .

bench: $(STAMP)
	$(BIN)/python -m benchmarks

clean:
	rm -rf $(VENV) build *.egg-info
