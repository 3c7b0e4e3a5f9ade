# focalstack: `make demo` sets up a venv and runs the main job on a small default; `make test` runs the tests.
VENV ?= .venv
PY := $(VENV)/bin/python
# torch is installed first and pinned: an unpinned torch pulls a multi-GB CUDA build. On machines
# with a GPU, install your own build into the venv first and call `make setup TORCH=`.
TORCH ?= torch==2.13.0
DEMO := data/demo.h5

.PHONY: setup demo test test-fast bench clean
setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(if $(TORCH),$(PY) -m pip install --quiet '$(TORCH)')
	$(PY) -m pip install --quiet -e '.[render,train,dev]'
	touch $@

demo: setup
	mkdir -p data
	$(VENV)/bin/focalstack-render --preset fod500 --scenes 4 --resolution 64 --out $(DEMO)
	$(VENV)/bin/focalstack-data inspect $(DEMO)
	$(VENV)/bin/focalstack-data preview $(DEMO) --scene 0 -o data/demo-scene0.png

test: setup
	$(PY) -m pytest -q

test-fast: setup
	$(PY) -m pytest -q -m "not blender"

bench: setup
	$(PY) benchmarks/render_bench.py

clean:
	rm -rf $(VENV) data *.egg-info
