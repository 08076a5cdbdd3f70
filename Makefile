# The two commands a newcomer needs: `make run` and `make test`. Both set up .venv first.
VENV ?= .venv
PY := $(VENV)/bin/python
# Offline data: use ../shared/data when it sits beside the project (as in CI), unless
# FMNIST_DATA is already set. Elsewhere fmnist downloads into ~/.cache/fmnist.
ifneq ($(wildcard ../shared/data/fashion-mnist),)
export FMNIST_DATA ?= $(abspath ../shared/data)
endif

.PHONY: setup run test bench demo demo-deps clean
setup: $(VENV)/.installed

# torch is held at 2.13.0 by constraints.txt in every install (extras whose packages ask
# for torch included): on our machines it is a local CPU build, and any other version would
# pull gigabytes of CUDA packages. Every optional extra is installed, so the tests run all.
EXTRAS := test,ray,export,browser,explain
$(VENV)/.installed: pyproject.toml constraints.txt
	python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -c constraints.txt torch==2.13.0
	$(PY) -m pip install --quiet -c constraints.txt -e '.[$(EXTRAS)]'
	touch $@

run: setup  ## train the default model, evaluate on the 10k test images, write runs/<time>-cnn/
	$(VENV)/bin/fmnist train $(ARGS)

test: setup  ## the whole test suite
	$(PY) -m pytest $(ARGS)

bench: setup  ## the speed benchmarks (print their figures)
	$(PY) benchmarks/data_load.py
	$(PY) benchmarks/optim_step.py
	$(PY) benchmarks/inference.py

# The browser demo's runtime: onnxruntime-web at the version pinned in web/package.json,
# checked against web/package-lock.json's hashes by `npm ci`, into web/node_modules (git
# ignores it); `fmnist demo` copies its wasm build into each site. No install scripts run.
ORT_WEB := web/node_modules/onnxruntime-web/dist/ort.wasm.min.js
demo-deps: $(ORT_WEB)
$(ORT_WEB): web/package.json web/package-lock.json
	npm ci --prefix web --no-audit --no-fund --ignore-scripts --loglevel=error
	touch $@

demo: setup demo-deps  ## make demo RUN=runs/<run>: write site/, then serve it offline
	@test -n "$(RUN)" || { echo "make demo RUN=runs/<run-dir> (a run from make run)"; exit 2; }
	$(VENV)/bin/fmnist demo $(RUN) --out site
	@echo "serve it: $(PY) -m http.server --directory site 8000"

clean:
	rm -rf $(VENV) build dist src/*.egg-info .pytest_cache web/node_modules
