# vecdb: the two commands of the README.
#   make serve  - create the virtualenv, install, run the standalone server on 127.0.0.1:19530 (data in ./data);
#                 make serve PORT=19531 HTTP_PORT=9092 DATA=./data2 changes the ports and the data directory
#   make test   - install what the tests need, lint (make lint), and run the whole suite
PYTHON ?= python3
# make serve's Milvus API port, HTTP port (REST API, /webui/, /metrics, /healthz) and data directory. Plain
# assignments: the command line overrides them, an environment's PORT (set by many hosts) does not.
PORT = 19530
HTTP_PORT = 9091
DATA = ./data
VENV ?= .venv
PY := $(VENV)/bin/python
# Another pymilvus than the suite's own (pyproject.toml: 3.0), in its own virtualenv, for the
# client-compatibility tests (VECDB_CLIENT_PYTHON): the 2.6 line, which most Milvus users still run.
CLIENT_VENV ?= .venv-client-other
OTHER_PYMILVUS ?= pymilvus==2.6.17
# pytest processes (pytest-xdist). Most e2e tests wait on servers they started, so more processes than
# cores share them well: on 2 cores the suite took 14:55 with 2 against 21:34 in one process
# (2026-12-04); grown to 7,215 tests, 25:52 with 2 and 20:39 with 3 (2026-12-06). Work stealing keeps
# the processes busy to the end (the slowest tests are cluster tests of 20-60 s). 0: one process.
PYTEST_WORKERS ?= 3
PYTEST_DIST ?= worksteal

.PHONY: serve test lint install install-test clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e .
	touch $@

$(VENV)/.installed-test: $(VENV)/.installed pyproject.toml
	$(PY) -m pip install -q -e '.[test]'
	touch $@

$(CLIENT_VENV)/.installed:
	$(PYTHON) -m venv $(CLIENT_VENV)
	$(CLIENT_VENV)/bin/python -m pip install -q '$(OTHER_PYMILVUS)' numpy
	touch $@

install: $(VENV)/.installed

install-test: $(VENV)/.installed-test $(CLIENT_VENV)/.installed

serve: install
	$(VENV)/bin/vecdb standalone --data-dir $(DATA) --host 127.0.0.1 --port $(PORT) --http-port $(HTTP_PORT)

lint: install-test
	$(VENV)/bin/ruff check vecdb tests bench
	$(VENV)/bin/mypy vecdb

# pytest exits 5 when it collected no tests: that is a failure here, said out loud.
test: install-test lint
	VECDB_CLIENT_PYTHON=$(abspath $(CLIENT_VENV))/bin/python $(PY) -m pytest -q -p no:cacheprovider \
		-n $(PYTEST_WORKERS) $(if $(filter 0,$(PYTEST_WORKERS)),,--dist $(PYTEST_DIST)) $(PYTEST_ARGS); \
	rc=$$?; if [ $$rc -eq 5 ]; then echo "pytest collected no tests: failing" >&2; exit 1; fi; exit $$rc

clean:
	rm -rf $(VENV) $(CLIENT_VENV) build *.egg-info
