# The two commands a newcomer needs: `make run` and `make test`. Both set up .venv first.
VENV ?= .venv
PY := $(VENV)/bin/python
# Offline data: use ../shared/data when it sits beside the project (as in CI), unless
# FMNIST_DATA is already set. Elsewhere fmnist downloads into ~/.cache/fmnist.
ifneq ($(wildcard ../shared/data/fashion-mnist),)
export FMNIST_DATA ?= $(abspath ../shared/data)
endif

.PHONY: setup run test bench clean
setup: $(VENV)/.installed

# torch is held at 2.13.0 by constraints.txt in every install (extras whose packages ask
# for torch included): on our machines it is a local CPU build, and any other version would
# pull gigabytes of CUDA packages. Every optional extra is installed, so the tests run all.
EXTRAS := test,ray
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

clean:
	rm -rf $(VENV) build dist src/*.egg-info .pytest_cache
