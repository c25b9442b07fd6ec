# Two entry points, each doing all set-up on a fresh machine:
#   make demo   - venv + pinned deps + dataset, then the demo
#   make test   - the same set-up, then the whole test suite (slow tests included)
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
DATASET_DIR := /usr/share/datasets/fashion-mnist

.PHONY: demo test test-fast setup dataset bench clean

setup: $(STAMP) dataset

# torch/torchvision are pinned in constraints.txt and every other package is installed against it,
# so pip never swaps the torch build.
$(STAMP): pyproject.toml constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q -c constraints.txt torch torchvision
	$(PY) -m pip install -q -c constraints.txt -e '.[test]'
	touch $(STAMP)

dataset:
	@if [ -f $(DATASET_DIR)/train-images-idx3-ubyte.gz ]; then exit 0; fi; \
	echo "Installing Debian's dataset-fashion-mnist (into $(DATASET_DIR))"; \
	if [ "$$(id -u)" = 0 ]; then SUDO=; elif command -v sudo >/dev/null; then SUDO=sudo; else \
	  echo "error: Fashion-MNIST is missing and this user cannot install packages: run 'apt-get install -y dataset-fashion-mnist' as root" >&2; exit 1; fi; \
	$$SUDO apt-get install -y -q dataset-fashion-mnist >/dev/null 2>&1 || \
	{ $$SUDO apt-get update -q >/dev/null 2>&1 && $$SUDO apt-get install -y -q dataset-fashion-mnist >/dev/null; } || \
	{ echo "error: could not install dataset-fashion-mnist with apt-get; install it by hand or point the space's dataset.path at local IDX files" >&2; exit 1; }

DEMO_SPACE := search_spaces/fmnist_resnet20.yaml

# The default search end to end (a second `make demo` resumes the finished run: nothing is redone).
demo: setup
	$(VENV)/bin/mrla-nas cost resnet50 mrla_light_resnet50 mrla_base_resnet50
	$(VENV)/bin/mrla-nas space $(DEMO_SPACE)
	if [ -f runs/demo/study.journal ]; then RESUME=--resume; fi; \
	$(VENV)/bin/mrla-nas search $(DEMO_SPACE) --name demo $$RESUME
	$(VENV)/bin/mrla-nas pareto runs/demo
	$(VENV)/bin/mrla-nas explain runs/demo
	$(VENV)/bin/mrla-nas export runs/demo --knee

# Two pytest-xdist workers, one per core (tests/conftest.py: the tests marked `ray` share one Ray per
# worker): 14 min 28 s from a fresh clone here against 18 min 14 s one test at a time (README, "Two
# commands"). PYTEST_ARGS= runs them one at a time; PYTEST_ARGS="-m 'not slow'" only the fast ones.
PYTEST_ARGS ?= -n 2 --dist load

test: setup
	$(PY) -m pytest $(PYTEST_ARGS)

test-fast: setup
	$(PY) -m pytest -m "not slow" $(PYTEST_ARGS)

bench: setup
	$(PY) experiments/bench_speed.py --threads 2 --batch 8 --size 224 --rounds 21 --out experiments/results/speed.json

clean:
	rm -rf $(VENV) build *.egg-info
