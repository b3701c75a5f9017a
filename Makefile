# Two commands do everything on a fresh machine:
#   make run    set up .venv and start the server on its embedded defaults (SQLite + ./data)
#   make test   set up .venv with the test clients and run the whole test suite
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test venv clean bench lock

# The versions in requirements/dev.txt (from `make lock`): every machine, CI included, tests the same
# releases of the dependencies and of the clients, pip among them.
$(STAMP): pyproject.toml requirements/dev.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet -c requirements/dev.txt pip
	$(BIN)/python -m pip install --quiet -c requirements/dev.txt -e '.[test,postgres,s3]'
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

# Exact versions: the image's dependencies with every file's hash (the Dockerfile installs only
# these), and the test venv's. Run after changing pyproject.toml's dependencies
# (tests/unit/test_locks.py fails until then), or to take new releases.
LOCK := $(BIN)/uv pip compile --universal --python-version 3.11 --custom-compile-command "make lock" -q
lock:  # not from the venv's stamp: that installs with the old dev.txt, which may conflict now
	test -x $(BIN)/uv || { test -x $(BIN)/python || $(PYTHON) -m venv $(VENV); $(BIN)/python -m pip install --quiet uv; }
	$(LOCK) --generate-hashes pyproject.toml -o requirements/image.txt
	$(LOCK) --generate-hashes requirements/build.in -o requirements/build.txt
	$(LOCK) pyproject.toml requirements/dev.in --extra test --extra postgres --extra s3 -o requirements/dev.txt

clean:
	rm -rf $(VENV) data
