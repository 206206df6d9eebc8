# Set-up and checks. `make demo` and `make test` work on a fresh machine.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
STAMP := $(VENV)/.installed
TEST_STAMP := $(VENV)/.installed-test
SYSTEM_STAMP := $(VENV)/.system-packages
PYTEST_ARGS ?=

.PHONY: demo test lint bench docs screenshots clean system-packages

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q -e '.[examples]'
	touch $@

$(TEST_STAMP): pyproject.toml $(STAMP)
	$(PIP) install -q -e '.[dev]'
	touch $@

# Debian packages the tests use: git, Graphviz's dot, Chromium (for the UI tests), LAMMPS
# (`lmp`, the compiled engine of the tests; without its recommends: 32 MB instead of 82 MB), and
# SLURM with munge (tests/slurm_cluster.py starts a one-node cluster; the daemons live in
# /usr/sbin). SLURM is optional: if it cannot be installed, the SLURM tests skip and say why.
$(SYSTEM_STAMP): Makefile
	@PATH="$$PATH:/usr/sbin:/sbin"; missing=""; lean=""; slurm=""; \
	command -v dot >/dev/null 2>&1 || missing="$$missing graphviz"; \
	command -v chromium >/dev/null 2>&1 || missing="$$missing chromium"; \
	command -v git >/dev/null 2>&1 || missing="$$missing git"; \
	command -v lmp >/dev/null 2>&1 || lean="$$lean lammps"; \
	for tool in sbatch slurmctld slurmd; do \
		command -v $$tool >/dev/null 2>&1 || slurm=" slurm-wlm"; \
	done; \
	command -v munged >/dev/null 2>&1 || slurm="$$slurm munge"; \
	SUDO=""; [ "$$(id -u)" = 0 ] || SUDO=sudo; \
	APT="$$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq"; \
	if [ -n "$$missing$$lean$$slurm" ]; then \
		echo "Installing system packages:$$missing$$lean$$slurm"; \
		$$SUDO apt-get update -qq || true; \
	fi; \
	if [ -n "$$missing" ]; then $$APT $$missing >/dev/null; fi; \
	if [ -n "$$lean" ]; then $$APT --no-install-recommends $$lean >/dev/null; fi; \
	if [ -n "$$slurm" ]; then \
		$$APT $$slurm >/dev/null \
		|| echo "WARNING: could not install$$slurm: the SLURM tests will be SKIPPED"; \
	fi
	mkdir -p $(VENV) && touch $@

system-packages: $(SYSTEM_STAMP)

# the demo draws its flow graph with Graphviz's dot: installed when missing, as for the tests
$(VENV)/.graphviz:
	@command -v dot >/dev/null 2>&1 || { \
		echo "Installing Graphviz (the demo draws a flow graph)"; \
		SUDO=""; [ "$$(id -u)" = 0 ] || SUDO=sudo; \
		$$SUDO apt-get update -qq || true; \
		$$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq graphviz >/dev/null; }
	mkdir -p $(VENV) && touch $@

demo: $(STAMP) $(VENV)/.graphviz
	$(PY) examples/demo.py

lint: $(TEST_STAMP)
	$(VENV)/bin/ruff check gittrack tests benchmarks examples
	$(VENV)/bin/ruff format --check gittrack tests benchmarks examples
	$(VENV)/bin/mypy --strict gittrack
	$(VENV)/bin/lint-imports

test: $(TEST_STAMP) $(SYSTEM_STAMP) lint
	$(PY) -m pytest -n 2 $(PYTEST_ARGS)

bench: $(TEST_STAMP) $(SYSTEM_STAMP)
	$(PY) benchmarks/run.py $(BENCH_ARGS)

docs: $(STAMP)
	$(PY) docs/gen_cli_reference.py

# refresh docs/screenshots/ from the browser tests (a plain test run writes them to /tmp)
screenshots: $(TEST_STAMP) $(SYSTEM_STAMP)
	GITTRACK_SCREENSHOTS=1 $(PY) -m pytest tests/test_ui_browser.py tests/test_ui_inplace.py -q

clean:
	rm -rf $(VENV) build dist *.egg-info .demo
