# The two commands of the README: `make demo` and `make test`. Both set up .venv when needed.
# Set-up by role: `make setup` is the Python side only (.venv; no root), what developers need;
# `make setup-grader` adds the grading machine's tools (bubblewrap, PostgreSQL, Chromium: root
# or sudo), which `make test` and `make demo` call. Students need neither: `make student-kit`.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
GRADER_STAMP := $(VENV)/.grader-tools
PYTEST_ARGS ?=
# The tests run in one process per core: grading a notebook keeps one core busy (the kernels
# train and evaluate on one thread), so two processes nearly halve `make test` on 2 cores.
# Each test file stays in one process (its course fixtures are shared by its tests).
JOBS ?= $(shell nproc 2>/dev/null || echo 2)
PARALLEL := -n $(JOBS) --dist loadfile

.PHONY: demo test test-fast lint weights release setup setup-grader student-kit clean

setup: $(STAMP)

setup-grader: $(GRADER_STAMP)

# CPU-only set-up: the local 2.13.0 CPU build of torch is installed first, so that
# nothing else can resolve a (CUDA) torch from the index; torchvision is never installed.
$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet "torch==2.13.0"
	$(PY) -m pip install --quiet -e ".[grader,dev]"
	# jsonschema imports rfc3987-syntax whenever it is installed (an optional extra that
	# jupyter-events asks for), and that import builds 38 parsers: seconds in every process
	# that reads a notebook (nbgrader, the grader, the tests). Nothing here validates IRIs.
	$(PY) -m pip uninstall --quiet --yes rfc3987-syntax
	touch $(STAMP)

# The grading machine's tools: each script installs its system package as root (or says how,
# with sudo) and checks that it works; quick when they are there.
$(GRADER_STAMP): $(STAMP) scripts/setup_sandbox.sh scripts/setup_browser.sh scripts/setup_postgres.sh \
		scripts/install_tool.sh
	bash scripts/setup_sandbox.sh
	bash scripts/setup_browser.sh
	bash scripts/setup_postgres.sh
	touch $(GRADER_STAMP)

# The 25 slowest steps are listed at the end, to see where the time goes.
test: lint setup-grader
	$(PY) -m pytest $(PARALLEL) --durations=25 $(PYTEST_ARGS)

test-fast: lint
	$(PY) -m pytest $(PARALLEL) -m "not slow" $(PYTEST_ARGS)

lint: $(STAMP)
	$(PY) -m ruff check .

# nbgrader runs alembic from PATH, hence the venv's bin first.
release: $(STAMP)
	for a in $$($(PY) -c "from autograder.manifest import assignments; print(*assignments())"); do \
		PATH="$(CURDIR)/$(VENV)/bin:$$PATH" $(VENV)/bin/nbgrader generate_assignment $$a --force || exit 1; \
	done

weights: $(STAMP)
	$(PY) -m autograder weights

demo: setup-grader
	$(PY) -m autograder demo

# kits/<assignment>.zip for each assignment (released notebooks, the wheel, a student README)
# and kits/jupyterhub/ (a single-user image's Dockerfile and requirements): docs/jupyterhub.md.
student-kit: $(STAMP)
	$(PY) -m autograder kit

clean:
	rm -rf $(VENV) demo kits .pytest_cache
