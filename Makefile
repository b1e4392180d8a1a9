# Fresh-machine quick start:  `make demo` (main job)  and  `make test` (test suite).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
TORCH_VERSION ?= 2.13.0

.PHONY: venv demo test test-all bench clean

venv: $(STAMP)

$(STAMP): setup.cfg pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	# torch first, pinned to the CPU build on disk, so no multi-GB CUDA build is pulled
	$(BIN)/python -m pip install -q "torch==$(TORCH_VERSION)"
	echo "torch==$(TORCH_VERSION)" > $(VENV)/constraints.txt
	$(BIN)/python -m pip install -q -c $(VENV)/constraints.txt -e ".[test,dask]"
	touch $(STAMP)

# one BLAS/OpenMP thread per process: on a 2-core machine that runs anything else, spinning OpenMP
# threads of torch and OpenBLAS slowed the demo's samples by more than 10x
demo: venv
	OMP_NUM_THREADS=$${OMP_NUM_THREADS:-1} $(BIN)/mlepi demo --output demo_output

test: venv
	$(BIN)/python -m pytest -q tests

test-all: venv
	$(BIN)/python -m pytest -q -m "" tests

bench: venv
	$(BIN)/python benchmarks/bench_graph_hamiltonian.py

clean:
	rm -rf $(VENV) demo_output
