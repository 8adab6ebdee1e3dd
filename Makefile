# The commands a newcomer types. `make` alone lists them (`make help`); `make demo` shows a
# real animation from the real Cog server; `make test` runs the test suite. Both create the
# virtualenv .venv/ on first use.

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PRESET ?= tiny
TINY_WEIGHTS := weights/tiny

# pip runs only when a requirements file is newer than its stamp.
RUNTIME_STAMP := $(VENV)/.installed-runtime
DEV_STAMP := $(VENV)/.installed-dev

# The demo sends the example request as published; `make demo DEMO_OVERRIDES="--set width=128"`
# changes inputs of it. It runs the real weights in weights/ when every part of them is there,
# else tiny ones (script/demo decides, and says which). `make demo CHECKPOINT=sdxl` (or sd21,
# sd15) runs that checkpoint: the real one when weights/ holds it, else its tiny weights.
CHECKPOINT ?=
DEMO_OVERRIDES ?=
ifeq ($(filter $(CHECKPOINT),sd15 sd21 sdxl),)
ifneq ($(CHECKPOINT),)
$(error CHECKPOINT=$(CHECKPOINT) is not a checkpoint: use sd15, sd21 or sdxl)
endif
endif
# The tiny weights of each checkpoint (python -m animate.tiny --kind sd|sd2|sdxl), rewritten
# when the code that writes them changes.
TINY_sd15 := $(TINY_WEIGHTS)
TINY_sd21 := $(TINY_WEIGHTS)-sd2
TINY_sdxl := $(TINY_WEIGHTS)-sdxl
TINY_DEPENDENCIES := $(RUNTIME_STAMP) animate/tiny.py $(wildcard film_net/*.py)

.PHONY: help demo test weights real-weights schema bench soak gpu-wheels gpu-check clean
.DEFAULT_GOAL := help

## help: list these targets (what a bare `make` does)
help:
	@awk '/^## [a-z-]+: / { name = $$2; sub(/^## [a-z-]+: /, ""); printf "  make %-13s %s\n", substr(name, 1, length(name) - 1), $$0 }' $(firstword $(MAKEFILE_LIST))

## demo: start the Cog server on the real weights if complete, else tiny ones (CHECKPOINT=sdxl: SDXL), run the example request, save the files in outputs/
demo: $(RUNTIME_STAMP) $(TINY_$(or $(CHECKPOINT),sd15))/stable-diffusion/model_index.json schema
	$(PY) script/demo $(if $(CHECKPOINT),--checkpoint $(CHECKPOINT)) $(DEMO_OVERRIDES)

## test: run the whole test suite (CPU, tiny weights, the real Cog server)
test: $(DEV_STAMP) schema
	$(PY) -m pytest

## weights: write the tiny random-weight models to weights/tiny
weights: $(TINY_WEIGHTS)/stable-diffusion/model_index.json

$(TINY_sd15)/stable-diffusion/model_index.json: $(TINY_DEPENDENCIES)
	$(PY) -m animate.tiny --kind sd $(TINY_sd15)

$(TINY_sd21)/stable-diffusion/model_index.json: $(TINY_DEPENDENCIES)
	$(PY) -m animate.tiny --kind sd2 $(TINY_sd21)

$(TINY_sdxl)/stable-diffusion/model_index.json: $(TINY_DEPENDENCIES)
	$(PY) -m animate.tiny --kind sdxl $(TINY_sdxl)

## real-weights: fetch Stable Diffusion 1.5 and FILM into weights/ (needs the hub; converting FILM needs TensorFlow)
real-weights: $(DEV_STAMP)
	$(PY) script/download-weights

## schema: write .cog/openapi_schema.json from predict.py, so the server validates inputs
schema: $(RUNTIME_STAMP)
	$(PY) script/schema

## bench: time the pipeline against the one-at-a-time reference (PRESET=tiny by default)
bench: $(RUNTIME_STAMP)
	$(PY) -m bench --preset $(PRESET)

## soak: 50 sequential predictions through the real server, watching memory, files and descriptors
soak: $(RUNTIME_STAMP) weights schema
	$(PY) script/soak --weights $(abspath $(TINY_WEIGHTS))

## gpu-wheels: download, into gpu-wheels/, the wheels a bare CUDA machine with PyTorch needs for make gpu-check
gpu-wheels: $(RUNTIME_STAMP)
	$(PY) -m bench.gpu_wheels

## gpu-check: on a CUDA machine, without network: bench presets, half precision on CUDA, out-of-memory trial (docs/memory.md)
gpu-check:
	$(PYTHON) script/gpu-check $(GPU_CHECK_ARGS)

## clean: remove generated files (outputs, schema, tiny weights, benchmark results, GPU-check wheels, caches); keeps .venv and real weights
clean:
	rm -rf outputs .cog $(TINY_WEIGHTS) $(TINY_WEIGHTS)-sd2 $(TINY_WEIGHTS)-sdxl bench/results .pytest_cache gpu-wheels .gpu-check
	find . -path ./$(VENV) -prune -o -name __pycache__ -type d -exec rm -rf {} +

$(VENV)/bin/python:
	$(PYTHON) -m venv $(VENV)

# requirements-nodeps.txt (spandrel) goes in without its dependencies: see that file.
$(RUNTIME_STAMP): requirements.txt requirements-cog.txt requirements-nodeps.txt | $(VENV)/bin/python
	$(PY) -m pip install -r requirements-cog.txt
	$(PY) -m pip install --no-deps -r requirements-nodeps.txt
	touch $@

$(DEV_STAMP): requirements-dev.txt $(RUNTIME_STAMP)
	$(PY) -m pip install -r requirements-dev.txt
	touch $@
