# SLM Deploy Lab: the README's two commands are `make lab` and `make test`.
SHELL := /bin/bash
.SHELLFLAGS := -o pipefail -ec
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.requirements-installed
# The machine's pip config names local indexes that may be absent; pip warns once per package.
QUIET_PIP := grep -v "is ignored: it is neither a file nor a directory" || true

.PHONY: setup engine lab jupyter test nano clean

setup: $(STAMP)  ## the kernel's virtualenv (.venv) with requirements.txt, helpers/ importable

$(STAMP): requirements.txt
	$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 10), "Python 3.10+ needed"'
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q -r requirements.txt 2>&1 | ($(QUIET_PIP))
	$(PY) -c 'import sys, torch; sys.exit("torch must be the CPU build: " + torch.__version__) if torch.version.cuda else None'
	$(PY) -c 'import site; open(site.getsitepackages()[0] + "/slm_deploy_lab.pth", "w").write("$(CURDIR)\n")'
	touch $@

lab: setup engine  ## execute every notebook in order with papermill into runs/ (06 needs the Docker engine)
	$(PY) -m helpers.workbook

jupyter: setup  ## open JupyterLab on the notebooks
	$(VENV)/bin/jupyter lab --notebook-dir=$(CURDIR) $(if $(filter 0,$(shell id -u)),--allow-root)

nano: setup  ## build (or load) phi4-nano and print its held-out accuracy
	$(PY) -m helpers.phi4_nano

engine:  ## a Docker engine + offline base image for the docker tests (installs them as root on Debian)
	bash compose/engine/setup-local-engine.sh

test: setup engine  ## unit tests, real backends, a real Docker engine, every notebook under papermill
	$(PY) -m pytest -c tests/pytest.ini --rootdir=. $(PYTEST_ARGS)

clean:
	rm -rf runs/
