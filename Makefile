# Two entry points, both idempotent on a fresh machine:
#   make repro   set up (.venv, pinned deps, Fashion-MNIST Debian package) and run the whole pipeline
#   make test    set up and run the test suite
# A team's shared object store and tracking server (README, "Working as a team"):
#   make stack-up / make stack-down   start / stop it on this machine; stack-up also points DVC at it
VENV    := .venv
PY      := $(VENV)/bin/python
export PATH := $(CURDIR)/$(VENV)/bin:$(PATH)
export PIP_DISABLE_PIP_VERSION_CHECK := 1

.PHONY: setup repro test bench system-deps stack-up stack-down

setup: $(VENV)/.installed system-deps

$(VENV)/.installed: requirements.txt constraints.txt pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --no-compile -r requirements.txt -c constraints.txt
	$(PY) -m pip install -q --no-compile --no-deps --no-build-isolation -e .
	@# the bytecode on every core, where pip compiles one file at a time (docs/performance.md); like
	@# pip, it skips the few files that are not Python 3, so its status is not the install's
	@$(PY) -m compileall -q -j 0 $(VENV)/lib >/dev/null 2>&1 || true
	touch $@

# Debian packages: dataset-fashion-mnist (Fashion-MNIST's mirror; without it fetch falls back to the
# canonical URL) and chromium (the report test renders the page). Installed when we are root.
DEBS := dataset-fashion-mnist chromium
system-deps:
	@missing=$$(for p in $(DEBS); do dpkg -s $$p >/dev/null 2>&1 || echo $$p; done); \
	if [ -z "$$missing" ]; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	  apt-get install -y -q $$missing >/dev/null 2>&1 || \
	  { apt-get update -q >/dev/null && apt-get install -y -q $$missing >/dev/null; }; \
	else echo "note: not root; install the Debian packages: $$missing"; fi

# With a reachable DVC remote, outputs already computed by the team are pulled first (one line if not).
repro: setup
	latentlab repro

stack-up: setup
	latentlab stack up
	latentlab stack connect >/dev/null

stack-down:
	latentlab stack down

# The suite on both cores (pytest-xdist), a whole module to a worker at a time, the modules with the most
# slow tests first (tests/conftest.py): the team stack's, the longest, on one worker while the other takes
# the rest.
test: setup
	pytest -q -n 2 --dist loadscope --no-loadscope-reorder

bench: setup
	$(PY) -m pip install -q -r benchmarks/requirements.txt -c constraints.txt
	for b in benchmarks/bench_*.py; do echo "== $$b"; python $$b || exit 1; done
	python benchmarks/stage_times.py benchmarks/runs/*.log
