# Two entry points do all set-up on a fresh machine:
#   make serve   install into .venv, set the Lean workspace up (elan, its Lean, the REPL for that Lean,
#                Mathlib's cache, warm headers: `leanstep serve --setup`), then run the server
#   make test    install into .venv (with test tools), lint, type-check and run the tests
# Both are idempotent: the install step reruns only when a requirements file
# or pyproject.toml changed, and each workspace set-up step is skipped when done.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
ARGS   ?=
# The Lean project to serve (make serve sets it up; make lean only sets it up).
WORKSPACE ?= .
# How pip compiles llama-cpp-python (make llamacpp, make test): portable (AVX2, no
# AVX-512 or AMX), because a native build dies of an illegal instruction on virtual
# machines whose CPU advertises AMX that the VM cannot run. LLAMACPP_CMAKE_ARGS=
# builds for this CPU; -DGGML_METAL=on or -DGGML_CUDA=on add a GPU.
LLAMACPP_CMAKE_ARGS ?= -DGGML_NATIVE=OFF

.PHONY: serve test install install-dev llamacpp sandbox-tools lean bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

$(VENV)/.installed: $(BIN)/python requirements.txt pyproject.toml
	$(BIN)/pip install --quiet -r requirements.txt
	$(BIN)/pip install --quiet --no-deps -e .
	@$(MAKE) --no-print-directory sandbox-tools
	touch $@

$(VENV)/.installed-dev: $(VENV)/.installed requirements-dev.txt requirements-llamacpp.txt
	CMAKE_ARGS="$(LLAMACPP_CMAKE_ARGS)" $(BIN)/pip install --quiet -r requirements-dev.txt
	touch $@

# llama.cpp for `--backend llamacpp --gguf FILE`, on top of `make install`: pip
# compiles it from source the first time (several minutes), then reuses its wheel.
$(VENV)/.installed-llamacpp: $(VENV)/.installed requirements-llamacpp.txt
	CMAKE_ARGS="$(LLAMACPP_CMAKE_ARGS)" $(BIN)/pip install --quiet -r requirements-llamacpp.txt
	touch $@

# bubblewrap gives checked code a read-only file system (setpriv drops root
# inside it); without them the sandbox falls back to rlimits and says so.
sandbox-tools:
	@{ command -v bwrap && command -v setpriv; } >/dev/null || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null && \
	  apt-get update -qq >/dev/null && apt-get install -y -qq bubblewrap util-linux >/dev/null; } || \
	  echo "note: bubblewrap not installed; the sandbox falls back to rlimit mode and its tests are skipped"

install: $(VENV)/.installed
install-dev: $(VENV)/.installed-dev
llamacpp: $(VENV)/.installed-llamacpp

serve: install
	$(BIN)/leanstep serve --setup --workspace $(WORKSPACE) $(ARGS)

test: install-dev
	$(BIN)/ruff check --quiet python/leanstep
	$(BIN)/mypy --no-error-summary
	$(BIN)/python -m pytest $(ARGS)

lean: install
	$(BIN)/leanstep setup --install-elan --workspace $(WORKSPACE)

bench: install-dev
	$(BIN)/leanstep bench all --quick

clean:
	rm -rf $(VENV) .pytest_cache benchmarks/results
