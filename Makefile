# hipgen: `make demo` runs the whole pipeline on this machine, `make test` runs every test.
# Both set up .venv first (idempotent). PROFILE=full|demo|ci selects the profile for `make notebooks`.

PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.hipgen-setup
NB_SRC := $(sort $(wildcard notebooks/[0-9][0-9]_*.py))
NB_IPY := $(NB_SRC:.py=.ipynb)
PROFILE ?= demo

.PHONY: setup demo test unit nbtest lint sync notebooks bench clean help

help:
	@echo "make demo   - set up .venv and run all six notebooks on the phantom (demo profile, CPU minutes)"
	@echo "make test   - set up .venv and run lint, unit tests and the notebooks (ci profile, nbmake)"
	@echo "make sync   - regenerate notebooks/*.ipynb (no outputs) from the py:percent sources"
	@echo "make bench  - print the data, vqvae, prior-training and sampling benchmark tables"
	@echo "make notebooks PROFILE=full - run the notebooks with another profile"

setup: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[dev]"
	$(PY) -m ipykernel install --user --name hipgen --display-name "hipgen (.venv)" >/dev/null
	touch $(STAMP)

demo: setup
	$(PY) -m hipgen_utils notebooks --profile demo
	@echo "figures in figures/, executed notebooks in runs/demo/notebooks/"

notebooks: setup
	$(PY) -m hipgen_utils notebooks --profile $(PROFILE)

test: setup
	rm -rf runs/ci
	$(PY) -m ruff check .
	HIPGEN_PROFILE=ci $(PY) -m pytest tests
	HIPGEN_PROFILE=ci $(PY) -m pytest --nbmake --nbmake-timeout=900 $(NB_IPY)

unit: setup
	HIPGEN_PROFILE=ci $(PY) -m pytest tests

lint: setup
	$(PY) -m ruff check .

# the .py is the source: rewrite each paired .ipynb from it, without outputs
sync: setup
	$(VENV)/bin/jupytext --to ipynb $(NB_SRC)

bench: setup
	$(PY) -m hipgen_utils bench data
	$(PY) -m hipgen_utils bench vqvae
	$(PY) -m hipgen_utils bench prior
	$(PY) -m hipgen_utils bench sample

clean:
	rm -rf runs/ci .pytest_cache .ruff_cache
