# focalstack: `make demo` sets up a venv and runs the main job on a small default; `make test` runs the tests.
VENV ?= .venv
PY := $(VENV)/bin/python
# torch is installed first and pinned: an unpinned torch pulls the newest multi-GB CUDA build. PyPI's
# torch for Linux x86_64 is a CUDA build too; TORCH_INDEX=https://download.pytorch.org/whl/cpu takes the
# CPU build from PyTorch's own index instead. On machines with a GPU, install your own build into the
# venv first and call `make setup TORCH=`.
TORCH ?= torch==2.13.0
TORCH_INDEX ?=
DEMO := data/demo.h5
DEMO_TEST := data/demo-test.h5
DEMO_SHAPE := data/demo-test-shape.h5

.PHONY: setup demo test test-fast typecheck bench clean
setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(if $(TORCH),$(PY) -m pip install --quiet '$(TORCH)' $(if $(TORCH_INDEX),--index-url '$(TORCH_INDEX)'))
	$(PY) -m pip install --quiet -e '.[render,train,dev,cluster]'
	touch $@

# The whole loop on a small built-in default: render a training set and two held-out test sets (new
# seeds; new shapes) at 64 x 64, inspect and preview, train briefly on the CPU, evaluate. Rerunning resumes
# (renders and training continue where they stopped; finished steps are kept).
demo: setup
	mkdir -p data
	$(VENV)/bin/focalstack-render --preset fod500 --scenes 8 --resolution 64 --out $(DEMO)
	$(VENV)/bin/focalstack-render --preset fod500 --scenes 2 --resolution 64 --seed 1 --out $(DEMO_TEST)
	$(VENV)/bin/focalstack-render --preset test-shape --scenes 2 --resolution 64 --out $(DEMO_SHAPE)
	$(VENV)/bin/focalstack-data inspect $(DEMO)
	$(VENV)/bin/focalstack-data preview $(DEMO) --scene 0 -o data/demo-scene0.png
	$(VENV)/bin/focalstack-train fit --data $(DEMO) --out runs/demo --epochs 3 --batch-size 2 \
		--val-fraction 0.25 --lr 1e-3 --workers 0 $(if $(wildcard runs/demo/last.pt),--resume)
	$(VENV)/bin/focalstack-train evaluate --checkpoint runs/demo/best.pt --data $(DEMO_TEST) --data $(DEMO_SHAPE) \
		--out runs/demo/eval

test: setup
	$(PY) -m pytest -q

test-fast: setup
	$(PY) -m pytest -q -m "not blender"

# mypy sees the folders as the installed package (focalstack.dataset, ...) through a tree of links in build/.
TYPED := dataset
typecheck: setup
	rm -rf build/typecheck && mkdir -p build/typecheck/focalstack
	for d in dataset render train assets weights; do ln -s $(CURDIR)/$$d build/typecheck/focalstack/$$d; done
	cd build/typecheck && $(CURDIR)/$(PY) -m mypy --config-file $(CURDIR)/pyproject.toml $(foreach p,$(TYPED),-p focalstack.$(p))

bench: setup
	$(PY) benchmarks/render_bench.py

clean:
	rm -rf $(VENV) data runs *.egg-info
