# Set-up and entry points. Each target creates or reuses .venv, installs the CPU
# build of torch first (so no multi-GB CUDA build is pulled in), then the project.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
TORCH_SPEC ?= torch==2.13.0

.PHONY: demo test test-slow lint format docs install clean

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --disable-pip-version-check -q "$(TORCH_SPEC)" || $(PY) -m pip install -q "torch>=2.2"
	$(PY) -m pip install --disable-pip-version-check -q -e ".[demo,test]"
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	HF_HUB_OFFLINE=1 $(PY) -m subspace_bayes.cli demo $(ARGS)

# Fast tests (tiny random backbones). pytest's exit code 5 ("no tests collected") is not a failure.
test: $(STAMP)
	HF_HUB_OFFLINE=1 $(PY) -m pytest -m "not slow" -q $(ARGS) || [ $$? -eq 5 ]

# Slow tests on the real bundled MiniLM backbone (minutes on 2 CPU cores).
test-slow: $(STAMP)
	HF_HUB_OFFLINE=1 $(PY) -m pytest -m slow -q -s $(ARGS) || [ $$? -eq 5 ]

# Lint and format check (ruff, configured in pyproject.toml); `make format` rewrites the files.
lint: $(STAMP)
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .

format: $(STAMP)
	$(PY) -m ruff check --fix .
	$(PY) -m ruff format .

# The documentation site (strict: any warning fails), built into site/.
docs: $(STAMP)
	$(PY) -m pip install --disable-pip-version-check -q -e ".[docs]"
	NO_MKDOCS_2_WARNING=1 $(PY) -m mkdocs build --strict -d site

clean:
	rm -rf $(VENV) .pytest_cache
