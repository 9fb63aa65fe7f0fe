# Developer entry points. Each target makes .venv and installs what it needs.
#   make test    whole test suite (GUI tests run headless under Xvfb via pytest-xvfb), on PyQt6;
#                `make test QT=pyside6` installs PySide6 into .venv and runs it on that binding
#   make test-lib  the library tests only, without Qt (deselects the tests marked gui)
#   make test-lowest  the GUI tests on the lowest versions pyproject.toml allows, in .venv-lowest
#   make demo    open napari with the plugin and a sample pair
#   make lint    ruff check + ruff format --check + the GitHub workflows against their schema
#   make bench   benchmarks against OpenCV's own calls
#   make build   sdist and wheel into dist/, then twine check

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
SRC    := src tests benchmarks
# The Qt binding the tests run on (pytest-qt's qt_api, qtpy's and napari's QT_API).
QT     ?= pyqt6
QT_PACKAGE_pyqt6   := PyQt6
# PySide6 6.12.0 aborts the test session (shiboken "deallocating None" while napari 0.9.2
# closes a viewer); 6.11.3 passes (napari itself excludes 6.11.0 and 6.11.1).
QT_PACKAGE_pyside6 := PySide6==6.11.3
QT_PACKAGE := $(or $(QT_PACKAGE_$(QT)),$(error QT must be pyqt6 or pyside6, not '$(QT)'))
LOWEST := .venv-lowest

.PHONY: venv install-test install-all test test-lib test-lowest demo lint bench build clean

# --- environments -----------------------------------------------------------

venv: $(BIN)/python

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --upgrade pip

# Stamp files make re-runs quick; they are redone when pyproject.toml changes.
$(VENV)/.testing-stamp: pyproject.toml | $(BIN)/python
	$(BIN)/pip install -e ".[testing,testing-ome-zarr,testing-transforms]"
	touch $@

$(VENV)/.all-stamp: pyproject.toml | $(BIN)/python
	$(BIN)/pip install -e ".[all]"
	touch $@

# PyQt6 comes with the testing extra; another binding is added beside it when asked for.
$(VENV)/.qt-$(QT)-stamp: Makefile | $(BIN)/python
	$(BIN)/pip install "$(QT_PACKAGE)"
	touch $@

# The lowest versions pyproject.toml allows, pinned in requirements/lowest.txt (which says why).
$(LOWEST)/.stamp: requirements/lowest.txt pyproject.toml
	$(PYTHON) -m venv $(LOWEST)
	$(LOWEST)/bin/python -m pip install --upgrade pip
	$(LOWEST)/bin/pip install -r requirements/lowest.txt -e ".[testing]"
	touch $@

install-test: $(VENV)/.testing-stamp

install-all: $(VENV)/.all-stamp

# --- tasks --------------------------------------------------------------------

test: install-test $(VENV)/.qt-$(QT)-stamp
	QT_API=$(QT) $(BIN)/python -m pytest -o qt_api=$(QT) $(PYTEST_ARGS)

# The GUI tests against napari 0.5, numpy 1.23, OpenCV 4.8... (requirements/lowest.txt).
test-lowest: $(LOWEST)/.stamp
	QT_API=pyqt6 $(LOWEST)/bin/python -m pytest -m gui -o qt_api=pyqt6 $(PYTEST_ARGS)

# The library tests alone, with the Qt-loading pytest plugins off (pytest-qt, pytest-xvfb, and
# napari's, whose autouse fixture imports napari._qt; tests/plugin imports Qt to collect);
# the session fails if any of them loaded Qt (tests/conftest.py).
test-lib: install-test
	$(BIN)/python -m pytest -m "not gui" --ignore=tests/plugin -p no:pytest-qt -p no:xvfb -p no:napari $(PYTEST_ARGS)

demo: install-all
	$(BIN)/napari-ecc-align demo

lint: install-test
	$(BIN)/python -m ruff --version >/dev/null 2>&1 || $(BIN)/pip install ruff
	$(BIN)/python -m ruff check $(SRC)
	$(BIN)/python -m ruff format --check $(SRC)
	$(BIN)/check-jsonschema --version >/dev/null 2>&1 || $(BIN)/pip install check-jsonschema
	$(BIN)/check-jsonschema --builtin-schema vendor.github-workflows .github/workflows/*.yml

bench: install-test
	$(BIN)/python benchmarks/bench_align.py
	$(BIN)/python benchmarks/bench_init.py
	$(BIN)/python benchmarks/bench_stack.py
	$(BIN)/python benchmarks/bench_batch.py --pairs 40

# PYTHONDONTWRITEBYTECODE only makes setuptools warn that it skips byte-compiling (a wheel has
# no .pyc either way), so it is unset for a build whose output should carry no warning. The
# egg-info the sdist step leaves in src/ would sit on the editable install's path as a second,
# possibly stale, copy of the package's metadata: removed.
build: venv
	$(BIN)/python -m build --version >/dev/null 2>&1 || $(BIN)/pip install build
	$(BIN)/python -m twine --version >/dev/null 2>&1 || $(BIN)/pip install twine
	rm -rf dist
	env -u PYTHONDONTWRITEBYTECODE $(BIN)/python -m build --outdir dist .
	rm -rf src/napari_ecc_align.egg-info
	$(BIN)/python -m twine check --strict dist/*

clean:
	rm -rf $(VENV) $(LOWEST) build dist .pytest_cache .ruff_cache .hypothesis
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
	find . -name '*.egg-info' -type d -prune -exec rm -rf {} +
