# Two commands do everything on a fresh machine:
#   make run    set up .venv and start the server on its embedded defaults (SQLite + ./data)
#   make test   set up .venv with the test clients and run the whole test suite
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test venv clean bench lock

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test,postgres,s3]'
	touch $(STAMP)

venv: $(STAMP)

run: $(STAMP)
	$(BIN)/packhouse serve

# One pytest worker per core, each taking whole test files (--dist loadfile: a file's module
# fixtures, such as the container test's Docker engine, are never started twice at once).
# `.venv/bin/python -m pytest tests/...` runs a part of it in one process.
# First what the container test needs from outside (a Debian base system, the image's wheels),
# fetched once into ~/.cache/packhouse-test: no test reaches beyond loopback (tests/support/assets.py).
test: $(STAMP)
	$(BIN)/python -m tests.support.assets
	$(BIN)/python -m pytest -n auto --dist loadfile

# Packhouse vs pypiserver side by side (needs wrk and nginx: see bench/README.md); not part of `make test`.
bench: $(STAMP)
	$(BIN)/python bench/run.py $(BENCH_ARGS)

# The image's exact dependencies, with every file's hash (the Dockerfile installs only these).
# Run after changing pyproject.toml's dependencies (tests/unit/test_locks.py fails until then), or
# to take new releases.
LOCK := $(BIN)/uv pip compile --universal --python-version 3.11 --generate-hashes --custom-compile-command "make lock" -q
lock: $(STAMP)
	$(LOCK) pyproject.toml -o requirements/image.txt
	$(LOCK) requirements/build.in -o requirements/build.txt

clean:
	rm -rf $(VENV) data
