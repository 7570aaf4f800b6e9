# SLM Deploy Lab: the README's two commands are `make lab` and `make test`.
SHELL := /bin/bash
.SHELLFLAGS := -o pipefail -ec
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.requirements-installed
# The machine's pip config names local indexes that may be absent; pip warns once per package.
QUIET_PIP := grep -v "is ignored: it is neither a file nor a directory" || true

.PHONY: setup doctor engine browser sandbox lab book jupyter present test nano nano-train clean clean-cache

setup: $(STAMP)  ## the kernel's virtualenv (.venv): torch, then the project (pip install -e .) with requirements.txt

$(STAMP): requirements.txt pyproject.toml helpers/system/venvs.py
	$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 10), "Python 3.10+ needed"'
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	# torch first: the CPU build from PyTorch's CPU index where it answers, else what pip finds (warns on CUDA)
	$(PYTHON) -m helpers.system.venvs torch $(PY) 2>&1 | ($(QUIET_PIP))
	$(PY) -m pip install -q -e . 2>&1 | ($(QUIET_PIP))
	touch $@

doctor: setup  ## what this machine offers, and for every model and backend whether it will run (and if not, why)
	$(VENV)/bin/slm-lab-doctor

MODEL ?= qwen2.5-coder-0.5b
RUNTIME ?= auto
lab: setup engine sandbox  ## every notebook in order into runs/ (RUNTIME=auto|local|docker, MODEL=phi4-nano for the fast one)
	$(VENV)/bin/slm-lab --model $(MODEL) --runtime $(RUNTIME)

book: setup  ## the latest make lab run (its labs executed with their solutions) as HTML: runs/<time>/book/index.html
	$(VENV)/bin/slm-lab-book --labs

jupyter: setup  ## open JupyterLab on the notebooks
	$(VENV)/bin/jupyter lab --notebook-dir=$(CURDIR) $(if $(filter 0,$(shell id -u)),--allow-root)

PORT ?= 8866
present: setup  ## the live dashboard as an app (Voila, no code) on http://127.0.0.1:$(PORT), on every backend for MODEL started once (or SLM_LAB_ENDPOINTS)
	$(VENV)/bin/slm-lab-present --model $(MODEL) --runtime $(RUNTIME) --port $(PORT)

nano: setup  ## print the committed phi4-nano's training report and held-out accuracy
	$(VENV)/bin/phi4-nano

nano-train: setup  ## retrain phi4-nano from scratch into helpers/data/phi4-nano (about 95 minutes on 2 cores)
	$(VENV)/bin/phi4-nano-train

engine:  ## a Docker engine + offline base image for the docker tests (installs them as root on Debian)
	bash compose/engine/setup-local-engine.sh

browser:  ## Debian's Chromium + chromium-driver for the browser tests (installs them as root on Debian)
	bash tests/setup-browser.sh

sandbox:  ## bubblewrap, the sandbox graded code runs in (installs it as root on Debian; else says how)
	bash tests/setup-sandbox.sh

test: setup engine browser sandbox  ## unit tests, real backends, a real Docker engine, every notebook under papermill
	$(PY) -m pytest -c tests/pytest.ini --rootdir=. $(PYTEST_ARGS)

clean:  ## remove runs/ (executed notebooks and reports) after asking; YES=1 does not ask. Caches: make clean-cache
	@if [ ! -d runs ]; then echo "nothing to clean: runs/ does not exist"; exit 0; fi; \
	 size=$$(du -sh runs | cut -f1); n=$$(find runs -name '*.ipynb' | wc -l); \
	 if [ "$(YES)" = 1 ]; then answer=y; else read -r -p "delete runs/ ($$n executed notebooks, $$size)? [y/N] " answer; fi; \
	 if [ "$$answer" = y ]; then rm -rf runs/ && echo "runs/ removed"; else echo "kept runs/"; fi

clean-cache: setup  ## list the lab's caches with sizes and remove stale entries (ALL=1: the whole cache, after asking)
	$(VENV)/bin/slm-lab-cache $(if $(filter 1,$(ALL)),--all,--remove-stale)
