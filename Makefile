# Two commands do all set-up on a fresh machine: `make book` and `make test` (README.md). Both install sercore
# with its [book] and [test] extras into one venv; the library alone is `pip install -e .` (pyproject.toml).
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PROFILE ?= default
# Options passed to `python -m sercore book` (e.g. BOOK_OPTIONS="--strict --workers 2", what CI builds with).
BOOK_OPTIONS ?=
# The torch build to install before sercore. torch==2.13.0 is the CPU build on machines that carry its
# wheel locally; elsewhere pass TORCH_INDEX (e.g. https://download.pytorch.org/whl/cpu or .../cu128).
TORCH ?= torch==2.13.0
TORCH_INDEX ?=
STAMP := $(VENV)/.sercore-installed

.PHONY: venv test book corpus clean-book check-browser lab

venv: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -c "import torch" 2>/dev/null || $(PY) -m pip install -q "$(TORCH)" $(if $(TORCH_INDEX),--index-url $(TORCH_INDEX))
	$(PY) -m pip install -q -e ".[book,test]"
	touch $(STAMP)

test: $(STAMP)
	OMP_NUM_THREADS=$${OMP_NUM_THREADS:-2} $(PY) -m pytest -q

corpus: $(STAMP)
	$(PY) -m sercore generate --profile $(PROFILE) --out data/demo-$(PROFILE)

book: $(STAMP)
	$(PY) -m sercore book --profile $(PROFILE) $(BOOK_OPTIONS)

# JupyterLab on notebooks/ with the venv registered as the kernel "sercore" (inside the venv, --sys-prefix, so
# nothing is written to the user's own Jupyter folders); the pages' relative defaults resolve from notebooks/.
# JupyterLab refuses to run as root unless told (containers, CI machines); LAB_OPTIONS adds any other option.
LAB_OPTIONS ?= $(if $(filter 0,$(shell id -u)),--allow-root)
lab: $(STAMP)
	$(PY) -m ipykernel install --sys-prefix --name sercore --display-name "Python (sercore)"
	cd notebooks && $(abspath $(PY)) -m jupyterlab --MappingKernelManager.default_kernel_name=sercore $(LAB_OPTIONS)

# Open the built book in headless Chromium: broken images, 404 links, tracebacks, raw LaTeX; screenshots.
check-browser: $(STAMP)
	$(PY) book/check_browser.py _build/html --screenshots _build/screenshots

clean-book:
	rm -rf _build
