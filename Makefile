# hipgen: `make demo` runs the whole pipeline on this machine, `make test` runs every test.
# Both set up .venv first (idempotent). PROFILE=full|demo|ci selects the profile for `make notebooks`.

PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.hipgen-setup
NB_SRC := $(sort $(wildcard notebooks/[0-9][0-9]_*.py))
NB_IPY := $(NB_SRC:.py=.ipynb)
# the page `make app` serves (not a pipeline step: not numbered, not run by make demo)
APP_NB := notebooks/app_sampler.py
# the port `make app` serves on
PORT ?= 8866
PROFILE ?= demo
# the run directory `make figures` and `make app` read (default: the profile's)
RUN_DIR ?= runs/$(PROFILE)

.PHONY: setup demo test unit nbtest lint sync notebooks figures app lab browser-deps browser-test bench clean help

# Jupyter looks here first for kernels: "python3" is this clone's .venv (its kernel.json runs
# the Python that starts it), never a user-wide kernel another clone installed.
JUPYTER_ENV := JUPYTER_PATH=$(CURDIR)/$(VENV)/share/jupyter
# the system's Chromium for `make browser-test` (Playwright downloads nothing)
CHROMIUM ?= $(firstword $(shell command -v chromium chromium-browser google-chrome 2>/dev/null))
# run directory the browser test reads notebooks 01-05's results from (made when missing)
BROWSER_RUN_DIR ?= runs/ci-browser

help:
	@echo "make demo   - set up .venv and run all seven notebooks on the phantom (demo profile, CPU minutes)"
	@echo "make figures - copy a run's figures (RUN_DIR, default runs/demo) into the committed figures/"
	@echo "make app    - the sampler as a web page (Voila) on a run: http://127.0.0.1:8866/ (RUN_DIR=, PORT=)"
	@echo "make test   - set up .venv and run lint, unit tests and the notebooks (ci profile, nbmake)"
	@echo "make sync   - regenerate notebooks/*.ipynb (no outputs) from the py:percent sources"
	@echo "make bench  - print the data, vqvae, prior-training and sampling benchmark tables"
	@echo "make notebooks PROFILE=full - run the notebooks with another profile"
	@echo "make lab PROFILE=ci - open the notebooks in JupyterLab (this .venv's Python; profile: demo unless given)"
	@echo "make browser-test - headless Chromium: JupyterLab (01 opens unmodified; 06 Run All, then its sliders) and make app's page loaded 10 times"

setup: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[dev]"
	touch $(STAMP)

demo: setup
	$(PY) -m hipgen_utils notebooks --profile demo
	@echo "figures in runs/demo/figures/ (make figures copies them into figures/), executed notebooks in runs/demo/notebooks/"

notebooks: setup
	$(PY) -m hipgen_utils notebooks --profile $(PROFILE)

test: setup
	rm -rf runs/ci
	$(PY) -m ruff check .
	HIPGEN_PROFILE=ci $(PY) -m pytest tests --ignore=tests/browser
	HIPGEN_PROFILE=ci $(JUPYTER_ENV) $(PY) -m pytest --nbmake --nbmake-timeout=300 $(NB_IPY)
	$(MAKE) --no-print-directory browser-deps
	$(MAKE) --no-print-directory browser-test BROWSER_RUN_DIR=runs/ci

unit: setup
	HIPGEN_PROFILE=ci $(PY) -m pytest tests --ignore=tests/browser

lint: setup
	$(PY) -m ruff check .

# the .py is the source: rewrite each paired .ipynb from it, without outputs; cell ids are
# kept (unchanged cells) or derived from the cell, so a clean tree stays clean
sync: setup
	$(PY) -m hipgen_utils.notebooks sync $(NB_SRC) $(APP_NB)

# the committed figures change only on request: copy a run's figures over them
figures:
	@test -d "$(RUN_DIR)/figures" || { echo "make figures: no $(RUN_DIR)/figures; run make demo first (or RUN_DIR=<a run>)"; exit 1; }
	cp "$(RUN_DIR)"/figures/*.png figures/
	@echo "copied $(RUN_DIR)/figures/*.png into figures/ (git status figures/ shows what changed)"

# the sampler as a page (docs/app.md): Voila serves notebooks/app_sampler.ipynb on RUN_DIR
app: setup
	$(JUPYTER_ENV) $(PY) -m hipgen_utils.app --run_dir "$(RUN_DIR)" --profile $(PROFILE) --port $(PORT)

# JupyterLab on notebooks/ with this .venv's kernel; saving strips outputs from the .ipynb.
# Its defaults (hipgen_utils.notebooks.LAB_OVERRIDES: all cells laid out at once, no news
# pop-up) go into this .venv's JupyterLab settings first; your own settings still win.
lab: setup
	@$(PY) -m hipgen_utils.notebooks lab-settings
	@echo "JupyterLab: profile $(PROFILE) (HIPGEN_PROFILE=$(PROFILE); make lab PROFILE=ci|demo|full), kernel $(CURDIR)/$(PY)"
	HIPGEN_PROFILE=$(PROFILE) $(JUPYTER_ENV) $(VENV)/bin/jupyter lab --ServerApp.root_dir=notebooks \
		--ContentsManager.pre_save_hook=hipgen_utils.notebooks.strip_outputs_pre_save \
		$(if $(filter 0,$(shell id -u)),--allow-root)

# Debian's Chromium for the browser test, installed when it is missing and we are root with
# apt-get (CI, a fresh container); anyone else gets the one-line hint of browser-test
browser-deps:
	@if [ -z "$(CHROMIUM)" ] && [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		echo "installing Debian's chromium for the browser test (apt-get, about a minute)"; \
		(apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) \
			|| echo "browser test: apt-get install chromium failed; the browser test will be skipped"; \
	fi

browser-test: setup
	@if [ -z "$(CHROMIUM)" ]; then \
		echo "browser test skipped: no chromium on PATH (Debian: apt-get install chromium)"; \
	else \
		HIPGEN_PROFILE=ci CHROMIUM="$(CHROMIUM)" HIPGEN_BROWSER_RUN_DIR="$(BROWSER_RUN_DIR)" \
			$(JUPYTER_ENV) $(PY) -m pytest -q -p no:cacheprovider tests/browser; \
	fi

bench: setup
	$(PY) -m hipgen_utils bench data
	$(PY) -m hipgen_utils bench vqvae
	$(PY) -m hipgen_utils bench prior
	$(PY) -m hipgen_utils bench sample

clean:
	rm -rf runs/ci runs/ci-browser .pytest_cache .ruff_cache
