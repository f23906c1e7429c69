# Offline build of the book "Multi-Task Learning for Language Models".
#
#   make book        set up everything, build the HTML book clean, warnings as errors
#   make test        unit tests, notebook regression tests (nbval), browser check of the site
#
# Everything the build needs from the network (Debian packages, PyPI wheels, npm assets, the
# data sets) is fetched by `make setup`; after that the build and the tests work offline.
# The slow setup steps (venv, npm assets) leave stamp files and the cheap ones check what is
# there, so a second run only does what changed.

SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip
JB     := $(VENV)/bin/jupyter-book

# Pinned versions of everything fetched outside pyproject.toml.
TORCH_VERSION        := 2.13.0
# Extra pip options for torch only, e.g. TORCH_PIP_OPTS="--index-url https://download.pytorch.org/whl/cpu"
# on a Linux machine without a GPU, to avoid the CUDA wheels.
TORCH_PIP_OPTS       ?=
MATHJAX_VERSION      := 3.2.2
REQUIREJS_VERSION    := 2.3.7
HTML_MANAGER_VERSION := 1.0.15

# npm packages (git-ignored)
ASSETS := build/assets
# the book's static folder, copied into _build/html/_static (git-ignored). Not `_static`:
# Jupyter Book 1.x injects every .js/.css under a root `_static/` into every page.
STATIC := vendor
HTML   := _build/html

VENV_STAMP   := $(VENV)/.mtl-installed
ASSETS_STAMP := $(ASSETS)/.installed
STATIC_STAMP := $(STATIC)/.installed

.PHONY: help setup apt venv assets data book check-site test unit notebooks clean distclean

help:
	@echo "make book        build the book (clean, warnings as errors) into $(HTML)"
	@echo "make test        unit tests + notebook tests + browser check of the built site"
	@echo "make unit | notebooks | check-site    one part of 'make test'"
	@echo "make setup       only install: Debian packages, $(VENV), npm assets, data"
	@echo "make clean       remove build outputs (keeps $(VENV)); 'make distclean' removes $(VENV) too"

# ---------------------------------------------------------------------------------------------
# setup
setup: apt venv assets data

# System packages, each checked by what it provides (cheap, runs every time) and installed with
# apt-get only when missing: graphviz (`dot`, draws the diagrams), chromium (the site check),
# wordnet-base (data), npm (fetches the front-end assets; skipped when Node.js already has it).
apt:
	@missing=""; \
	command -v dot >/dev/null           || missing="$$missing graphviz"; \
	test -x "$${CHROMIUM:-/usr/bin/chromium}" || missing="$$missing chromium"; \
	test -d /usr/share/wordnet          || missing="$$missing wordnet-base"; \
	command -v npm >/dev/null           || missing="$$missing npm"; \
	if [ -z "$$missing" ]; then exit 0; fi; \
	echo "System packages missing:$$missing"; \
	if ! command -v apt-get >/dev/null; then \
	  echo "ERROR: not a Debian system; install these packages (or their equivalents), then re-run make:$$missing" >&2; \
	  exit 1; \
	fi; \
	if [ "$$(id -u)" = 0 ]; then SUDO=""; \
	elif command -v sudo >/dev/null && sudo -n true 2>/dev/null; then SUDO="sudo"; \
	else \
	  echo "ERROR: missing Debian packages:$$missing. Run this once, then re-run make:" >&2; \
	  echo "    sudo apt-get update && sudo apt-get install -y --no-install-recommends$$missing" >&2; \
	  exit 1; \
	fi; \
	if ! ( $$SUDO apt-get update -qq && \
	       DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq --no-install-recommends \
	         -o Dpkg::Use-Pty=0 $$missing >/dev/null ); then \
	  echo "ERROR: apt-get failed. Install the packages by hand, then re-run make:" >&2; \
	  echo "    sudo apt-get update && sudo apt-get install -y --no-install-recommends$$missing" >&2; \
	  exit 1; \
	fi

venv: $(VENV_STAMP)
$(VENV_STAMP): pyproject.toml
	@test -x $(PY) || { echo "Creating $(VENV) with $(PYTHON)"; $(PYTHON) -m venv $(VENV); }
	@$(PY) -c 'import sys; assert sys.version_info >= (3, 11), "Python >= 3.11 is needed, found " + sys.version'
	$(PIP) install -q torch==$(TORCH_VERSION) $(TORCH_PIP_OPTS)
	$(PIP) install -q -e '.[book,test,pretrained]'
	@touch $@

# Front-end assets the book would otherwise load from CDNs: MathJax 3, require.js and the
# ipywidgets HTML manager. npm keeps them in $(ASSETS); the book serves a copy from $(STATIC).
assets: $(STATIC_STAMP)
$(ASSETS_STAMP): Makefile
	@command -v npm >/dev/null || { echo "ERROR: npm is needed to fetch the MathJax/ipywidgets assets (apt-get install npm)" >&2; exit 1; }
	mkdir -p $(ASSETS)
	npm install --prefix $(ASSETS) --no-save --no-audit --no-fund --loglevel=error \
	  mathjax@$(MATHJAX_VERSION) requirejs@$(REQUIREJS_VERSION) \
	  @jupyter-widgets/html-manager@$(HTML_MANAGER_VERSION)
	@touch $@

$(STATIC_STAMP): $(ASSETS_STAMP) tools/require-config.js
	rm -rf $(STATIC)
	mkdir -p $(STATIC)/mathjax $(STATIC)/ipywidgets
	cp -r $(ASSETS)/node_modules/mathjax/es5/. $(STATIC)/mathjax/
	cp $(ASSETS)/node_modules/requirejs/require.js tools/require-config.js $(STATIC)/ipywidgets/
	cp $(ASSETS)/node_modules/@jupyter-widgets/html-manager/dist/embed-amd.js \
	   $(ASSETS)/node_modules/@jupyter-widgets/html-manager/dist/*.{woff2,woff,ttf,eot,svg} \
	   $(STATIC)/ipywidgets/
	@touch $@

# The data sets the notebooks use, cached under $$MTL_TUTORIAL_DATA (default ~/.cache/mtl_tutorial).
# The fetch command skips what is already cached, so it runs every time.
data: venv
	$(PY) -m mtl_tutorial.data fetch

# ---------------------------------------------------------------------------------------------
# the book
book: setup
	rm -rf _build/html _build/.doctrees _build/jupyter_execute
	$(JB) build . -W -n --keep-going --all
	@echo
	@echo "Book built. Open: file://$(CURDIR)/$(HTML)/index.html"

check-site: book
	$(PY) tools/check_site.py --html $(HTML) --toc _toc.yml --screenshots _build/screenshots

# ---------------------------------------------------------------------------------------------
# tests
test: unit notebooks check-site

unit: setup
	$(PY) -m pytest tests -q

notebooks: setup
	$(PY) -m pytest --nbval-lax --nbval-current-env \
	  --nbval-sanitize-with tools/nbval_sanitize.cfg -p no:cacheprovider book/ -q

# ---------------------------------------------------------------------------------------------
clean:
	rm -rf _build build $(STATIC) .pytest_cache .ruff_cache
	find . -path ./$(VENV) -prune -o \( -name __pycache__ -o -name .ipynb_checkpoints \) -type d -print0 \
	  | xargs -0 rm -rf

distclean: clean
	rm -rf $(VENV) *.egg-info
